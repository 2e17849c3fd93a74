"""Asset checks pass on healthy views and fail on broken ones."""

from __future__ import annotations

import dagster as dg
import pytest

from matviews_dagster import MatViewDefinition, build_definitions

USERS = MatViewDefinition(
    name="mv_users",
    sql="SELECT id, plan FROM users",
    refresh_strategy="concurrent",
    unique_index_columns=["id"],
)
KEY = dg.AssetKey(["public", "mv_users"])


def evaluate(dsn: str, definition: MatViewDefinition = USERS) -> dict[str, dg.AssetCheckEvaluation]:
    defs = build_definitions([definition], dsn=dsn)
    checks_only = dg.define_asset_job("checks_only", selection=dg.AssetSelection.checks_for_assets(KEY))
    job = dg.Definitions.merge(defs, dg.Definitions(jobs=[checks_only])).resolve_job_def("checks_only")
    result = job.execute_in_process()
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


@pytest.fixture
def healthy(make_mv, users) -> None:
    make_mv(USERS).create("mv_users")


def test_healthy_view_passes_every_check(dsn, healthy) -> None:
    results = evaluate(dsn)
    assert set(results) == {"populated", "unique_index", "definition_matches"}
    assert all(e.passed for e in results.values())


def test_missing_view_fails_populated(dsn, users) -> None:
    results = evaluate(dsn)
    assert not results["populated"].passed and "does not exist" in results["populated"].description
    assert not results["unique_index"].passed


def test_unpopulated_view_fails_populated(dsn, db, healthy) -> None:
    db.execute("REFRESH MATERIALIZED VIEW mv_users WITH NO DATA")
    assert not evaluate(dsn)["populated"].passed


def test_dropped_unique_index_fails(dsn, db, healthy) -> None:
    db.execute("DROP INDEX mv_users_id_idx")
    result = evaluate(dsn)["unique_index"]
    assert not result.passed and "CREATE UNIQUE INDEX ON public.mv_users (id)" in result.description


def test_changed_definition_warns_with_how_to_apply(dsn, healthy) -> None:
    changed = USERS.model_copy(update={"sql": "SELECT id, plan, 1 AS version FROM users"})
    result = evaluate(dsn, changed)["definition_matches"]
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert "materializing it applies the change (on_definition_change: apply)" in result.description
    assert "version" in result.metadata["expected"].value
    assert "+    1 AS version" in result.metadata["diff"].value


def test_formatting_differences_are_not_drift(dsn, healthy) -> None:
    reformatted = USERS.model_copy(update={"sql": "select   id,\n  plan\nfrom   users"})
    assert evaluate(dsn, reformatted)["definition_matches"].passed
