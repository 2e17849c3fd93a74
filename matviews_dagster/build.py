"""``build_definitions``: a whole code location from a list of views, in one call."""

import hashlib
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from .adapter import MatViewsAdapter, register_location
from .assets import (
    ADAPTER_KEY,
    DEFAULT_POOL,
    MATVIEWS_KEY,
    RUN_STORE_KEY,
    Execute,
    build_matview_assets,
    source_asset_specs,
    view_keys,
)
from .core.definition import MatViewDefinition
from .core.definitions_file import load_definitions
from .core.graph import ViewGraph
from .core.names import QualifiedName
from .core.settings import DEFAULTS
from .core.vocabulary import DEFAULT_MAX_PARALLEL, RefreshViewJob
from .jobs import build_create_job, build_delete_job
from .queue_sensor import build_queue_sensor
from .resources import MatViewsResource, RunStoreResource, quiet_dagster_warnings
from .schedules import build_matview_schedules, nightly_refresh_schedule
from .sources import DEFAULT_OBSERVE_CRON, observable_sources
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
    Raises ``ValueError`` for an invalid definitions file, a duplicate view or a cycle.
    """
    quiet_dagster_warnings()
    if isinstance(definitions_or_yaml_path, (str, Path)):
        definitions = load_definitions(definitions_or_yaml_path)
    else:
        definitions = list(definitions_or_yaml_path)
    graph = ViewGraph(definitions)
    translator = translator or DagsterMatViewTranslator()
    views = build_matview_assets(graph, translator=translator, pool=pool, execute=execute)
    targets = view_keys([views])
    keys = {name: key for name, (key, _) in targets.items()}
    extra_keys = [key for extra in extra_assets for key in _keys(extra)]
    sources = _sources(graph, translator, source_asset_specs([views], also_defined=extra_keys), observe_cron)
    refresh_job = dg.define_asset_job(
        RefreshViewJob,
        selection=dg.AssetSelection.assets(*keys.values()),
        description="Refresh every materialized view, upstreams first.",
    )
    schedules = build_matview_schedules((definition, keys[definition.name]) for definition in graph)
    if nightly_cron:
        schedules.append(nightly_refresh_schedule(refresh_job, nightly_cron))
    run_store = (matviews.run_store if matviews else None) or RunStoreResource(dsn=runs_dsn, schema_name=runs_schema)
    resource = matviews or MatViewsResource(dsn=dsn, max_parallel=max_parallel, run_store=run_store)
    bound = {MATVIEWS_KEY: resource}
    jobs = [refresh_job, build_create_job(definitions, keys, bound), build_delete_job(definitions, bound)]
    location = _location_key(definitions, translator)
    adapter = MatViewsAdapter(
        dsn=resource.dsn, runs_dsn=run_store.dsn, runs_schema=run_store.schema_name, location_key=location
    )
    defs = dg.Definitions(
        assets=[views, *sources, *extra_assets],
        jobs=jobs,
        schedules=schedules,
        sensors=[build_queue_sensor(definitions, targets, jobs, minimum_interval_seconds=queue_sensor_interval)],
        resources={MATVIEWS_KEY: resource, RUN_STORE_KEY: run_store, ADAPTER_KEY: adapter},
    )
    register_location(location, defs)  # the adapter runs this very code location's jobs (inline, graphql)
    return defs


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
    names = "\n".join(sorted(d.name for d in definitions))
    kind = f"{type(translator).__module__}.{type(translator).__qualname__}"
    return hashlib.sha256(f"{kind}\n{names}".encode()).hexdigest()[:16]


def _keys(asset: dg.AssetsDefinition | dg.AssetSpec) -> list[dg.AssetKey]:
    return [asset.key] if isinstance(asset, dg.AssetSpec) else list(asset.keys)
