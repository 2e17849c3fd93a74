"""Delete: RESTRICT by default, dependents named, cascade drops them, absent is skipped."""

from __future__ import annotations

from conftest import scalar

from matviews_dagster import MatViewDefinition

USERS = MatViewDefinition(name="mv_users", sql="SELECT id, plan FROM users")


def test_delete_drops_the_view(make_mv, db, users) -> None:
    mv = make_mv(USERS)
    mv.create("mv_users")
    result = mv.delete("mv_users")
    assert result.status == "success" and result.outcome == "deleted"
    assert scalar(db, "SELECT to_regclass('public.mv_users')") is None
    assert mv.history(kind="delete", limit=1)[0]["status"] == "success"


def test_delete_of_a_missing_view_is_skipped(make_mv, db, users) -> None:
    result = make_mv(USERS).delete("mv_users")
    assert result.status == "success" and result.outcome == "skipped"


def test_dependents_block_delete_and_are_named(make_mv, db, users) -> None:
    mv = make_mv(USERS)
    mv.create("mv_users")
    db.execute("CREATE VIEW v_pro AS SELECT * FROM mv_users WHERE plan = 'pro'")
    db.execute("CREATE MATERIALIZED VIEW mv_free AS SELECT * FROM mv_users WHERE plan = 'free'")
    result = mv.delete("mv_users", False)
    assert result.status == "failed"
    assert "public.mv_free" in result.error and "public.v_pro" in result.error
    assert scalar(db, "SELECT count(*) FROM mv_users") == 10
    assert mv.history(kind="delete", limit=1)[0]["error"] == result.error


def test_cascade_drops_dependents(make_mv, db, users) -> None:
    mv = make_mv(USERS)
    mv.create("mv_users")
    db.execute("CREATE VIEW v_pro AS SELECT * FROM mv_users WHERE plan = 'pro'")
    result = mv.delete("mv_users", {"cascade": True})
    assert result.status == "success"
    assert scalar(db, "SELECT to_regclass('public.v_pro')") is None
    assert scalar(db, "SELECT to_regclass('public.mv_users')") is None
    assert mv.history(kind="delete", limit=1)[0]["meta"]["payload"]["dropped_dependents"] == ["public.v_pro"]
