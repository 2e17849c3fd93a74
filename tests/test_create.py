"""Create: the view, its indexes, skip when present, force recreate in one transaction."""

from __future__ import annotations

import psycopg
from conftest import scalar

from matviews_dagster import MatViewDefinition

USERS = MatViewDefinition(
    name="mv_users",
    sql="SELECT id, email, plan FROM users",
    refresh_strategy="concurrent",
    unique_index_columns=["id"],
    indexes=[["plan"], ["plan", "email"]],
)


def index_defs(db: psycopg.Connection, view: str) -> list[str]:
    rows = db.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = %s ORDER BY indexdef",
        (view,),
    ).fetchall()
    return [row[0] for row in rows]


def test_create_makes_populated_view_with_all_indexes(make_mv, db, users) -> None:
    result = make_mv(USERS).create("mv_users")
    assert result.status == "success" and result.outcome == "created"
    assert result.rows_count == 10
    assert scalar(db, "SELECT ispopulated FROM pg_matviews WHERE matviewname = 'mv_users'") is True
    assert scalar(db, "SELECT count(*) FROM mv_users") == 10
    definitions = index_defs(db, "mv_users")
    assert len(definitions) == 3
    assert any(d.startswith("CREATE UNIQUE INDEX") and d.endswith("(id)") for d in definitions)
    assert any(d.endswith("(plan)") for d in definitions)
    assert any(d.endswith("(plan, email)") for d in definitions)


def test_create_skips_an_existing_view(make_mv, db, users) -> None:
    mv = make_mv(USERS)
    mv.create("mv_users")
    oid = scalar(db, "SELECT 'mv_users'::regclass::oid")
    result = mv.create("mv_users")
    assert result.status == "success" and result.outcome == "skipped"
    assert scalar(db, "SELECT 'mv_users'::regclass::oid") == oid
    assert mv.history(kind="create", limit=1)[0]["meta"]["outcome"] == "skipped"


def test_force_recreates_with_the_new_sql(make_mv, db, users) -> None:
    make_mv(USERS).create("mv_users")
    changed = USERS.model_copy(update={"sql": "SELECT id, email, plan, 1 AS version FROM users"})
    result = make_mv(changed).create("mv_users", {"force": True})
    assert result.outcome == "created"
    assert scalar(db, "SELECT max(version) FROM mv_users") == 1
    assert len(index_defs(db, "mv_users")) == 3


def test_force_with_failing_sql_keeps_the_old_view_and_data(make_mv, db, users) -> None:
    make_mv(USERS).create("mv_users")
    broken = USERS.model_copy(update={"sql": "SELECT id, email, plan FROM users_missing"})
    result = make_mv(broken).create("mv_users", True)
    assert result.status == "failed"
    assert "users_missing" in result.error
    assert scalar(db, "SELECT count(*) FROM mv_users") == 10
    assert len(index_defs(db, "mv_users")) == 3
    row = make_mv(broken).history(kind="create", limit=1)[0]
    assert row["status"] == "failed" and "users_missing" in row["error"]


def test_force_keeps_the_views_built_on_it(make_mv, db, users) -> None:
    make_mv(USERS).create("mv_users")
    db.execute("CREATE VIEW pro_users AS SELECT * FROM mv_users WHERE plan = 'pro'")
    changed = USERS.model_copy(update={"sql": "SELECT id, email, plan, 2 AS version FROM users"})
    result = make_mv(changed).create("mv_users", force="yes")
    assert result.status == "success", result
    assert scalar(db, "SELECT count(*) FROM pro_users") == scalar(db, "SELECT count(*) FROM users WHERE plan = 'pro'")
    assert scalar(db, "SELECT max(version) FROM mv_users") == 2
    assert make_mv(changed).history(kind="create", limit=1)[0]["meta"]["recreated_dependents"] == [
        "public.pro_users (view)"
    ]


def test_unknown_index_column_lists_the_view_columns(make_mv, db, users) -> None:
    wrong = MatViewDefinition(name="mv_users", sql='SELECT id AS "userId" FROM users', unique_index_columns=["userid"])
    result = make_mv(wrong).create("mv_users")
    assert result.status == "failed"
    assert "userid" in result.error and "userId" in result.error
    assert scalar(db, "SELECT to_regclass('public.mv_users')") is None


def test_a_table_with_the_views_name_is_reported(make_mv, db, users) -> None:
    db.execute("CREATE TABLE mv_users (id int)")
    result = make_mv(USERS).create("mv_users", force=True)
    assert result.status == "failed"
    assert "is a table, not a materialized view" in result.error
    assert scalar(db, "SELECT relkind FROM pg_class WHERE relname = 'mv_users'") == "r"


def test_create_in_another_schema_with_quoted_identifiers(make_mv, db, users) -> None:
    db.execute('CREATE SCHEMA "Reports"')
    definition = MatViewDefinition(
        name="Reports.MvPlans",
        sql='SELECT plan AS "Plan", count(*) AS n FROM users GROUP BY plan',
        unique_index_columns=["Plan"],
    )
    assert make_mv(definition).create("Reports.MvPlans").status == "success"
    assert scalar(db, 'SELECT count(*) FROM "Reports"."MvPlans"') == 2


def test_a_missing_upstream_view_is_named_with_the_way_out(make_mv, db, users) -> None:
    base = MatViewDefinition(name="reports.mv_base", sql="SELECT id FROM users")
    top = MatViewDefinition(name="reports.mv_top", sql="SELECT id FROM mv_base")
    db.execute("CREATE SCHEMA reports")
    mv = make_mv(base, top)
    result = mv.create("reports.mv_top")
    assert result.status == "failed"
    assert 'relation "mv_base" does not exist' in result.error and "reports.mv_base does not exist yet" in result.error
    assert "create reports.mv_base first" in result.hint
    assert [r.status for r in mv.create_many()] == ["success", "success"]


def test_an_error_inside_a_function_says_which_function(make_mv, db, users) -> None:
    db.execute("CREATE FUNCTION ratio(n int) RETURNS numeric LANGUAGE plpgsql AS $$ BEGIN RETURN 10 / n; END $$")
    db.execute("CREATE TABLE divisors (n int)")
    db.execute("INSERT INTO divisors VALUES (2)")
    view = MatViewDefinition(name="mv_ratio", sql="SELECT ratio(n) AS r FROM divisors")
    mv = make_mv(view)
    assert mv.create("mv_ratio").ok
    db.execute("UPDATE divisors SET n = 0")
    result = mv.refresh("mv_ratio")
    assert result.status == "failed"
    assert "division by zero" in result.error and "(in PL/pgSQL function " in result.error
    assert "ratio(integer) line 1 at RETURN" in result.error
    assert "search_path" in result.hint


def test_a_missing_table_is_not_called_a_view_to_create(make_mv, db, users) -> None:
    view = MatViewDefinition(name="mv_orders", sql="SELECT id FROM orders_archive")
    result = make_mv(view).create("mv_orders")
    assert result.status == "failed"
    assert "public.orders_archive does not exist (not one of the defined views)" in result.error
    assert "create_many" not in result.hint and "search_path" in result.hint
