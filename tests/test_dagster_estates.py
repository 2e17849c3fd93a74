"""Estates in Dagster: a step per database with its pool, views with tenants as partitioned
assets (one partition, a single-run backfill over all of them, one tenant failing alone),
checks per partition, the tenants sensor, and a server that is down failing only its step;
real PostgreSQL servers (two), real Dagster runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
from conftest import free_port, rows, tenant_schema

from matviews_dagster import MatViewsAdapter, RefreshViewJob, build_definitions
from matviews_dagster.queue_sensor import QUEUE_SENSOR
from matviews_dagster.tenants_sensor import SENSOR_NAME

ESTATE = """
databases:
  app: {dsn: "${APP_DSN}", max_parallel: 2}
  warehouse: {dsn: "${WAREHOUSE_DSN}"}
views:
  - name: mv_usage
    sql: SELECT account, count(*) AS n FROM events GROUP BY account
    database: app
    tenants: {schemas: [acme, globex, initech]}
  - name: mv_usage_total
    sql: SELECT sum(n) AS total FROM mv_usage
    database: app
    tenants: {schemas: [acme, globex, initech]}
  - name: mv_signups
    sql: SELECT count(*) AS n FROM events
    database: app
    tenants: {schemas_like: "tenant_%"}
  - name: mv_orders
    sql: SELECT id FROM orders
    database: warehouse
  - name: mv_plain
    sql: SELECT 1 AS one
"""


@pytest.fixture
def estate(tmp_path: Path, dsn: str, second_dsn: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        tenant_schema(conn, "acme", 30)
        tenant_schema(conn, "globex", 6)
        conn.execute("CREATE SCHEMA initech")  # no events table: its views fail
    with psycopg.connect(second_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int)")
        conn.execute("INSERT INTO orders SELECT generate_series(1, 5)")
    path = tmp_path / "matviews.yaml"
    path.write_text(ESTATE)
    monkeypatch.setenv("APP_DSN", dsn)
    monkeypatch.setenv("WAREHOUSE_DSN", second_dsn)
    return {"path": path, "app": dsn, "warehouse": second_dsn}


def step(defs: dg.Definitions, name: str) -> dg.AssetsDefinition:
    return next(a for a in defs.assets if isinstance(a, dg.AssetsDefinition) and a.node_def.name == name)


def events_of(result: dg.ExecuteInProcessResult, kind: str) -> list[tuple[str, str | None]]:
    found = []
    for event in result.all_events:
        if event.event_type_value == kind:
            data = event.event_specific_data
            if kind == "ASSET_MATERIALIZATION":
                found.append((data.materialization.asset_key.to_user_string(), data.materialization.partition))
            else:
                found.append((data.asset_key.to_user_string(), data.partition, data.passed))
    return sorted(found)


def test_an_estate_is_a_step_per_database_and_partitioned_steps_per_tenants(estate, monkeypatch) -> None:
    monkeypatch.delenv("APP_DSN")  # loading never connects: an unset variable is not read at load
    defs = build_definitions(estate["path"])
    found = {
        a.node_def.name: (a.op.pool, sorted(k.to_user_string() for k in a.keys), type(a.partitions_def).__name__)
        for a in defs.assets
        if isinstance(a, dg.AssetsDefinition) and a.node_def.name.startswith("matviews")
    }
    assert found == {
        "matviews": ("matviews", ["public/mv_plain"], "NoneType"),
        "matviews_app_tenants": ("matviews/app", ["app/mv_usage", "app/mv_usage_total"], "StaticPartitionsDefinition"),
        "matviews_app_tenants_2": ("matviews/app", ["app/mv_signups"], "DynamicPartitionsDefinition"),
        "matviews_warehouse": ("matviews/warehouse", ["warehouse/public/mv_orders"], "NoneType"),
    }
    assert step(defs, "matviews_app_tenants").partitions_def.get_partition_keys() == ["acme", "globex", "initech"]
    assert step(defs, "matviews_app_tenants").backfill_policy == dg.BackfillPolicy.single_run()
    deps = defs.resolve_asset_graph().get(dg.AssetKey(["app", "mv_usage_total"])).parent_keys
    assert deps == {dg.AssetKey(["app", "mv_usage"])}


def test_no_dsn_or_password_reaches_what_the_ui_is_served(tmp_path, monkeypatch) -> None:
    from dagster._core.remote_representation.external_data import RepositorySnap
    from dagster._serdes import serialize_value

    monkeypatch.setenv("APP_DSN", "postgresql://app:from-the-env-pw@db.internal/app")
    (tmp_path / "matviews.yaml").write_text(
        ESTATE.replace('"${WAREHOUSE_DSN}"', '"postgresql://wh:literal-pw@wh.internal/wh"')
    )
    served = serialize_value(
        RepositorySnap.from_def(build_definitions(tmp_path / "matviews.yaml").get_repository_def())
    )
    assert "matviews/databases" in served  # the entries are there, as names only
    for secret in ("from-the-env-pw", "literal-pw", "wh.internal", "db.internal", "APP_DSN"):
        assert secret not in served


def test_one_partition_refreshes_that_tenant_only(estate) -> None:
    defs = build_definitions(estate["path"])
    tenants = step(defs, "matviews_app_tenants")
    result = dg.materialize([tenants], resources=defs.resources, partition_key="acme")
    assert result.success
    assert events_of(result, "ASSET_MATERIALIZATION") == [("app/mv_usage", "acme"), ("app/mv_usage_total", "acme")]
    assert events_of(result, "ASSET_CHECK_EVALUATION") == [
        ("app/mv_usage", "acme", True),
        ("app/mv_usage_total", "acme", True),
    ]
    assert rows(estate["app"], "SELECT total FROM acme.mv_usage_total") == [(30,)]
    assert rows(estate["app"], "SELECT to_regclass('globex.mv_usage')") == [(None,)]
    assert rows(estate["app"], "SELECT DISTINCT database_name, dagster_run_id FROM mat_view_create_runs") == [
        ("app", result.run_id)
    ]


def test_a_single_run_backfill_reports_each_tenant_and_fails_only_the_broken_one(estate) -> None:
    defs = build_definitions(estate["path"])
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [step(defs, "matviews_app_tenants")],
        resources=defs.resources,
        instance=instance,
        tags={"dagster/asset_partition_range_start": "acme", "dagster/asset_partition_range_end": "initech"},
        raise_on_error=False,
    )
    assert not result.success  # initech has no events table
    assert events_of(result, "ASSET_MATERIALIZATION") == [
        ("app/mv_usage", "acme"),
        ("app/mv_usage", "globex"),
        ("app/mv_usage_total", "acme"),
        ("app/mv_usage_total", "globex"),
    ]
    assert instance.get_materialized_partitions(dg.AssetKey(["app", "mv_usage"])) == {"acme", "globex"}
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "initech.mv_usage" in failure.message or "initech.mv_usage" in str(failure.event_specific_data.error)
    assert rows(estate["app"], "SELECT view_name, status FROM mat_view_create_runs ORDER BY view_name") == [
        ("acme.mv_usage", "success"),
        ("acme.mv_usage_total", "success"),
        ("globex.mv_usage", "success"),
        ("globex.mv_usage_total", "success"),
        ("initech.mv_usage", "failed"),
    ]


def test_a_server_that_is_down_fails_only_its_own_step(estate, monkeypatch) -> None:
    monkeypatch.setenv("WAREHOUSE_DSN", f"postgresql://postgres:pw-secret@127.0.0.1:{free_port()}/postgres")
    defs = build_definitions(estate["path"])
    job = defs.resolve_job_def("refresh_mat_views")
    result = job.execute_in_process(resources=defs.resources, raise_on_error=False)
    assert not result.success
    assert [e.step_key for e in result.all_events if e.event_type_value == "STEP_SUCCESS"] == ["matviews"]
    failed = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [e.step_key for e in failed] == ["matviews_warehouse"]
    assert "pw-secret" not in str(failed[0].event_specific_data.error)
    assert events_of(result, "ASSET_MATERIALIZATION") == [("public/mv_plain", None)]


def test_the_tenants_sensor_adds_and_removes_tenant_partitions(estate) -> None:
    defs = build_definitions(estate["path"])
    sensor = defs.get_sensor_def(SENSOR_NAME)
    instance = dg.DagsterInstance.ephemeral()
    with psycopg.connect(estate["app"], autocommit=True) as conn:
        tenant_schema(conn, "tenant_a", 4)
        tenant_schema(conn, "tenant_b", 2)

    def tick() -> dg.SensorResult:
        with dg.build_sensor_context(instance=instance, resources=defs.resources, definitions=defs) as context:
            return sensor(context)

    first = tick()
    (added,) = first.dynamic_partitions_requests
    assert sorted(added.partition_keys) == ["tenant_a", "tenant_b"]
    assert sorted(r.partition_key for r in first.run_requests) == ["tenant_a", "tenant_b"]
    instance.add_dynamic_partitions(added.partitions_def_name, list(added.partition_keys))
    assert tick().dynamic_partitions_requests == [] and tick().run_requests == []  # nothing new
    with psycopg.connect(estate["app"], autocommit=True) as conn:
        conn.execute("DROP SCHEMA tenant_a CASCADE")
    (removed,) = tick().dynamic_partitions_requests
    assert isinstance(removed, dg.DeleteDynamicPartitionsRequest) and list(removed.partition_keys) == ["tenant_a"]
    result = dg.materialize(
        [step(defs, "matviews_app_tenants_2")], resources=defs.resources, instance=instance, partition_key="tenant_b"
    )
    assert result.success
    assert rows(estate["app"], "SELECT n FROM tenant_b.mv_signups") == [(2,)]


TENANT_VIEWS = """
views:
  - name: mv_usage
    sql: SELECT account, count(*) AS n FROM events GROUP BY account
    tenants: {schemas: [acme, globex]}
  - name: mv_plain
    sql: SELECT 1 AS one
"""


def test_the_adapter_enqueues_a_tenant_and_the_queue_sensor_runs_its_partition(tmp_path, dsn) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        tenant_schema(conn, "acme", 9)
        tenant_schema(conn, "globex", 3)
    path = tmp_path / "matviews.yaml"
    path.write_text(TENANT_VIEWS)
    defs = build_definitions(path, dsn=dsn)
    inline = MatViewsAdapter(backend="inline", dsn=dsn).bind(defs)
    ran = inline.enqueue(RefreshViewJob, args=["mv_usage", {"tenant": "acme"}])
    assert ran.status == "success"
    assert rows(dsn, "SELECT sum(n) FROM acme.mv_usage") == [(9,)]
    assert rows(dsn, "SELECT to_regclass('globex.mv_usage')") == [(None,)]  # that tenant only
    with pytest.raises(ValueError, match="mv_usage has tenants: name one"):
        inline.enqueue(RefreshViewJob, args=["mv_usage"])
    with pytest.raises(ValueError, match="mv_usage has no tenant 'initech'; its tenants: acme, globex"):
        inline.enqueue(RefreshViewJob, args=["mv_usage", {"tenant": "initech"}])
    queued = MatViewsAdapter(backend="queue", dsn=dsn).bind(defs)
    queued.enqueue(RefreshViewJob, args=["mv_usage", {"tenant": "globex"}])
    queued.enqueue(RefreshViewJob, args=["mv_usage", {"tenant": "globex", "row_count_strategy": "exact"}])
    queued.enqueue(RefreshViewJob, args=["mv_usage", {"tenant": "acme"}])
    with dg.instance_for_test() as instance:
        with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
            requests = list(defs.resolve_sensor_def(QUEUE_SENSOR)(context))
        assert sorted((r.partition_key, r.job_name) for r in requests) == [
            ("acme", "refresh_matviews_default_tenants"),
            ("globex", "refresh_matviews_default_tenants"),
            ("globex", "refresh_matviews_default_tenants"),
        ]
        for request in requests:
            job = defs.resolve_job_def(request.job_name)
            result = job.execute_in_process(
                run_config=request.run_config,
                asset_selection=request.asset_selection,
                partition_key=request.partition_key,
                tags={**request.tags, "dagster/run_key": request.run_key},
                instance=instance,
                resources=defs.resources,
            )
            assert result.success
        with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
            assert list(defs.resolve_sensor_def(QUEUE_SENSOR)(context)) == []
    assert rows(dsn, "SELECT sum(n) FROM globex.mv_usage") == [(3,)]
    assert rows(dsn, "SELECT status, count(*) FROM mat_view_run_requests GROUP BY status") == [("success", 3)]


def test_the_partitioned_steps_under_the_multiprocess_executor(tmp_path, estate) -> None:
    """`dagster asset materialize` runs a code location's steps in processes of their own."""
    (tmp_path / "defs.py").write_text(
        f"from matviews_dagster import build_definitions\n\ndefs = build_definitions({str(estate['path'])!r})\n"
    )
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    command = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-f", "defs.py"]
    done = subprocess.run(
        [*command, "--select", "app/mv_usage,app/mv_usage_total,warehouse/public/mv_orders", "--partition", "globex"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "multiprocess" in done.stderr  # the executor, as Dagster says it
    assert rows(estate["app"], "SELECT total FROM globex.mv_usage_total") == [(6,)]
    assert rows(estate["app"], "SELECT to_regclass('acme.mv_usage')") == [(None,)]


def test_a_tenant_database_that_is_down_fails_only_its_partition(tmp_path, dsn, second_dsn, monkeypatch) -> None:
    for database in (dsn, second_dsn):
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("CREATE TABLE visits (day int)")
            conn.execute("INSERT INTO visits SELECT g % 3 FROM generate_series(1, 9) g")
    (tmp_path / "matviews.yaml").write_text(
        'databases:\n  eu: {dsn: "${EU_DSN}"}\n  us: {dsn: "${US_DSN}"}\n'
        "views:\n  - name: mv_daily\n    sql: SELECT day, count(*) AS n FROM visits GROUP BY day\n"
        "    tenants: {databases: [eu, us]}\n"
    )
    monkeypatch.setenv("EU_DSN", f"postgresql://postgres@127.0.0.1:{free_port()}/postgres")
    monkeypatch.setenv("US_DSN", second_dsn)
    defs = build_definitions(tmp_path / "matviews.yaml")
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [step(defs, "matviews_databases_tenants")],
        resources=defs.resources,
        instance=instance,
        tags={"dagster/asset_partition_range_start": "eu", "dagster/asset_partition_range_end": "us"},
        raise_on_error=False,
    )
    assert not result.success
    assert instance.get_materialized_partitions(dg.AssetKey(["public", "mv_daily"])) == {"us"}
    assert rows(second_dsn, "SELECT sum(n) FROM mv_daily") == [(9,)]


def test_a_file_whose_views_share_an_asset_key_is_refused_naming_both(tmp_path, monkeypatch) -> None:
    (tmp_path / "matviews.yaml").write_text(
        'databases:\n  eu: {dsn: "${EU_DSN}"}\n'
        "views:\n  - name: mv_daily\n    sql: SELECT 1 AS n\n"
        "  - name: mv_daily\n    sql: SELECT 2 AS n\n    tenants: {databases: [eu]}\n"
    )
    with pytest.raises(ValueError) as raised:
        build_definitions(tmp_path / "matviews.yaml")
    assert "views public.mv_daily (matviews) and public.mv_daily (matviews_databases_tenants)" in str(raised.value)
    assert "translate to the same asset key public/mv_daily" in str(raised.value)


def test_a_tenant_of_a_pattern_through_the_adapter(tmp_path, dsn) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        tenant_schema(conn, "tenant_a", 5)
        tenant_schema(conn, "other", 5)
    (tmp_path / "matviews.yaml").write_text(
        TENANT_VIEWS.replace("{schemas: [acme, globex]}", "{schemas_like: 'tenant_%'}")
    )
    defs = build_definitions(tmp_path / "matviews.yaml", dsn=dsn)
    inline = MatViewsAdapter(backend="inline", dsn=dsn).bind(defs)
    assert inline.enqueue(RefreshViewJob, args=["mv_usage", {"tenant": "tenant_a"}]).status == "success"
    assert rows(dsn, "SELECT sum(n) FROM tenant_a.mv_usage") == [(5,)]
    queued = MatViewsAdapter(backend="queue", dsn=dsn).bind(defs)
    with pytest.raises(ValueError, match="mv_usage has no tenant 'other': no such schema matches its tenants"):
        queued.enqueue(RefreshViewJob, args=["mv_usage", {"tenant": "other"}])
    with pytest.raises(ValueError, match=r"public\.mv_plain has no tenants; leave tenant out of its option"):
        queued.enqueue(RefreshViewJob, args=["mv_plain", {"tenant": "tenant_a"}])
    queued.enqueue(RefreshViewJob, args=["mv_usage", {"tenant": "tenant_a"}])
    with dg.instance_for_test() as instance:  # the tenants sensor has not added the partition yet
        with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
            (request,) = list(defs.resolve_sensor_def(QUEUE_SENSOR)(context))
        name = step(defs, "matviews_default_tenants").partitions_def.name
        assert instance.get_dynamic_partitions(name) == ["tenant_a"]
        assert request.partition_key == "tenant_a"
