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
    assert mv.history(kind="delete", limit=1)[0]["meta"]["payload"]["dropped_dependents"] == [["public.v_pro", "view"]]


def test_cascade_records_every_managed_view_it_drops_and_names_the_rest(make_mv, db, users) -> None:
    base = MatViewDefinition(name="mv_base", sql="SELECT id, plan FROM users")
    child = MatViewDefinition(name="mv_child", sql="SELECT id FROM mv_base")
    mv = make_mv(base, child)
    assert all(r.ok for r in mv.create_many())
    db.execute("CREATE VIEW v_report AS SELECT * FROM mv_child")
    refused = mv.delete("mv_base")
    assert not refused.ok
    assert "public.mv_child (materialized view), public.v_report (view)" in refused.error
    assert "cascade=True" in refused.hint
    result = mv.delete("mv_base", cascade=True)
    assert result.ok and result.dropped == ("public.mv_child (materialized view)", "public.v_report (view)")
    rows = db.execute("SELECT view_name, status, meta->>'dropped_by' FROM mat_view_delete_runs ORDER BY id").fetchall()
    assert rows[-2:] == [("public.mv_base", "success", None), ("public.mv_child", "success", "public.mv_base")]
    status = {row["name"]: row for row in mv.status()}
    assert status["public.mv_child"]["exists"] is False
    assert status["public.mv_child"]["last_run"]["kind"] == "delete"
