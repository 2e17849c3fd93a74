"""``build_definitions``: a whole code location from a list of views, in one call."""

from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from .adapter import MatViewsAdapter
from .assets import ADAPTER_KEY, DEFAULT_POOL, POSTGRES_KEY, RUN_STORE_KEY, build_matview_assets, source_asset_specs
from .automation import build_matview_schedules, build_queue_sensor, nightly_refresh_schedule
from .checks import build_matview_checks
from .core.definition import MatViewDefinition, load_definitions
from .ops import RefreshViewJob, build_create_job, build_delete_job
from .resources import PostgresResource, RunStoreResource
from .translator import DagsterMatViewTranslator


def build_definitions(
    definitions_or_yaml_path: Sequence[MatViewDefinition] | str | Path,
    *,
    dsn: str | None = None,
    runs_dsn: str | None = None,
    runs_schema: str = "public",
    postgres: PostgresResource | None = None,
    translator: DagsterMatViewTranslator | None = None,
    pool: str | None = DEFAULT_POOL,
    nightly_cron: str | None = None,
    queue_sensor_interval: int = 10,
    extra_assets: Sequence[dg.AssetsDefinition | dg.AssetSpec] = (),
) -> dg.Definitions:
    """Assets, checks, create/refresh/delete jobs, schedules and resources for the views.

    >>> defs = build_definitions("matviews.yaml", dsn=dg.EnvVar("DATABASE_URL"))  # doctest: +SKIP

    ``extra_assets`` (e.g. the assets that load the source tables) take the place of the
    external source assets with the same keys. ``nightly_cron`` adds a schedule refreshing
    every view.
    """
    if isinstance(definitions_or_yaml_path, (str, Path)):
        definitions = load_definitions(definitions_or_yaml_path)
    else:
        definitions = list(definitions_or_yaml_path)
    adapter = MatViewsAdapter(dsn=dsn, runs_dsn=runs_dsn, runs_schema=runs_schema).with_definitions(definitions)
    translator = translator or DagsterMatViewTranslator()
    views = build_matview_assets(definitions, translator=translator, pool=pool)
    extra_keys = [key for extra in extra_assets for key in _keys(extra)]
    sources = source_asset_specs(views, also_defined=extra_keys)
    view_keys = [key for view in views for key in view.keys]
    refresh_job = dg.define_asset_job(
        RefreshViewJob,
        selection=dg.AssetSelection.assets(*view_keys),
        description="Refresh every materialized view, upstreams first.",
    )
    schedules = build_matview_schedules(definitions, translator=translator)
    if nightly_cron:
        schedules.append(nightly_refresh_schedule(refresh_job, nightly_cron))
    jobs = [refresh_job, build_create_job(definitions), build_delete_job(definitions)]
    return dg.Definitions(
        assets=[*views, *sources, *extra_assets],
        asset_checks=build_matview_checks(definitions, translator=translator),
        jobs=jobs,
        schedules=schedules,
        sensors=[build_queue_sensor(definitions, jobs, minimum_interval_seconds=queue_sensor_interval)],
        resources={
            POSTGRES_KEY: postgres or PostgresResource(dsn=dsn),
            RUN_STORE_KEY: RunStoreResource(dsn=runs_dsn, schema_name=runs_schema),
            ADAPTER_KEY: adapter,
        },
    )


def _keys(asset: dg.AssetsDefinition | dg.AssetSpec) -> list[dg.AssetKey]:
    return [asset.key] if isinstance(asset, dg.AssetSpec) else list(asset.keys)
