"""``@matview_assets``: every view its own asset, all refreshed in one step by the resource."""

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from conftest import scalar

from matviews_dagster import (
    DagsterMatViewTranslator,
    MatViewDefinition,
    MatViewsAdapter,
    MatViewsResource,
    RefreshViewJob,
    RunStoreResource,
    ViewGraph,
    build_definitions,
    matview_assets,
)
from matviews_dagster.queue_sensor import QUEUE_SENSOR

CHAIN = [
    MatViewDefinition(name="mv_a", sql="SELECT id, plan FROM users"),
    MatViewDefinition(name="mv_b", sql="SELECT id, 10 / (SELECT d FROM ctl) AS x FROM mv_a"),
    MatViewDefinition(name="mv_c", sql="SELECT id FROM mv_b"),
    MatViewDefinition(name="mv_alone", sql="SELECT plan, count(*) AS n FROM users GROUP BY plan"),
]


@pytest.fixture
def ctl(db, users) -> Any:
    """``mv_b`` divides by ``ctl.d``: 0 makes it fail."""
    db.execute("CREATE TABLE ctl (d int)")
    db.execute("INSERT INTO ctl VALUES (1)")
    return lambda d: db.execute("UPDATE ctl SET d = %s", (d,))


def events(result: dg.ExecuteInProcessResult, kind: str) -> list[dg.DagsterEvent]:
    return [e for e in result.all_events if e.event_type_value == kind]


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}


def run(defs: dg.Definitions, selection: list[dg.AssetKey] | None = None, **kwargs: Any) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def(RefreshViewJob)
    return job.execute_in_process(asset_selection=selection, raise_on_error=False, **kwargs)


def key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["public", name])


def test_one_step_materializes_every_view_with_its_checks(dsn, db, ctl) -> None:
    result = run(build_definitions(CHAIN, dsn=dsn))
    assert result.success
    assert {e.step_key for e in events(result, "STEP_START")} == {"matviews"}
    assert materialized(result) == {"mv_a", "mv_b", "mv_c", "mv_alone"}
    evaluations = result.get_asset_check_evaluations()  # one check per view, carrying every verdict
    assert len(evaluations) == 4 and all(e.passed and e.check_name == "deployed_as_defined" for e in evaluations)
    assert all(e.metadata["column_schema_change"].value == "passed" for e in evaluations)
    assert all(e.metadata["populated"].value == e.metadata["definition_matches"].value == "passed" for e in evaluations)
    assert scalar(db, "SELECT count(*) FROM mat_view_create_runs WHERE dagster_run_id = %s", (result.run_id,)) == 4
    metadata = next(
        e.materialization.metadata for e in result.get_asset_materialization_events() if e.asset_key == key("mv_c")
    )
    assert isinstance(metadata["run_record_id"], dg.TextMetadataValue)
    assert metadata["dagster/row_count"].value == 10


def test_selecting_one_view_refreshes_only_that_view(dsn, db, ctl) -> None:
    defs = build_definitions(CHAIN, dsn=dsn)
    assert run(defs).success
    result = run(defs, [key("mv_alone")])
    assert result.success and materialized(result) == {"mv_alone"}
    rows = db.execute("SELECT view_name FROM mat_view_refresh_runs WHERE dagster_run_id = %s", (result.run_id,))
    assert [row[0] for row in rows] == ["public.mv_alone"]
    assert {e.asset_key for e in result.get_asset_check_evaluations()} == {key("mv_alone")}


def test_selecting_only_checks_runs_only_checks(dsn, db, ctl) -> None:
    defs = build_definitions(CHAIN, dsn=dsn)
    assert run(defs).success
    checks_only = dg.define_asset_job("checks_only", selection=dg.AssetSelection.checks_for_assets(key("mv_b")))
    job = dg.Definitions.merge(defs, dg.Definitions(jobs=[checks_only])).resolve_job_def("checks_only")
    result = job.execute_in_process()
    assert result.success and materialized(result) == set()
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == "deployed_as_defined" and evaluation.passed
    assert evaluation.metadata["column_schema_change"].value == "passed"  # a new instance: nothing to compare
    assert {name: evaluation.metadata[name].value for name in ("populated", "definition_matches")} == {
        "populated": "passed",
        "definition_matches": "passed",
    }
    assert scalar(db, "SELECT count(*) FROM mat_view_refresh_runs WHERE dagster_run_id = %s", (result.run_id,)) == 0


def test_a_failing_view_skips_its_downstream_and_fails_the_step_at_the_end(dsn, db, ctl) -> None:
    defs = build_definitions(CHAIN, dsn=dsn)
    assert run(defs).success
    ctl(0)
    result = run(defs)
    assert not result.success
    assert materialized(result) == {"mv_a", "mv_alone"}
    failure = events(result, "STEP_FAILURE")[0].step_failure_data.user_failure_data
    assert "refresh of public.mv_b failed: division by zero" in failure.description
    assert "public.mv_c (after public.mv_b)" in failure.description
    assert failure.metadata["failed_views"].value == ["public.mv_b"]
    assert failure.metadata["skipped_views"].value == ["public.mv_c"]
    statuses = dict(
        db.execute(
            "SELECT view_name, status FROM mat_view_refresh_runs WHERE dagster_run_id = %s", (result.run_id,)
        ).fetchall()
    )
    assert statuses == {"public.mv_a": "success", "public.mv_b": "failed", "public.mv_alone": "success"}


class Prefixed(DagsterMatViewTranslator):
    def get_asset_spec(self, definition: MatViewDefinition, graph: ViewGraph) -> dg.AssetSpec:
        spec = super().get_asset_spec(definition, graph)
        return spec.replace_attributes(key=spec.key.with_prefix("warehouse"))


def test_a_custom_key_reaches_lineage_checks_schedules_and_the_adapter(dsn, db, ctl) -> None:
    views = [*CHAIN[:3], CHAIN[3].model_copy(update={"schedule_cron": "0 * * * *"})]
    defs = build_definitions(views, dsn=dsn, translator=Prefixed())
    graph = defs.resolve_asset_graph()
    b = dg.AssetKey(["warehouse", "public", "mv_b"])
    assert graph.get(b).parent_keys == {dg.AssetKey(["warehouse", "public", "mv_a"]), key("ctl")}
    assert key("mv_a") not in graph.get_all_asset_keys(), "no stale public/mv_a source asset"
    assert {c.asset_key for c in graph.asset_check_keys} == {
        dg.AssetKey(["warehouse", "public", name]) for name in ("mv_a", "mv_b", "mv_c", "mv_alone")
    }
    schedule = defs.resolve_schedule_def("refresh_warehouse_public_mv_alone_schedule")
    assert defs.resolve_job_def(schedule.job_name).asset_layer.selected_asset_keys == {
        dg.AssetKey(["warehouse", "public", "mv_alone"])
    }
    assert run(defs).success
    adapter = defs.resources["matviews_adapter"].model_copy(update={"backend": "inline"})
    enqueued = adapter.enqueue(RefreshViewJob, args=["mv_b"])
    assert enqueued.status == "success"
    assert [(r["kind"], r["view_name"]) for r in enqueued.run_record_ids] == [("refresh", "public.mv_b")]
    queued = MatViewsAdapter(backend="queue", dsn=dsn).bind(defs)
    request = queued.enqueue(RefreshViewJob, args=["mv_c"]).request_id
    with (
        dg.instance_for_test() as instance,
        dg.build_sensor_context(instance=instance, resources=defs.resources) as context,
    ):
        requests = list(defs.resolve_sensor_def(QUEUE_SENSOR)(context))
    assert [r.run_key for r in requests] == [
        scalar(db, "SELECT run_key FROM mat_view_run_requests WHERE id = %s", (request,))
    ]
    assert requests[0].asset_selection == [dg.AssetKey(["warehouse", "public", "mv_c"])]


class Options(dg.Config):
    exact: bool = False
    strategy: str | None = None  # the body's own field, as RefreshConfig has one of that name


def test_the_decorator_with_a_body_and_config_of_its_own(dsn, db, ctl) -> None:
    @matview_assets(definitions=CHAIN[:1], name="my_views", pool=None)
    def my_views(context: dg.AssetExecutionContext, matviews: MatViewsResource, config: Options) -> Iterator[Any]:
        yield from matviews.refresh(context, row_count_strategy="exact" if config.exact else "none")

    resource = MatViewsResource(dsn=dsn, max_parallel=1, run_store=RunStoreResource(schema_name="ops"))
    result = dg.materialize(
        [my_views], resources={"matviews": resource}, run_config={"ops": {"my_views": {"config": {"exact": True}}}}
    )
    assert result.success and materialized(result) == {"mv_a"}
    assert scalar(db, "SELECT rows_count FROM ops.mat_view_refresh_runs") == 10
    assert scalar(db, "SELECT to_regclass('public.mat_view_refresh_runs')") is None
    # a field of its own named like RefreshConfig's is the body's, never read as an override
    again = dg.materialize(
        [my_views],
        resources={"matviews": resource},
        run_config={"ops": {"my_views": {"config": {"exact": False, "strategy": "swap"}}}},
    )
    assert again.success
    meta = scalar(db, "SELECT meta->>'strategy' FROM ops.mat_view_refresh_runs ORDER BY id DESC LIMIT 1")
    assert meta == "regular"


RETRY_DEFS = """
import os
from matviews_dagster import MatViewDefinition, build_definitions

VIEWS = [
    MatViewDefinition(name="mv_a", sql="SELECT id, plan FROM users"),
    MatViewDefinition(name="mv_b", sql="SELECT id, 10 / (SELECT d FROM ctl) AS x FROM mv_a"),
    MatViewDefinition(name="mv_c", sql="SELECT id FROM mv_b"),
    MatViewDefinition(name="mv_alone", sql="SELECT plan, count(*) AS n FROM users GROUP BY plan"),
]
defs = build_definitions(VIEWS, dsn=os.environ["RETRY_DSN"])


def refresh_job():
    return defs.resolve_job_def("refresh_mat_views")
"""


@pytest.mark.slow
def test_reexecution_from_failure_refreshes_only_what_did_not_succeed(dsn, db, ctl, tmp_path, monkeypatch) -> None:
    (tmp_path / "retry_defs.py").write_text(RETRY_DEFS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("RETRY_DSN", dsn)
    import retry_defs

    job = dg.reconstructable(retry_defs.refresh_job)
    in_process = {"execution": {"config": {"in_process": {}}}}
    with dg.instance_for_test() as instance:
        assert dg.execute_job(job, instance=instance, run_config=in_process).success
        ctl(0)
        failed = dg.execute_job(job, instance=instance, run_config=in_process)
        assert not failed.success
        ctl(1)
        retried = dg.execute_job(
            job, instance=instance, reexecution_options=dg.ReexecutionOptions.from_failure(failed.run_id, instance)
        )
        assert retried.success
        refreshed = db.execute(
            "SELECT view_name FROM mat_view_refresh_runs WHERE dagster_run_id = %s ORDER BY id", (retried.run_id,)
        ).fetchall()
        assert [row[0] for row in refreshed] == ["public.mv_b", "public.mv_c"]
        materializations = {e.asset_key for e in retried.get_asset_materialization_events()}
        assert materializations == {key("mv_b"), key("mv_c")}
    sys.modules.pop("retry_defs", None)


SLOW = "SELECT t.id FROM users t CROSS JOIN (SELECT pg_sleep(s) FROM sleep_seconds) z"
KILL_DEFS = f"""
from matviews_dagster import MatViewDefinition, build_definitions

defs = build_definitions([MatViewDefinition(name=f"mv_{{i}}", sql={SLOW!r}) for i in range(4)], max_parallel=2)
"""


@pytest.mark.slow
def test_kill_9_of_the_step_mid_batch_loses_nothing(dsn, db, users, tmp_path) -> None:
    import os
    import signal
    import subprocess
    import time

    from matviews_dagster import MatViews

    db.execute("CREATE TABLE sleep_seconds (s float)")
    db.execute("INSERT INTO sleep_seconds VALUES (0)")
    definitions = [MatViewDefinition(name=f"mv_{i}", sql=SLOW) for i in range(4)]
    with MatViews(dsn=dsn, definitions=definitions) as mv:
        assert all(r.ok for r in mv.create_many())
    db.execute("INSERT INTO users SELECT g, 'x', 'free' FROM generate_series(100, 104) g")
    db.execute("UPDATE sleep_seconds SET s = 20")
    (tmp_path / "defs.py").write_text(KILL_DEFS)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DAGSTER_HOME")}
    env["MATVIEWS_DSN"] = dsn
    dagster = str(Path(sys.executable).with_name("dagster"))
    process = subprocess.Popen(
        [dagster, "asset", "materialize", "-f", "defs.py", "--select", "*"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        running: list[tuple[int, str]] = []
        while len(running) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            running = db.execute(
                "SELECT (meta->>'pid')::int, view_name FROM mat_view_refresh_runs WHERE status = 'running'"
            ).fetchall()
        assert len(running) == 2, "two refreshes in flight"
        step_pid = running[0][0]
        assert step_pid != process.pid, "the step runs in its own process"
        os.kill(step_pid, signal.SIGKILL)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    db.execute("UPDATE sleep_seconds SET s = 0")
    for i in range(4):
        assert scalar(db, f"SELECT count(*) FROM mv_{i}") == 10, "every view kept its data"
    with MatViews(dsn=dsn, definitions=definitions) as mv:
        assert all(r.ok for r in mv.refresh_many())
    abandoned = db.execute(
        "SELECT view_name, status, error FROM mat_view_refresh_runs WHERE view_name = ANY(%s) ORDER BY id",
        ([name for _, name in running],),
    ).fetchall()
    assert [row[1] for row in abandoned[:2]] == ["failed", "failed"]
    assert all("abandoned" in row[2] for row in abandoned[:2])
    assert scalar(db, "SELECT count(*) FROM mat_view_refresh_runs WHERE status = 'running'") == 0
    assert scalar(db, "SELECT count(*) FROM mv_0") == 15


def test_inline_adapter_on_a_hand_written_location_and_in_a_run(dsn, db, ctl, monkeypatch) -> None:
    @matview_assets(definitions=CHAIN)
    def views(context: dg.AssetExecutionContext, matviews: MatViewsResource) -> Iterator[Any]:
        yield from matviews.refresh(context)

    defs = dg.Definitions(assets=[views], resources={"matviews": MatViewsResource(dsn=dsn)})
    adapter = MatViewsAdapter(backend="inline", dsn=dsn).bind(defs)
    refreshed = adapter.enqueue(RefreshViewJob, args=["mv_alone"])  # no refresh_mat_views job: the asset job
    assert refreshed.status == "success"
    assert {(r["kind"], r["view_name"]) for r in refreshed.run_record_ids} == {
        ("create", "public.mv_alone"),  # it did not exist yet
        ("refresh", "public.mv_alone"),
    }
    with pytest.raises(ValueError, match=r"no create_mat_views job: add matviews_dagster\.build_create_job"):
        adapter.enqueue("create_mat_views", args=["mv_a"])

    monkeypatch.setenv("VIEWS_DSN", dsn)
    monkeypatch.setenv("MATVIEWS_ADAPTER", "queue")
    located = build_definitions(CHAIN, dsn=dg.EnvVar("VIEWS_DSN"))
    from_script = located.resources["matviews_adapter"].enqueue(RefreshViewJob, args=["mv_c"])
    assert from_script.request_id is not None  # the EnvVar was read, not taken for a DSN

    @dg.op
    def enqueue_from_a_run(matviews_adapter: MatViewsAdapter) -> int:
        return matviews_adapter.enqueue(RefreshViewJob, args=["mv_b"]).request_id

    @dg.job(name="enqueue")
    def enqueue() -> None:
        enqueue_from_a_run()

    result = (
        dg.Definitions.merge(located, dg.Definitions(jobs=[enqueue])).resolve_job_def("enqueue").execute_in_process()
    )
    assert result.success
    requests = db.execute("SELECT args->>0 FROM mat_view_run_requests ORDER BY id").fetchall()
    assert [row[0] for row in requests] == ["public.mv_c", "public.mv_b"]
