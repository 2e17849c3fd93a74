"""The one asset check of each view, ``deployed_as_defined``, passes on healthy views and fails
on broken ones, naming each failed verdict; in a materialization its verdicts come from what the
refresh established."""

from __future__ import annotations

import dagster as dg
import pytest
from conftest import scalar

from matviews_dagster import MatViewDefinition, MatViews, build_definitions

USERS = MatViewDefinition(
    name="mv_users",
    sql="SELECT id, plan FROM users",
    refresh_strategy="concurrent",
    unique_index_columns=["id"],
)
KEY = dg.AssetKey(["public", "mv_users"])


def evaluate(
    dsn: str, definition: MatViewDefinition = USERS, selection: dg.AssetSelection | None = None
) -> dg.AssetCheckEvaluation:
    """The view's one check, run alone (checks only: from the catalog) or with ``selection``."""
    defs = build_definitions([definition], dsn=dsn)
    job = dg.define_asset_job("job", selection=selection or dg.AssetSelection.checks_for_assets(KEY))
    result = dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def("job").execute_in_process()
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == "deployed_as_defined"
    return evaluation


def verdicts(evaluation: dg.AssetCheckEvaluation) -> dict[str, str]:
    return {name: evaluation.metadata[name].value for name in ("populated", "unique_index", "definition_matches")}


@pytest.fixture
def healthy(make_mv, users) -> None:
    make_mv(USERS).create("mv_users")


def test_healthy_view_passes_every_check(dsn, healthy) -> None:
    result = evaluate(dsn)
    assert result.passed
    assert verdicts(result) == dict.fromkeys(("populated", "unique_index", "definition_matches"), "passed")


def test_missing_view_fails_populated(dsn, users) -> None:
    result = evaluate(dsn)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    assert "does not exist" in result.description
    assert verdicts(result)["populated"] == verdicts(result)["unique_index"] == "failed (error)"


def test_unpopulated_view_fails_populated(dsn, db, healthy) -> None:
    db.execute("REFRESH MATERIALIZED VIEW mv_users WITH NO DATA")
    result = evaluate(dsn)
    assert not result.passed and verdicts(result)["populated"] == "failed (error)"
    assert verdicts(result)["definition_matches"] == "passed"


def test_dropped_unique_index_fails(dsn, db, healthy) -> None:
    db.execute("DROP INDEX mv_users_id_idx")
    result = evaluate(dsn)
    assert not result.passed and "CREATE UNIQUE INDEX ON public.mv_users (id)" in result.description
    assert verdicts(result)["unique_index"] == "failed (error)" and verdicts(result)["populated"] == "passed"


def test_changed_definition_warns_with_how_to_apply(dsn, healthy) -> None:
    changed = USERS.model_copy(update={"sql": "SELECT id, plan, 1 AS version FROM users"})
    result = evaluate(dsn, changed)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert verdicts(result)["definition_matches"] == "failed (warn)"
    assert "materializing it applies the change (on_definition_change: apply)" in result.description
    assert "version" in result.metadata["expected"].value
    assert "+    1 AS version" in result.metadata["diff"].value


def test_formatting_differences_are_not_drift(dsn, healthy) -> None:
    reformatted = USERS.model_copy(update={"sql": "select   id,\n  plan\nfrom   users"})
    assert evaluate(dsn, reformatted).passed


MATERIALIZE = dg.AssetSelection.assets(KEY)  # the view and its check, as "Materialize" runs them


def test_a_materialization_takes_its_verdicts_from_the_refresh(dsn, db, healthy) -> None:
    """A refresh that fills the view makes it populated (no catalog read needed), and one that
    kept a difference (on_definition_change: warn) reports it as the check does alone."""
    db.execute("REFRESH MATERIALIZED VIEW mv_users WITH NO DATA")
    assert verdicts(evaluate(dsn))["populated"] == "failed (error)"
    refreshed = evaluate(dsn, selection=MATERIALIZE)
    assert refreshed.passed and scalar(db, "SELECT relispopulated FROM pg_class WHERE relname = 'mv_users'")
    kept = USERS.model_copy(update={"sql": "SELECT id, plan, 1 AS version FROM users", "on_definition_change": "warn"})
    warned = evaluate(dsn, kept, selection=MATERIALIZE)
    alone = evaluate(dsn, kept)
    assert not warned.passed and warned.severity == alone.severity == dg.AssetCheckSeverity.WARN
    assert warned.description == alone.description and verdicts(warned) == verdicts(alone)
    assert "on_definition_change: warn" in warned.description


def test_a_comment_changed_by_hand_is_a_difference_in_a_materialization_too(dsn, db, healthy) -> None:
    """The refresh's cheap comparison includes comments, so its verdict is the catalog's."""
    described = USERS.model_copy(update={"description": "Users and their plans", "on_definition_change": "warn"})
    assert evaluate(dsn, described, selection=MATERIALIZE).severity == dg.AssetCheckSeverity.WARN  # not yet applied
    with MatViews(dsn=dsn, definitions=[described]) as mv:
        assert all(result.ok for result in mv.apply_many(["mv_users"]))
    assert evaluate(dsn, described, selection=MATERIALIZE).passed
    db.execute("COMMENT ON MATERIALIZED VIEW mv_users IS 'edited by hand'")
    changed = evaluate(dsn, described, selection=MATERIALIZE)
    assert not changed.passed and "comment" in changed.description
