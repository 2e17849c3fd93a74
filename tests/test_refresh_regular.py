"""Regular refresh, refresh of missing views, and create_if_missing."""

from __future__ import annotations

from conftest import scalar

from matviews_dagster import MatViewDefinition

USERS = MatViewDefinition(name="mv_users", sql="SELECT id, email FROM users", unique_index_columns=["id"])


def test_refresh_picks_up_new_rows(make_mv, db, users) -> None:
    mv = make_mv(USERS)
    mv.create("mv_users")
    users(25)
    result = mv.refresh("mv_users", "exact")
    assert result.status == "success" and result.outcome == "updated"
    assert result.rows_count == 25
    assert scalar(db, "SELECT count(*) FROM mv_users") == 25
    row = mv.history(kind="refresh", limit=1)[0]
    assert row["rows_count"] == 25 and row["meta"]["sql"] == ['REFRESH MATERIALIZED VIEW "public"."mv_users"']


def test_refresh_of_a_missing_view_fails_and_says_create_first(make_mv, db, users) -> None:
    mv = make_mv(USERS)
    result = mv.refresh("mv_users")
    assert result.status == "failed"
    assert "does not exist; create it first" in result.error
    assert mv.history(kind="refresh", limit=1)[0]["status"] == "failed"
    assert scalar(db, "SELECT to_regclass('public.mv_users')") is None


def test_create_if_missing_records_a_create_run_then_the_refresh(make_mv, db, users) -> None:
    mv = make_mv(USERS)
    result = mv.refresh("mv_users", create_if_missing=True, dagster_run_id="dagster-run-1")
    assert result.status == "success" and result.rows_count == 10
    (create_row,) = mv.history(kind="create")
    (refresh_row,) = mv.history(kind="refresh")
    assert create_row["status"] == "success" and create_row["dagster_run_id"] == "dagster-run-1"
    assert refresh_row["meta"]["populated_by_create_run"] == create_row["id"]
    assert refresh_row["dagster_run_id"] == "dagster-run-1"
    assert scalar(db, "SELECT count(*) FROM mv_users") == 10
    again = mv.refresh("mv_users", create_if_missing=True)
    assert again.outcome == "updated"
    assert len(mv.history(kind="create")) == 1


def test_failing_refresh_records_error_and_keeps_data(make_mv, db, users) -> None:
    mv = make_mv(MatViewDefinition(name="mv_ratio", sql="SELECT id, 100 / (id - 11) AS r FROM users"))
    mv.create("mv_ratio")
    users(12)
    result = mv.refresh("mv_ratio")
    assert result.status == "failed" and "division by zero" in result.error
    assert "SQLSTATE 22012" in result.error
    assert scalar(db, "SELECT count(*) FROM mv_ratio") == 10
    row = mv.history(kind="refresh", limit=1)[0]
    assert row["status"] == "failed" and "division by zero" in row["error"]
    assert row["finished_at"] is not None and row["duration_ms"] >= 0


def test_strategy_override_for_one_refresh(make_mv, db, users) -> None:
    mv = make_mv(USERS)
    mv.create("mv_users")
    result = mv.refresh("mv_users", strategy="swap")
    assert result.status == "success"
    row = mv.history(kind="refresh", limit=1)[0]
    assert row["meta"]["strategy"] == "swap"


def test_unqualified_tables_work_for_every_strategy(make_mv, db, users) -> None:
    """Postgres 17+ refreshes with search_path = pg_catalog, pg_temp: relations named without a
    schema are resolved when the view (or the swap's copy) is created, so refreshes still work."""
    definition = MatViewDefinition(
        name="mv_users",
        sql="SELECT u.id, count(*) AS n FROM users u JOIN users v ON v.id <= u.id GROUP BY u.id",
        unique_index_columns=["id"],
    )
    mv = make_mv(definition)
    mv.create("mv_users")
    users(12)
    for strategy in ("regular", "concurrent", "swap"):
        result = mv.refresh("mv_users", "exact", strategy=strategy)
        assert result.status == "success", result
        assert result.rows_count == 12
