"""``@matview_assets``: the views of a code location as one subsettable multi-asset.

As ``@dbt_assets`` does for dbt models, every view is its own asset (spec from the translator,
checks as ``check_specs``), and one step refreshes whichever of them are selected, upstream
first and several at once, through ``MatViewsResource``:

>>> @matview_assets(definitions=load_definitions("matviews.yaml"))
... def views(context: dg.AssetExecutionContext, matviews: MatViewsResource):
...     yield from matviews.refresh(context).stream()
"""

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cache
from typing import Any

import dagster as dg
from pydantic import Field

from .check_specs import build_matview_checks
from .core.definition import MatViewDefinition
from .core.estate_fields import DatabaseSpec
from .core.graph import ViewGraph
from .core.vocabulary import REFRESH_CONFIG_TAG, RowCountStrategy, Strategy
from .resources import MatViewsResource
from .translator import (
    DATABASES_METADATA_KEY,
    DagsterMatViewTranslator,
    DatabaseSpecs,
    definitions_of,
    with_definition,
)

MATVIEWS_KEY = "matviews"
RUN_STORE_KEY = "matviews_run_store"
ADAPTER_KEY = "matviews_adapter"
DEFAULT_POOL = "matviews"
DEFAULT_NAME = "matviews"


class RefreshConfig(dg.Config):
    """Run config of the refresh step; ``None`` keeps each definition's choice.

    ``ops: {matviews: {config: {strategy: swap, row_count_strategy: exact}}}``
    """

    strategy: Strategy | None = Field(default=None, description="Refresh strategy for this run only.")
    row_count_strategy: RowCountStrategy | None = Field(default=None, description="Row counting for this run only.")


@cache
def _refresh_config_schema() -> Any:
    """``RefreshConfig``'s schema, inferred once."""
    return RefreshConfig.to_fields_dict()


def matview_assets(
    *,
    definitions: Sequence[MatViewDefinition] | ViewGraph,
    translator: DagsterMatViewTranslator | None = None,
    name: str = DEFAULT_NAME,
    pool: str | None = DEFAULT_POOL,
    op_tags: Mapping[str, Any] | None = None,
    views: Sequence[MatViewDefinition] | None = None,
    databases: Mapping[str, DatabaseSpec] | None = None,
    partitions_def: dg.PartitionsDefinition | None = None,
) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """Build one ``multi_asset`` (``can_subset=True``) with an asset per view and its checks.

    ``name`` is the op (step) name, which addresses its run config; ``pool`` is the Dagster
    concurrency pool the step takes one slot of (the views inside run ``max_parallel`` at once,
    set on ``MatViewsResource``). Unless the decorated function takes a ``config`` parameter
    of its own, the step accepts ``RefreshConfig``. ``views`` (default: every one of
    ``definitions``) are the step's own, the rest of ``definitions`` only resolve their deps;
    ``databases`` are the ``databases:`` entries of the views' databases (a view of a named
    database needs its entry); with ``partitions_def`` (views with tenants: their tenants) a
    backfill runs as one run (``BackfillPolicy.single_run()``). Raises
    ``DagsterInvalidDefinitionError`` when two views translate to the same asset key,
    ``ValueError`` for a cycle or a view whose database has no entry.
    """
    graph = definitions if isinstance(definitions, ViewGraph) else ViewGraph(definitions)
    translator = translator or DagsterMatViewTranslator()
    own = list(graph) if views is None else list(views)
    specs = [with_definition(translator.spec_for(definition, graph), definition, translator) for definition in own]
    _refuse_duplicate_keys(own, specs)
    needed = _databases_needed(own, databases or {})
    if needed or partitions_def is not None:
        extra: dict[str, Any] = {DATABASES_METADATA_KEY: DatabaseSpecs(needed)} if needed else {}
        specs = [
            spec.replace_attributes(partitions_def=partitions_def).merge_attributes(metadata=extra) for spec in specs
        ]
    check_specs = build_matview_checks(zip(own, (spec.key for spec in specs), strict=True))

    def inner(fn: Callable[..., Any]) -> dg.AssetsDefinition:
        own_config = "config" in inspect.signature(fn).parameters
        return dg.multi_asset(
            name=name,
            specs=specs,
            check_specs=check_specs,
            can_subset=True,
            pool=pool,
            partitions_def=partitions_def,
            backfill_policy=dg.BackfillPolicy.single_run() if partitions_def is not None else None,
            op_tags=op_tags if own_config else {**(op_tags or {}), REFRESH_CONFIG_TAG: "true"},
            config_schema=None if own_config else _refresh_config_schema(),
        )(fn)

    return inner


Execute = Callable[[dg.AssetExecutionContext, MatViewsResource], Iterator[Any]]
"""A refresh step's body: ``(context, matviews) -> events``."""


def default_execute(context: dg.AssetExecutionContext, matviews: MatViewsResource) -> Iterator[Any]:
    """The usual body: ``yield from matviews.refresh(context).stream()``."""
    yield from matviews.refresh(context).stream()


def build_matview_assets(
    definitions: Sequence[MatViewDefinition] | ViewGraph,
    *,
    translator: DagsterMatViewTranslator | None = None,
    name: str = DEFAULT_NAME,
    pool: str | None = DEFAULT_POOL,
    execute: Execute | None = None,
    **estate: Any,
) -> dg.AssetsDefinition:
    """``@matview_assets`` whose body is ``execute`` (default: ``default_execute``), the same
    decorator a user writes (``MatViewsComponent.execute`` is such a body); ``estate`` are its
    ``views``, ``databases`` and ``partitions_def``."""
    body = execute or default_execute

    @matview_assets(definitions=definitions, translator=translator, name=name, pool=pool, **estate)
    def _refresh_views(context: dg.AssetExecutionContext, matviews: MatViewsResource) -> Iterator[Any]:
        yield from body(context, matviews)

    return _refresh_views


def source_asset_specs(
    assets: Sequence[dg.AssetsDefinition], *, also_defined: Sequence[dg.AssetKey] = ()
) -> list[dg.AssetSpec]:
    """External specs for upstream tables that no asset produces, so lineage shows them."""
    produced = {key for asset in assets for key in asset.keys} | set(also_defined)
    upstream = {dep for asset in assets for deps in asset.asset_deps.values() for dep in deps}
    return [
        dg.AssetSpec(key=key, kinds={"postgres"}, description=f"Source table {'.'.join(key.path)}")
        for key in sorted(upstream - produced, key=lambda k: k.to_user_string())
    ]


def view_keys(assets: Sequence[dg.AssetsDefinition]) -> dict[str, tuple[dg.AssetKey, str]]:
    """``{view name: (asset key, op name)}`` of every view in ``@matview_assets`` definitions."""
    found: dict[str, tuple[dg.AssetKey, str]] = {}
    for asset in assets:
        for key, definition in definitions_of(asset).items():
            found[definition.name] = (key, asset.node_def.name)
    return found


def _databases_needed(
    views: Sequence[MatViewDefinition], databases: Mapping[str, DatabaseSpec]
) -> dict[str, DatabaseSpec]:
    """The entries of the databases ``views`` live in; ``ValueError`` for one without an entry."""
    names = {
        name
        for view in views
        for name in ([view.database] if view.tenants is None or view.tenants.by_schema else view.tenants.listed)
        if name is not None
    }
    missing = sorted(names - set(databases))
    if missing:
        raise ValueError(f"no databases: entry for {', '.join(missing)}; pass databases={{name: DatabaseSpec}}")
    return {name: databases[name] for name in sorted(names)}


def _refuse_duplicate_keys(views: Sequence[MatViewDefinition], specs: list[dg.AssetSpec]) -> None:
    seen: dict[dg.AssetKey, str] = {}
    for definition, spec in zip(views, specs, strict=True):
        if spec.key in seen:
            raise dg.DagsterInvalidDefinitionError(
                f"views {seen[spec.key]} and {definition.name} translate to the same asset key "
                f"{spec.key.to_user_string()}; make get_asset_spec return a unique key per view"
            )
        seen[spec.key] = definition.name
