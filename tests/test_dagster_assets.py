"""View assets materialized by real Dagster runs against real Postgres."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pytest
from conftest import scalar

from matviews_dagster import (
    DagsterMatViewTranslator,
    MatViewDefinition,
    ViewGraph,
    build_definitions,
    load_definitions,
)
from matviews_dagster.demo import DEMO_VIEWS
from matviews_dagster.demo.assets import demo_source_data

DEMO = load_definitions(DEMO_VIEWS)


def materializations(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    return {
        event.asset_key.path[-1]: {k: v.value for k, v in event.materialization.metadata.items()}
        for event in result.get_asset_materialization_events()
    }


def run_all(defs: dg.Definitions, run_config: dict | None = None, **kwargs: Any) -> dg.ExecuteInProcessResult:
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(run_config=run_config or {}, **kwargs)


@pytest.fixture
def demo_defs(dsn: str) -> dg.Definitions:
    return build_definitions(DEMO_VIEWS, dsn=dsn, extra_assets=[demo_source_data])


def test_demo_materializes_views_with_metadata_and_run_rows(demo_defs, db) -> None:
    result = run_all(demo_defs)
    assert result.success
    assert {row[0] for row in db.execute("SELECT matviewname FROM pg_matviews WHERE ispopulated")} == {
        d.qualified.name for d in DEMO
    }
    meta = materializations(result)
    users = meta["mv_users"]
    assert users["dagster/row_count"] == 500 == scalar(db, "SELECT count(*) FROM mv_users")
    assert users["strategy"] == "regular" and users["duration_ms"] >= 0
    assert users["dagster/table_name"] == f"{db.info.dbname}.public.mv_users"
    assert [c.name for c in users["dagster/column_schema"].columns] == [
        "user_id",
        "email",
        "name",
        "created_at",
    ]
    assert users["size_bytes"] > 0
    refresh_ids = {row[0] for row in db.execute("SELECT id FROM mat_view_refresh_runs")}
    assert {int(m["run_record_id"]) for name, m in meta.items() if name.startswith("mv_")} == refresh_ids
    rows = db.execute("SELECT DISTINCT dagster_run_id FROM mat_view_refresh_runs").fetchall()
    assert rows == [(result.run_id,)]
    assert scalar(db, "SELECT count(*) FROM mat_view_create_runs WHERE dagster_run_id = %s", (result.run_id,)) == len(
        DEMO
    )
    assert meta["users"]["dagster/row_count"] == 500


@pytest.mark.parametrize("strategy", ["regular", "concurrent", "swap"])
def test_second_materialization_refreshes_with_each_strategy(demo_defs, db, strategy) -> None:
    assert run_all(demo_defs).success
    db.execute("INSERT INTO users VALUES (100001, 'new@example.com', 'New', now())")
    selection = [dg.AssetKey(["public", d.qualified.name]) for d in DEMO]
    job = demo_defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        run_config={"ops": {"matviews": {"config": {"strategy": strategy}}}}, asset_selection=selection
    )
    assert result.success
    for definition in DEMO:  # each view holds what its query returns now, the new user included
        expected = scalar(db, f"SELECT count(*) FROM ({definition.sql}) q")
        assert scalar(db, f"SELECT count(*) FROM {definition.name}") == expected
    assert scalar(db, "SELECT count(*) FROM public.mv_users") == 501
    strategies = {
        row[0]
        for row in db.execute(
            "SELECT meta->>'strategy' FROM mat_view_refresh_runs WHERE dagster_run_id = %s", (result.run_id,)
        )
    }
    assert strategies == {strategy}
    assert {m["strategy"] for m in materializations(result).values()} == {strategy}


def test_row_count_override_from_run_config(demo_defs, db) -> None:
    assert run_all(demo_defs).success
    key = dg.AssetKey(["public", "mv_users"])
    job = demo_defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        run_config={"ops": {"matviews": {"config": {"row_count_strategy": "none"}}}},
        asset_selection=[key],
    )
    assert "dagster/row_count" not in materializations(result)["mv_users"]
    assert scalar(db, "SELECT rows_count FROM mat_view_refresh_runs ORDER BY id DESC LIMIT 1") is None


def test_asset_specs_and_lineage(dsn) -> None:
    definitions = [
        MatViewDefinition(
            name="mv_base",
            sql="WITH recent AS (SELECT * FROM raw.events) SELECT u.id FROM users u JOIN recent r ON r.user_id = u.id",
            description="Base",
            owners=["team:data"],
            tags={"tier": "gold"},
            dependencies=["ops.calendar"],
        ),
        MatViewDefinition(name="reports.mv_top", sql="SELECT id FROM public.mv_base WHERE id < 10"),
    ]
    defs = build_definitions(definitions, dsn=dsn)
    graph = defs.resolve_asset_graph()
    base, top = dg.AssetKey(["public", "mv_base"]), dg.AssetKey(["reports", "mv_top"])
    assert graph.get(base).parent_keys == {
        dg.AssetKey(["raw", "events"]),
        dg.AssetKey(["public", "users"]),
        dg.AssetKey(["ops", "calendar"]),
    }
    assert graph.get(top).parent_keys == {base}
    assert graph.get(dg.AssetKey(["public", "users"])).is_external
    assert not graph.get(base).is_external
    spec = next(s for s in defs.resolve_all_asset_specs() if s.key == base)
    assert spec.kinds == {"postgres"} and spec.group_name == "matviews" and spec.owners == ["team:data"]
    assert spec.tags["tier"] == "gold" and spec.description == "Base"
    changed = DagsterMatViewTranslator().get_code_version(definitions[0].model_copy(update={"sql": "SELECT 1 AS id"}))
    assert spec.code_version and spec.code_version != changed


def test_custom_translator(dsn) -> None:
    class Reporting(DagsterMatViewTranslator):
        def get_asset_spec(self, definition: MatViewDefinition, graph: ViewGraph) -> dg.AssetSpec:
            return super().get_asset_spec(definition, graph).replace_attributes(group_name="reporting")

    defs = build_definitions([MatViewDefinition(name="mv", sql="SELECT 1 AS x")], dsn=dsn, translator=Reporting())
    assert {s.group_name for s in defs.resolve_all_asset_specs() if s.key.path[-1] == "mv"} == {"reporting"}


def test_failed_refresh_fails_the_step_and_keeps_swap_data(dsn, db, users) -> None:
    definition = MatViewDefinition(
        name="mv_plans",
        sql="SELECT id, plan FROM users",
        refresh_strategy="swap",
        unique_index_columns=["id"],
    )
    defs = build_definitions([definition], dsn=dsn)
    assert run_all(defs).success
    db.execute("ALTER TABLE users RENAME COLUMN plan TO tier")
    result = run_all(defs, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.user_failure_data.description
    assert "refresh of public.mv_plans failed" in message and 'column "plan" does not exist' in message
    assert scalar(db, "SELECT status FROM mat_view_refresh_runs ORDER BY id DESC LIMIT 1") == "failed"
    assert scalar(db, "SELECT count(*) FROM mv_plans") == 10
