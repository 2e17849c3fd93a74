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
    names = ("populated", "unique_index", "definition_matches")
    return {name: evaluation.metadata[name].value for name in names if name in evaluation.metadata}


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
    assert set(verdicts(result).values()) == {"failed (error)"}, "a view not deployed is not as defined"


def test_a_name_taken_by_a_table_fails_the_check_and_not_the_step(dsn, db, users) -> None:
    db.execute("CREATE TABLE mv_users (id int)")
    result = evaluate(dsn)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    assert "mv_users is a table, not a materialized view" in result.description


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


@pytest.mark.parametrize("policy", ["warn", "apply"])
def test_an_index_replaced_by_hand_under_its_name_is_a_difference_in_a_materialization(dsn, db, users, policy) -> None:
    """The refresh compares declared indexes by shape, not by name: a non-unique index that took
    the declared unique index's name is drift (warned, or rebuilt as declared under ``apply``)."""
    definition = MatViewDefinition.model_validate(
        {**USERS.model_dump(), "refresh_strategy": "regular", "on_definition_change": policy}
    )
    with MatViews(dsn=dsn, definitions=[definition]) as mv:
        assert mv.create("mv_users").ok
    assert evaluate(dsn, definition, selection=MATERIALIZE).passed
    db.execute("DROP INDEX mv_users_id_idx")
    db.execute("CREATE INDEX mv_users_id_idx ON mv_users (id)")
    result = evaluate(dsn, definition, selection=MATERIALIZE)
    unique = "SELECT bool_or(indisunique) FROM pg_index WHERE indrelid = 'mv_users'::regclass"
    if policy == "warn":
        assert not result.passed and verdicts(result)["definition_matches"] == "failed (warn)"
        assert "UNIQUE (id)" in result.description and scalar(db, unique) is False
    else:
        assert result.passed and scalar(db, unique) is True


def test_a_refused_change_says_how_to_apply_it_in_dagster_words(dsn, db, healthy) -> None:
    changed = {"sql": "SELECT id, plan, 2 AS version FROM users", "on_definition_change": "fail"}
    refused = USERS.model_copy(update=changed)
    job = dg.define_asset_job("job", selection=MATERIALIZE)
    defs = dg.Definitions.merge(build_definitions([refused], dsn=dsn), dg.Definitions(jobs=[job]))
    result = defs.resolve_job_def("job").execute_in_process(raise_on_error=False)
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.error.message
    assert "the create_mat_views job with force: true" in message and "matviews apply" not in message
