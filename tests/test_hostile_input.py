"""Hostile and bad input: a clear error naming the field and the rule, and nothing changes.

Static inputs (definitions, YAML) fail while being parsed, before any connection exists.
Dynamic inputs (job arguments, queue names) fail before anything runs: the catalog and the
run tables are compared before and after.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from matviews_dagster import (
    CreateViewJob,
    DeleteViewJob,
    MatViewDefinition,
    MatViews,
    MatViewsAdapter,
    RefreshViewJob,
    build_definitions,
    load_definitions,
)

VALID: dict[str, Any] = {"name": "mv_ok", "sql": "SELECT id, plan FROM users"}

DEFINITIONS: list[tuple[str, dict[str, Any], str]] = [
    ("quote in name", {"name": 'mv"x'}, "name .* is invalid"),
    ("semicolon in name", {"name": "mv;x"}, "name .* is invalid"),
    ("comment in name", {"name": "mv--x"}, "name .* is invalid"),
    ("injection in name", {"name": '"; DROP TABLE users; --'}, "name .* is invalid"),
    ("space in name", {"name": "mv users"}, "name .* is invalid"),
    ("leading dot", {"name": ".mv"}, "schema of name"),
    ("trailing dot", {"name": "mv."}, "name must not be empty"),
    ("three parts", {"name": "a.b.c"}, "write 'view' or 'schema.view'"),
    ("64-byte name", {"name": "v" * 64}, "64 bytes"),
    ("empty name", {"name": ""}, "must not be empty"),
    ("unicode look-alike", {"name": "mv_\u0430ccounts"}, "name .* is invalid"),
    ("NUL byte", {"name": "mv\x00"}, "name .* is invalid"),
    ("leading digit", {"name": "1mv"}, "name .* is invalid"),
    ("name not a string", {"name": 42}, "name"),
    ("quote in schema", {"name": 'rep"orts.mv'}, "schema of name .* is invalid"),
    ("injection in schema", {"name": "x;drop.mv"}, "schema of name .* is invalid"),
    ("64-byte schema", {"name": "s" * 64 + ".mv"}, "64 bytes"),
    ("unique column injection", {"unique_index_columns": ['id"; DROP TABLE users; --']}, "unique_index_columns"),
    ("unique column empty", {"unique_index_columns": [""]}, "unique_index_columns column must not be empty"),
    ("unique column twice", {"unique_index_columns": ["id", "id"]}, "twice"),
    ("unique columns not a list", {"unique_index_columns": "id"}, "unique_index_columns"),
    ("index column injection", {"indexes": [["plan); DROP TABLE users; --"]]}, r"indexes\[0\] column"),
    ("index without columns", {"indexes": [[]]}, "non-empty"),
    ("index not a list of lists", {"indexes": ["plan"]}, "indexes"),
    ("stacked statements", {"sql": "SELECT 1; DROP TABLE users"}, "exactly one query statement"),
    ("stacked after comment", {"sql": "SELECT 1 -- x\n; DELETE FROM users"}, "exactly one query statement"),
    ("DML", {"sql": "DELETE FROM users"}, "must be a query"),
    ("DDL", {"sql": "DROP TABLE users"}, "must be a query"),
    ("GRANT", {"sql": "GRANT ALL ON users TO PUBLIC"}, "must be a query"),
    ("SELECT INTO", {"sql": "SELECT * INTO stolen FROM users"}, "SELECT ... INTO"),
    ("writing CTE", {"sql": "WITH x AS (UPDATE users SET plan = '' RETURNING *) SELECT * FROM x"}, "must not modify"),
    (
        "nested writing CTE",
        {"sql": "SELECT * FROM (WITH d AS (DELETE FROM users RETURNING id) SELECT id FROM d) q"},
        "must not modify",
    ),
    ("locking clause", {"sql": "SELECT * FROM users FOR SHARE"}, "FOR UPDATE/SHARE"),
    ("syntax error", {"sql": "SELECT FROM WHERE"}, "syntax error"),
    ("empty SQL", {"sql": "   "}, "non-empty"),
    ("concurrent without unique columns", {"refresh_strategy": "concurrent"}, "requires unique_index_columns"),
    ("unknown strategy", {"refresh_strategy": "instant"}, "refresh_strategy"),
    ("unknown row count", {"row_count_strategy": "all"}, "row_count_strategy"),
    ("bad cron", {"schedule_cron": "daily; rm -rf /"}, "schedule_cron"),
    ("negative timeout", {"statement_timeout": -1}, "statement_timeout"),
    ("dependency injection", {"dependencies": ["public.users; DROP TABLE users"]}, "dependencies entry"),
    ("unknown field", {"sql_extra": "DROP TABLE users"}, "sql_extra"),
]

YAMLS: list[tuple[str, str, str]] = [
    ("missing name", "views:\n  - sql: SELECT 1\n", r"views\[0\].*name: Field required"),
    ("missing sql", "views:\n  - name: mv\n", "sql: Field required"),
    ("wrong type", "views:\n  - name: mv\n    sql: SELECT 1\n    unique_index_columns: 5\n", "unique_index_columns"),
    ("duplicate names", "views:\n  - {name: mv, sql: SELECT 1}\n  - {name: public.mv, sql: SELECT 2}\n", "twice"),
    ("not a list", "views: mv\n", "'views' must be a list"),
    ("no views key", "- name: mv\n", "expected a mapping with a 'views:' list"),
    ("broken YAML", "views: [\n", "invalid YAML"),
    ("python tag", "views: !!python/object/apply:os.system ['true']\n", "invalid YAML"),
]

JOB_ARGUMENTS: list[tuple[str, object, Any, str]] = [
    ("unknown job", "drop_everything", ["mv_ok"], "not a matviews job"),
    ("unknown view", RefreshViewJob, ["mv_missing"], "unknown view"),
    ("injection as view", RefreshViewJob, ['mv_ok"; DROP TABLE users; --'], "view name"),
    ("junk row count", RefreshViewJob, ["mv_ok", "all of them"], "row count option"),
    ("row count as bool", RefreshViewJob, ["mv_ok", True], "row count option"),
    ("unknown option key", CreateViewJob, ["mv_ok", {"force": True, "drop": True}], "force option"),
    ("force as number", CreateViewJob, ["mv_ok", 2], "force option"),
    ("cascade as list", DeleteViewJob, ["mv_ok", ["yes"]], "cascade option"),
    ("view as float", RefreshViewJob, [1.5], "must be a name"),
    ("too many args", RefreshViewJob, ["mv_ok", "exact", "more"], "args must be"),
    ("args as string", RefreshViewJob, "mv_ok", "args must be"),
    ("unknown definition id", RefreshViewJob, [999999], "unknown definition id"),
]

QUEUES = ["", "heavy queue", "q;drop", "q" * 64, "ünïcode", "a/b"]


def snapshot(conn: psycopg.Connection) -> dict[str, object]:
    """Relations of the database and the rows of every run table that exists."""
    relations = conn.execute(
        "SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') ORDER BY 1, 2"
    ).fetchall()
    rows = {}
    for schema, table, kind in relations:
        if kind == "r" and table.startswith("mat_view_"):
            rows[table] = conn.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()
    users = conn.execute("SELECT count(*) FROM users").fetchone()
    return {"relations": relations, "rows": rows, "users": users}


def test_the_table_covers_at_least_forty_inputs() -> None:
    assert len(DEFINITIONS) + len(YAMLS) + len(JOB_ARGUMENTS) + len(QUEUES) >= 40


@pytest.mark.parametrize(("label", "fields", "rule"), DEFINITIONS, ids=[d[0] for d in DEFINITIONS])
def test_bad_definitions_are_rejected_before_any_connection(label: str, fields: dict, rule: str) -> None:
    with pytest.raises(ValueError, match=rule):
        MatViewDefinition(**{**VALID, **fields})


@pytest.mark.parametrize(("label", "text", "rule"), YAMLS, ids=[y[0] for y in YAMLS])
def test_bad_yaml_files_are_rejected_with_file_and_field(tmp_path: Path, label: str, text: str, rule: str) -> None:
    path = tmp_path / "matviews.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=rule) as info:
        load_definitions(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.fixture
def prepared(make_mv, db, users) -> MatViews:
    mv = make_mv(MatViewDefinition(**VALID))
    mv.create("mv_ok")
    return mv


@pytest.mark.parametrize(("label", "job", "args", "rule"), JOB_ARGUMENTS, ids=[a[0] for a in JOB_ARGUMENTS])
def test_bad_job_arguments_change_nothing(prepared, dsn, db, label, job, args, rule) -> None:
    before = snapshot(db)
    adapter = MatViewsAdapter(backend="queue", dsn=dsn).bind(build_definitions(prepared.definitions, dsn=dsn))
    with pytest.raises(ValueError, match=rule):
        adapter.enqueue(job, args=args)
    assert snapshot(db) == before


@pytest.mark.parametrize("queue", QUEUES)
def test_bad_queue_names_change_nothing(prepared, dsn, db, queue) -> None:
    before = snapshot(db)
    adapter = MatViewsAdapter(backend="queue", dsn=dsn).bind(build_definitions(prepared.definitions, dsn=dsn))
    with pytest.raises(ValueError, match=r"queue .* is invalid"):
        adapter.enqueue(RefreshViewJob, queue=queue, args=["mv_ok"])
    assert snapshot(db) == before


@pytest.mark.parametrize(
    ("call", "rule"),
    [
        (lambda mv: mv.create("mv_ok", "sure"), "force option"),
        (lambda mv: mv.refresh("mv_ok", {"row_count_strategy": "most"}), "row count option"),
        (lambda mv: mv.refresh("mv_ok", strategy="DROP"), "strategy"),
        (lambda mv: mv.delete("mv_ok", "cascade"), "cascade option"),
        (lambda mv: mv.history(view="x; DROP TABLE users"), "view name"),
        (lambda mv: mv.history(kind="drop"), "kind must be one of"),
    ],
)
def test_bad_operation_arguments_change_nothing(prepared, db, call, rule) -> None:
    before = snapshot(db)
    with pytest.raises(ValueError, match=rule):
        call(prepared)
    assert snapshot(db) == before
