"""A definition is checked once, in one place, so ``plan`` never promises what ``apply`` or
``create`` refuse, and every interface (the CLI's plan, apply, create, refresh, the Dagster load)
names the same fault the same way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import scalar
from test_cli import matviews

from matviews_dagster import build_definitions

COLUMN_FAULTS = {
    "unique_index_columns": ({"unique_index_columns": ["nope"]}, "unique_index_columns names nope"),
    "indexes": ({"indexes": [["id"], ["nope"]]}, "indexes names nope"),
    "column_descriptions": ({"column_descriptions": {"nope": "no such column"}}, "column_descriptions names nope"),
}


def write(project: Path, **fields: object) -> None:
    view = {"name": "mv_users", "sql": "SELECT id, email FROM users", **fields}
    (project / "matviews.yaml").write_text(yaml.safe_dump({"views": [view]}))


@pytest.mark.parametrize("field", list(COLUMN_FAULTS))
def test_a_declared_column_the_query_lacks_is_an_error_in_plan_apply_and_create(tmp_path, dsn, db, users, field):
    fields, named = COLUMN_FAULTS[field]
    write(tmp_path, **fields)
    expected = f"public.mv_users's query returns no such column: {named}; its columns are: id, email"
    plan = matviews(tmp_path, dsn, "plan", "--json")
    assert plan.returncode == 2, plan.stdout + plan.stderr
    (entry,) = json.loads(plan.stdout)
    assert entry["action"] == "error" and entry["error"] == expected, entry
    for command in (["apply", "--all", "--yes"], ["create", "--all"]):
        done = matviews(tmp_path, dsn, *command)
        assert done.returncode == 1, done.stdout + done.stderr
        assert expected in done.stdout, (command, done.stdout)
    assert scalar(db, "SELECT count(*) FROM pg_matviews WHERE matviewname = 'mv_users'") == 0, "nothing was created"
    errors = db.execute("SELECT DISTINCT error FROM mat_view_create_runs").fetchall()
    assert errors == [(expected,)], "each refusal recorded with the same words"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"sql": "SELECT id FROM mv_users WHERE id > 0"}, "public.mv_users -> public.mv_users (the view reads itself)"),
        ({"name": "pg_catalog.mv_users"}, "schema pg_catalog is the system's"),
        ({"name": "information_schema.mv_users"}, "schema information_schema is the system's"),
    ],
)
def test_a_definition_no_database_could_hold_fails_every_command_and_the_dagster_load_alike(
    tmp_path, dsn, db, users, fields, expected
) -> None:
    write(tmp_path, **fields)
    for command in (["plan"], ["apply", "--all", "--yes"], ["create", "--all"], ["refresh", "--all"], ["list"]):
        done = matviews(tmp_path, dsn, *command)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert expected in done.stderr and "Traceback" not in done.stderr, (command, done.stderr)
    with pytest.raises(ValueError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        build_definitions(tmp_path / "matviews.yaml", dsn=dsn)
    assert scalar(db, "SELECT count(*) FROM pg_matviews") == 0


@pytest.mark.parametrize(
    ("taken_by", "kind"),
    [
        ("CREATE INDEX mv_users ON users (email)", "an index"),
        ("CREATE SEQUENCE mv_users", "a sequence"),
        ("CREATE TYPE mv_users AS (a int)", "a composite type"),
        ("CREATE TYPE mv_users AS ENUM ('a')", "an enum type"),
        ("CREATE DOMAIN mv_users AS int", "a domain"),
    ],
)
def test_a_name_taken_by_another_kind_of_relation_is_named_in_every_command(
    tmp_path, dsn, db, users, taken_by, kind
) -> None:
    db.execute(taken_by)
    write(tmp_path)
    thing = "type" if kind in ("an enum type", "a domain") else "relation"
    expected = f"public.mv_users is {kind}, not a materialized view; pick another name or drop that {thing}"
    plan = matviews(tmp_path, dsn, "plan", "--json")
    assert plan.returncode == 2 and json.loads(plan.stdout)[0]["error"] == expected, plan.stdout
    for command in (
        ["apply", "--all", "--yes"],
        ["create", "--all"],
        ["refresh", "--all"],
        ["delete", "--all", "--yes"],
    ):
        done = matviews(tmp_path, dsn, *command)
        assert done.returncode == 1, (command, done.stdout + done.stderr)
        assert expected in done.stdout, (command, done.stdout)
        assert "does not exist" not in done.stdout


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"sql": "SELECT 1 AS x, 2 AS x"},
            'the definition of public.mv_users does not compile: column "x" specified more than once',
        ),
        ({"name": "nosuchschema.mv_users"}, "cannot create nosuchschema.mv_users: schema nosuchschema does not exist"),
    ],
    ids=["does not compile", "no such schema"],
)
def test_what_cannot_be_created_is_said_alike_by_plan_apply_and_create(tmp_path, dsn, db, users, fields, expected):
    write(tmp_path, **fields)
    plan = matviews(tmp_path, dsn, "plan", "--json")
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert json.loads(plan.stdout)[0]["error"].startswith(expected), plan.stdout
    for command in (["apply", "--all", "--yes"], ["create", "--all"]):
        done = matviews(tmp_path, dsn, *command)
        assert done.returncode == 1 and expected in done.stdout, (command, done.stdout + done.stderr)
    if "schema" in expected:
        assert 'CREATE SCHEMA "nosuchschema"' in done.stdout
