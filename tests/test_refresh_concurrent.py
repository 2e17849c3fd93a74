"""Concurrent refresh: the usable-unique-index check, the unpopulated fallback, no other fallback."""

from __future__ import annotations

import dagster as dg
import pytest
from conftest import scalar
from psycopg import sql

from matviews_dagster import MatViewDefinition, build_definitions

USERS = MatViewDefinition(
    name="mv_users",
    sql="SELECT id, email, plan FROM users",
    refresh_strategy="concurrent",
    unique_index_columns=["id"],
)
NO_INDEX = MatViewDefinition(name="mv_users", sql="SELECT id, email, plan FROM users")


def test_concurrent_refresh_updates_rows(make_mv, db, users) -> None:
    mv = make_mv(USERS)
    mv.create("mv_users")
    users(30)
    result = mv.refresh("mv_users", "exact")
    assert result.status == "success" and result.rows_count == 30
    row = mv.history(kind="refresh", limit=1)[0]
    assert row["meta"]["sql"] == ['REFRESH MATERIALIZED VIEW CONCURRENTLY "public"."mv_users"']
    assert "fallback" not in row["meta"]


@pytest.mark.parametrize(
    "index",
    [
        None,
        "CREATE INDEX ON mv_users (id)",
        "CREATE UNIQUE INDEX ON mv_users (id) WHERE id > 0",
        "CREATE UNIQUE INDEX ON mv_users ((id + 0))",
    ],
)
def test_unusable_indexes_fail_with_the_fix(make_mv, db, users, index: str | None) -> None:
    make_mv(NO_INDEX).create("mv_users")
    if index:
        db.execute(index)
    not_applied = USERS.model_copy(update={"on_definition_change": "warn"})  # apply would build the index
    result = make_mv(not_applied).refresh("mv_users")
    assert result.status == "failed"
    assert "public.mv_users has no usable unique index" in result.error
    assert 'CREATE UNIQUE INDEX ON "public"."mv_users" ("id")' in result.hint


def test_include_columns_are_fine(make_mv, db, users) -> None:
    make_mv(NO_INDEX).create("mv_users")
    db.execute("CREATE UNIQUE INDEX mv_users_id_incl ON mv_users (id) INCLUDE (email)")
    result = make_mv(USERS).refresh("mv_users")
    assert result.status == "success"
    assert make_mv(USERS).history(kind="refresh", limit=1)[0]["meta"]["unique_index"] == "mv_users_id_incl"


def test_unpopulated_view_gets_a_regular_refresh_noted_in_meta(make_mv, db, users) -> None:
    mv = make_mv(USERS)
    mv.create("mv_users")
    db.execute("REFRESH MATERIALIZED VIEW mv_users WITH NO DATA")
    result = mv.refresh("mv_users")
    assert result.status == "success"
    row = mv.history(kind="refresh", limit=1)[0]
    assert "not populated" in row["meta"]["fallback"]
    assert row["meta"]["sql"] == ['REFRESH MATERIALIZED VIEW "public"."mv_users"']
    assert scalar(db, "SELECT ispopulated FROM pg_matviews WHERE matviewname = 'mv_users'") is True


def test_other_errors_do_not_fall_back_to_regular(make_mv, db, users) -> None:
    duplicates = MatViewDefinition(
        name="mv_plans",
        sql="SELECT plan, id FROM users",
        refresh_strategy="concurrent",
        unique_index_columns=["id"],
    )
    mv = make_mv(duplicates)
    mv.create("mv_plans")
    db.execute("DROP INDEX mv_plans_id_idx")
    db.execute("CREATE UNIQUE INDEX mv_plans_plan_key ON mv_plans (plan, id)")
    db.execute("UPDATE users SET id = id + 1000 WHERE id = 1")
    db.execute("INSERT INTO users VALUES (1, 'dup', 'pro')")
    db.execute("ALTER TABLE users DROP CONSTRAINT users_pkey")
    db.execute("INSERT INTO users VALUES (1, 'dup2', 'pro')")
    result = mv.refresh("mv_plans")
    assert result.status == "failed"
    row = mv.history(kind="refresh", limit=1)[0]
    assert "fallback" not in row["meta"]
    assert all("CONCURRENTLY" in statement for statement in row["meta"]["sql"])
    assert scalar(db, "SELECT count(*) FROM mv_plans") == 10


@pytest.mark.parametrize("column", ["note", "v", "q"], ids=["note", "named like the check's alias", "q"])
def test_duplicate_keys_with_nulls_fail_instead_of_leaving_fewer_rows(make_mv, db, column) -> None:
    """PostgreSQL's concurrent refresh skips rows containing a NULL in its duplicate check:
    the refresh would succeed with 2 rows while the query returns 3."""
    db.execute(sql.SQL("CREATE TABLE notes (code text, {} text)").format(sql.Identifier(column)))
    db.execute("INSERT INTO notes VALUES ('a', NULL), ('b', 'x')")
    notes = MatViewDefinition(
        name="mv_notes",
        sql=f"SELECT code, {column} FROM notes",
        refresh_strategy="concurrent",
        unique_index_columns=["code"],
    )
    mv = make_mv(notes)
    assert mv.create("mv_notes").ok
    db.execute("INSERT INTO notes VALUES ('a', NULL)")
    result = mv.refresh("mv_notes")
    assert result.status == "failed"
    assert "its query returns 2 rows with the same key (code) = ('a')" in result.error
    assert "at least one contains a NULL" in result.error and "rolled back" in result.error
    assert scalar(db, "SELECT count(*) FROM mv_notes") == 2 and scalar(db, "SELECT count(*) FROM notes") == 3
    row = db.execute("SELECT status, meta->'duplicate_key' FROM mat_view_refresh_runs").fetchone()
    assert row == ("failed", ["a"])
    assert not mv.refresh("mv_notes", strategy="regular").ok, "a regular refresh fails on the duplicate key too"
    db.execute("DELETE FROM notes WHERE ctid = (SELECT max(ctid) FROM notes WHERE code = 'a')")
    fixed = mv.refresh("mv_notes")
    assert fixed.ok and fixed.rows_count == 2
    assert mv.history(kind="refresh", limit=1)[0]["meta"]["equality_check_ms"] >= 0


def test_the_check_reads_the_deployed_query_and_tolerates_volatile_ones(make_mv, db, users) -> None:
    """The check runs what the refresh ran: not an edited definition, and a random() query
    (different rows every time, no duplicate keys) passes."""
    sampled = MatViewDefinition(
        name="mv_sample",
        sql="SELECT id, plan FROM users WHERE random() < 0.5",
        refresh_strategy="concurrent",
        unique_index_columns=["id"],
    )
    mv = make_mv(sampled)
    assert mv.create("mv_sample").ok
    assert all(mv.refresh("mv_sample").ok for _ in range(3))
    edited = sampled.model_copy(update={"sql": "SELECT id, plan FROM users WHERE id > 5"})
    result = make_mv(edited).refresh("mv_sample")
    assert result.ok, result.error


def test_concurrent_null_trap_is_reported(make_mv, dsn, db, users) -> None:
    definition = MatViewDefinition(
        name="mv_plans",
        sql="SELECT nullif(id, 3) AS id, plan FROM users",
        refresh_strategy="concurrent",
        unique_index_columns=["id"],
    )
    mv = make_mv(definition)
    mv.create("mv_plans")
    result = mv.refresh("mv_plans")
    assert result.status == "success"
    warnings = mv.history(kind="refresh", limit=1)[0]["meta"]["warnings"]
    assert "has NULLs in id" in warnings[0] and "every concurrent refresh rewrites" in warnings[0]

    defs = build_definitions([definition], dsn=dsn)
    key = dg.AssetKey(["public", "mv_plans"])
    job = dg.Definitions.merge(
        defs, dg.Definitions(jobs=[dg.define_asset_job("checks", selection=dg.AssetSelection.checks_for_assets(key))])
    ).resolve_job_def("checks")
    (check,) = job.execute_in_process().get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN and "NULLs in id" in check.description
    assert check.metadata["unique_index"].value == "failed (warn)" and check.metadata["populated"].value == "passed"

    db.execute("DELETE FROM users WHERE id = 3")
    mv.refresh("mv_plans")
    assert "warnings" not in mv.history(kind="refresh", limit=1)[0]["meta"]
