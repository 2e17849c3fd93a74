"""create_mat_views and delete_mat_views jobs, run in process against real Postgres."""

from __future__ import annotations

import dagster as dg
import pytest
from conftest import scalar

from matviews_dagster import (
    CreateViewJob,
    DeleteViewJob,
    MatViewDefinition,
    RefreshViewJob,
    build_definitions,
)

USERS = MatViewDefinition(name="mv_users", sql="SELECT id, plan FROM users", unique_index_columns=["id"])
PLANS = MatViewDefinition(name="mv_plans", sql="SELECT plan, count(*) AS n FROM users GROUP BY plan")


def run(defs: dg.Definitions, job: str, **config: object) -> dg.ExecuteInProcessResult:
    op = "create_views" if job == CreateViewJob else "delete_views"
    return defs.get_job_def(job).execute_in_process(run_config={"ops": {op: {"config": config}}}, raise_on_error=False)


def summary(result: dg.ExecuteInProcessResult) -> list[dict]:
    return result.output_for_node("create_views" if "create" in result.job_def.name else "delete_views")


def test_job_names() -> None:
    assert (CreateViewJob, RefreshViewJob, DeleteViewJob) == (
        "create_mat_views",
        "refresh_mat_views",
        "delete_mat_views",
    )


def test_create_all_then_force_one(dsn, db, users) -> None:
    defs = build_definitions([USERS, PLANS], dsn=dsn)
    result = run(defs, CreateViewJob)
    assert result.success
    assert [r["outcome"] for r in summary(result)] == ["created", "created"]
    assert scalar(db, "SELECT count(*) FROM pg_matviews") == 2
    users(20)
    forced = run(defs, CreateViewJob, views=["mv_users"], force=True)
    assert forced.success and [r["view"] for r in summary(forced)] == ["public.mv_users"]
    assert scalar(db, "SELECT count(*) FROM mv_users") == 20
    assert scalar(db, "SELECT count(*) FROM mv_plans") == 2
    rows = db.execute(
        "SELECT view_name, meta->'options'->>'force', dagster_run_id FROM mat_view_create_runs ORDER BY id"
    )
    created = [r[:2] for r in rows.fetchall()]
    assert sorted(created[:2]) == [("public.mv_plans", "false"), ("public.mv_users", "false")]  # in parallel
    assert created[2] == ("public.mv_users", "true")
    assert scalar(db, "SELECT dagster_run_id FROM mat_view_create_runs ORDER BY id DESC LIMIT 1") == forced.run_id
    step = next(e for e in forced.all_events if e.event_type_value == "STEP_OUTPUT")
    assert "public.mv_users" in step.step_output_data.metadata["summary"].value


def test_one_failing_view_fails_the_op_after_the_others(dsn, db, users) -> None:
    broken = MatViewDefinition(name="mv_broken", sql="SELECT missing_column FROM users")
    defs = build_definitions([broken, USERS], dsn=dsn)
    result = run(defs, CreateViewJob)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    description = failure.step_failure_data.user_failure_data.description
    assert description.startswith("public.mv_broken:") and "missing_column" in description
    assert scalar(db, "SELECT count(*) FROM mv_users") == 10
    statuses = dict(db.execute("SELECT view_name, status FROM mat_view_create_runs").fetchall())
    assert statuses == {"public.mv_broken": "failed", "public.mv_users": "success"}


def test_unknown_view_in_config_fails_clearly(dsn, db, users) -> None:
    result = run(build_definitions([USERS], dsn=dsn), CreateViewJob, views=["mv_nope"])
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "unknown view 'mv_nope'" in failure.step_failure_data.user_failure_data.description
    assert (
        scalar(db, "SELECT to_regclass('public.mat_view_create_runs')") is None
        or scalar(db, "SELECT count(*) FROM mat_view_create_runs") == 0
    )


@pytest.mark.parametrize("cascade", [False, True])
def test_delete_with_and_without_cascade(dsn, db, users, cascade) -> None:
    defs = build_definitions([USERS, PLANS], dsn=dsn)
    assert run(defs, CreateViewJob).success
    db.execute("CREATE VIEW v_pro AS SELECT * FROM mv_users WHERE plan = 'pro'")
    result = run(defs, DeleteViewJob, cascade=cascade)
    assert result.success is cascade
    remaining = {row[0] for row in db.execute("SELECT matviewname FROM pg_matviews")}
    if cascade:
        assert remaining == set() and scalar(db, "SELECT to_regclass('public.v_pro')") is None
    else:
        assert remaining == {"mv_users"} and scalar(db, "SELECT count(*) FROM v_pro") > 0
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        assert "public.v_pro" in failure.step_failure_data.user_failure_data.description
    statuses = sorted(db.execute("SELECT view_name, status FROM mat_view_delete_runs").fetchall())
    expected = "success" if cascade else "failed"
    assert statuses == [("public.mv_plans", "success"), ("public.mv_users", expected)]
