"""``matviews_tenants_sensor``: keeps the partitions of the views with a tenant pattern
(``tenants: {schemas_like: ...}``) equal to the schemas that match it, so that loading the
code location never queries a database. A new tenant's partition is added and materialized
(its views are created); a tenant whose schema was dropped loses its partition (a tenant gone,
not a failure)."""

import time
from collections.abc import Sequence

import dagster as dg

from .core.connection import DatabaseUnavailable
from .core.tenants import read_tenant_schemas
from .estate_assets import TenantStep
from .resources import MatViewsResource
from .translator import databases_of

SENSOR_NAME = "matviews_tenants_sensor"


def build_tenants_sensor(steps: Sequence[TenantStep], *, minimum_interval_seconds: int = 60) -> dg.SensorDefinition:
    """The sensor over ``steps`` (those with dynamic partitions). Each tick reads each
    database's schemas once (``pg_namespace``), adds the partition keys of new tenants with a
    run request materializing their views, and deletes those of tenants gone. A database that
    cannot be reached is logged and skipped: its partitions stay as they were."""

    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Adds and removes the tenant partitions of views with tenants: {schemas_like: ...}.",
        asset_selection=dg.AssetSelection.assets(*(key for step in steps for key in step.assets.keys)),
    )
    def matviews_tenants_sensor(context: dg.SensorEvaluationContext, matviews: MatViewsResource) -> dg.SensorResult:
        requests: list[dg.DynamicPartitionsRequest] = []
        runs: list[dg.RunRequest] = []
        for step in steps:
            partitions = step.partitions_def
            assert isinstance(partitions, dg.DynamicPartitionsDefinition) and partitions.name
            spec = databases_of(step.assets).get(step.database) if step.database else None
            try:
                with matviews.matviews(database=step.database, spec=spec).connect("tenants sensor") as conn:
                    found = read_tenant_schemas(conn, step.templates)
            except DatabaseUnavailable as exc:
                context.log.warning(f"{partitions.name}: {exc}; its partitions are left as they were")
                continue
            wanted = sorted({tenant for template in step.templates for tenant in found.by_template[template.name]})
            current = set(context.instance.get_dynamic_partitions(partitions.name))
            added = [tenant for tenant in wanted if tenant not in current]
            gone = sorted(current - set(wanted))
            if added:
                added_at = int(time.time())
                requests.append(partitions.build_add_request(added))
                runs.extend(
                    dg.RunRequest(
                        run_key=f"{partitions.name}:{tenant}:{added_at}",  # a tenant re-created later runs again
                        partition_key=tenant,
                        asset_selection=list(step.assets.keys),
                        tags={"matviews/tenant": tenant},
                    )
                    for tenant in added
                )
            if gone:
                requests.append(partitions.build_delete_request(gone))
            if added or gone:
                context.log.info(
                    f"{partitions.name}: {len(added)} tenant(s) added ({', '.join(added[:10])}"
                    f"{', ...' if len(added) > 10 else ''}), {len(gone)} removed ({', '.join(gone[:10])})"
                )
        return dg.SensorResult(run_requests=runs, dynamic_partitions_requests=requests)

    return matviews_tenants_sensor
