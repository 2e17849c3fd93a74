"""``build_definitions``: a whole code location from a list of views, in one call."""

import hashlib
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import dagster as dg

from .adapter import MatViewsAdapter, register_location
from .assets import (
    ADAPTER_KEY,
    DEFAULT_NAME,
    DEFAULT_POOL,
    MATVIEWS_KEY,
    RUN_STORE_KEY,
    Execute,
    build_matview_assets,
    source_asset_specs,
)
from .core.definition import MatViewDefinition
from .core.definitions_file import DefinitionsFile, read_definitions_file
from .core.estate import Estate
from .core.estate_fields import DatabaseSpec
from .core.graph import ViewGraph
from .core.names import QualifiedName
from .core.settings import DEFAULTS, MatViewsSettings
from .core.vocabulary import DEFAULT_MAX_PARALLEL, RefreshViewJob
from .estate_assets import TenantStep, estate_assets
from .jobs import build_create_job, build_delete_job
from .queue_sensor import build_queue_sensor
from .resources import MatViewsResource, RunStoreResource, config_value, quiet_dagster_warnings
from .run_requests import split_views, tenant_job_name
from .schedules import build_matview_schedules, nightly_refresh_schedule
from .sources import DEFAULT_OBSERVE_CRON, observable_sources
from .tenants_sensor import build_tenants_sensor
from .translator import DagsterMatViewTranslator


def build_definitions(
    definitions_or_yaml_path: Sequence[MatViewDefinition] | str | Path,
    *,
    dsn: str | None = None,
    runs_dsn: str | None = None,
    runs_schema: str = DEFAULTS.runs_schema,
    matviews: MatViewsResource | None = None,
    translator: DagsterMatViewTranslator | None = None,
    pool: str | None = DEFAULT_POOL,
    max_parallel: int = DEFAULT_MAX_PARALLEL,
    nightly_cron: str | None = None,
    queue_sensor_interval: int = 10,
    extra_assets: Sequence[dg.AssetsDefinition | dg.AssetSpec] = (),
    observe_cron: str | None = DEFAULT_OBSERVE_CRON,
    execute: Execute | None = None,
    databases: Mapping[str, DatabaseSpec | Mapping[str, Any]] | None = None,
    tenants_sensor_interval: int = 60,
    executor: dg.ExecutorDefinition | None = None,
) -> dg.Definitions:
    """The views' assets and checks (one ``@matview_assets`` step), create/refresh/delete jobs,
    schedules, the queue sensor and the resources, in one ``Definitions``.

    >>> defs = build_definitions("matviews.yaml", dsn=dg.EnvVar("DATABASE_URL"))  # doctest: +SKIP

    ``matviews`` replaces the ``MatViewsResource`` built from ``dsn``, ``runs_dsn``,
    ``runs_schema`` and ``max_parallel``. ``extra_assets`` (e.g. the assets that load the
    source tables) take the place of the external source assets with the same keys.
    ``nightly_cron`` adds a schedule refreshing every view. ``execute`` is the refresh step's
    body (``assets.Execute``; default ``yield from matviews.refresh(context).stream()``). The tables the views read are
    observable source assets (``matviews_sources``, data versions from Postgres's counters);
    when a view uses ``automation``, the automation sensor observes them on ``observe_cron``.
    An estate (``databases:`` in the file, or ``databases`` here; views with ``tenants:``)
    becomes a step per database in pool ``matviews/<database>`` and partitioned steps for views
    with tenants (``estate_assets.py``); with tenant patterns, ``matviews_tenants_sensor`` keeps
    their partitions every ``tenants_sensor_interval`` seconds. The refresh job, schedules and
    observable sources cover the unpartitioned views (sources: the default connection's); the
    create and delete jobs and the queue the default connection's views. ``executor`` runs
    every job's steps (e.g. ``dagster_celery.celery_executor``; default: Dagster's
    multiprocess executor).
    Raises ``ValueError`` for an invalid definitions file, a duplicate view, a cycle, a view
    reading a view of another database, or ``runs: central`` without a central run store.
    """
    quiet_dagster_warnings()
    if isinstance(definitions_or_yaml_path, (str, Path)):
        file = read_definitions_file(definitions_or_yaml_path)
    else:
        specs = {name: DatabaseSpec.model_validate(spec) for name, spec in (databases or {}).items()}
        file = DefinitionsFile(list(definitions_or_yaml_path), specs)
    translator = translator or DagsterMatViewTranslator()
    run_store = (matviews.run_store if matviews else None) or RunStoreResource(dsn=runs_dsn, schema_name=runs_schema)
    resource = matviews or MatViewsResource(dsn=dsn, max_parallel=max_parallel, run_store=run_store)
    estate = Estate(file, MatViewsSettings(runs_dsn=config_value(run_store.dsn)))
    build = partial(build_matview_assets, translator=translator, execute=execute)
    steps = estate_assets(estate, build, name=DEFAULT_NAME, pool=pool, translator=translator)
    definitions = [d for d in file.views if d.database is None and d.tenants is None]  # the default connection's
    graph = estate.graph(None) if None in estate.placed else ViewGraph(definitions)
    default = steps.plain.get(None)
    targets = {d.name: (key, step.node_def.name) for d, key, step in steps.keyed if step is default}
    keys = {name: key for name, (key, _) in targets.items()}
    plain = [(definition, key) for definition, key, _ in steps.keyed if definition.tenants is None]
    extra_keys = [key for extra in extra_assets for key in _keys(extra)]
    sources = _sources(graph, translator, source_asset_specs(steps.all, also_defined=extra_keys), observe_cron)
    refresh_job = dg.define_asset_job(
        RefreshViewJob,
        selection=dg.AssetSelection.assets(*(key for _, key in plain)),
        description="Refresh every materialized view (but those with tenants: their partitions), upstreams first.",
    )
    schedules = build_matview_schedules(plain)
    if nightly_cron:
        schedules.append(nightly_refresh_schedule(refresh_job, nightly_cron))
    bound = {MATVIEWS_KEY: resource}
    jobs = [refresh_job, build_create_job(definitions, keys, bound), build_delete_job(definitions, bound)]
    jobs += [tenant_job(step) for step in steps.tenants]
    queued = {  # the queue serves the default connection's views with tenant schemas too, a partition a run
        definition.name: (key, step.node_def.name)
        for definition, key, step in steps.keyed
        if definition.database is None and definition.tenants is not None and definition.tenants.by_schema
    }
    tenants = split_views([definition for definition in file.views if definition.name in queued])[1]
    location = _location_key(file.views, translator)
    adapter = MatViewsAdapter(
        dsn=resource.dsn, runs_dsn=run_store.dsn, runs_schema=run_store.schema_name, location_key=location
    )
    sensors = [
        build_queue_sensor(
            definitions,
            {**targets, **queued},
            jobs,
            minimum_interval_seconds=queue_sensor_interval,
            tenants=tenants,
            partitions={
                definition.name: str(step.partitions_def.name)
                for step in steps.tenants
                if step.dynamic and step.database is None
                for definition in step.templates
            },
        )
    ]
    dynamic = [step for step in steps.tenants if step.dynamic]
    if dynamic:
        sensors.append(build_tenants_sensor(dynamic, minimum_interval_seconds=tenants_sensor_interval))
    defs = dg.Definitions(
        assets=[*steps.all, *sources, *extra_assets],
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        resources={MATVIEWS_KEY: resource, RUN_STORE_KEY: run_store, ADAPTER_KEY: adapter},
        executor=executor,
    )
    register_location(location, defs)  # the adapter runs this very code location's jobs (inline, graphql)
    return defs


def tenant_job(step: TenantStep) -> Any:
    """The job refreshing one partitioned step's views, a partition (tenant) a run: what a
    queued request for a tenant runs (``run_requests.tenant_job_name``)."""
    return dg.define_asset_job(
        tenant_job_name(step.assets.node_def.name),
        selection=dg.AssetSelection.assets(*step.assets.keys),
        description=f"Refresh {', '.join(t.qualified.name for t in step.templates)} for one tenant (a partition).",
    )


def _sources(
    graph: ViewGraph, translator: DagsterMatViewTranslator, external: list[dg.AssetSpec], observe_cron: str | None
) -> list[dg.AssetsDefinition | dg.AssetSpec]:
    """The source tables as one observable asset (their relation known), the rest as specs."""
    relations = {
        translator.get_source_asset_key(relation): str(relation)
        for definition in graph
        for relation in (*graph.sources(definition.name), *map(QualifiedName.parse, definition.dependencies))
    }
    observed = {spec.key: relations[spec.key] for spec in external if spec.key in relations}
    cron = observe_cron if any(definition.automation for definition in graph) else None
    rest = [spec for spec in external if spec.key not in observed]
    return [observable_sources(observed, observe_cron=cron), *rest] if observed else rest


def _location_key(definitions: Sequence[MatViewDefinition], translator: DagsterMatViewTranslator) -> str:
    """The same in every process that loads the code location (the webserver, each run)."""
    names = "\n".join(sorted(f"{d.database}:{d.name}" if d.database else d.name for d in definitions))
    kind = f"{type(translator).__module__}.{type(translator).__qualname__}"
    return hashlib.sha256(f"{kind}\n{names}".encode()).hexdigest()[:16]


def _keys(asset: dg.AssetsDefinition | dg.AssetSpec) -> list[dg.AssetKey]:
    return [asset.key] if isinstance(asset, dg.AssetSpec) else list(asset.keys)
