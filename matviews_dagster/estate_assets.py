"""The views of an estate as Dagster assets: one ``@matview_assets`` step per database (pool
``matviews/<database>``, so an instance-wide pool limit caps what one server sees across runs),
and one partitioned step per database and kind of tenants, whose partitions are the tenants
(a ``StaticPartitionsDefinition`` for a list, a ``DynamicPartitionsDefinition`` kept by
``matviews_tenants_sensor`` for a pattern; loading the code location never connects)."""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg

from .core.definition import MatViewDefinition
from .core.estate import Estate
from .core.estate_fields import DEFAULT_DATABASE
from .core.graph import ViewGraph
from .translator import DagsterMatViewTranslator

DATABASE_POOL_PREFIX = "matviews/"
"""A named database's steps take a slot of the pool ``matviews/<database>``."""

BuildStep = Callable[..., dg.AssetsDefinition]
"""``build_matview_assets`` with the code location's translator and step body bound."""


@dataclass
class TenantStep:
    """A partitioned step: views of ``database`` (None: the default connection) with the same
    ``tenants``, and its partitions; ``dynamic`` partitions are kept by the tenants sensor."""

    assets: dg.AssetsDefinition
    database: str | None
    templates: list[MatViewDefinition]
    partitions_def: dg.PartitionsDefinition

    @property
    def dynamic(self) -> bool:
        return isinstance(self.partitions_def, dg.DynamicPartitionsDefinition)


@dataclass
class EstateAssets:
    """Every step of the estate: ``plain`` (unpartitioned views) by database, ``tenants`` the
    partitioned ones, and ``keyed``: each step's views with their asset keys and step, as the
    translator keyed them (so no one reads the definitions back from the specs)."""

    plain: dict[str | None, dg.AssetsDefinition] = field(default_factory=dict)
    tenants: list[TenantStep] = field(default_factory=list)
    keyed: list[tuple[MatViewDefinition, dg.AssetKey, dg.AssetsDefinition]] = field(default_factory=list)

    @property
    def all(self) -> list[dg.AssetsDefinition]:
        return [*self.plain.values(), *(step.assets for step in self.tenants)]


def pool_of(database: str | None, default_pool: str | None) -> str | None:
    """The pool of a database's steps: ``default_pool`` for the default connection."""
    return default_pool if database is None else f"{DATABASE_POOL_PREFIX}{database}"


def estate_assets(
    estate: Estate, build: BuildStep, *, name: str, pool: str | None, translator: DagsterMatViewTranslator
) -> EstateAssets:
    """The steps of ``estate``: its default connection's views keep the step ``name`` and
    ``pool``; database ``D``'s views are the step ``<name>_D`` in pool ``matviews/D``; views with
    tenants are ``<name>_<D>_tenants[_N]`` (views with tenant databases: in ``pool``)."""
    found = EstateAssets()
    groups: dict[tuple[str | None, str], list[MatViewDefinition]] = {}

    def keyed(assets: dg.AssetsDefinition, views: list[MatViewDefinition], graph: ViewGraph) -> dg.AssetsDefinition:
        found.keyed += [(view, translator.spec_for(view, graph).key, assets) for view in views]  # specs cached
        return assets

    for database in estate.database_names():
        placed, graph = estate.placed[database], estate.graph(database)
        plain = [view for view in placed if view.tenants is None]
        if plain:
            step = name if database is None else f"{name}_{database}"
            found.plain[database] = keyed(
                build(graph, name=step, pool=pool_of(database, pool), views=plain, databases=estate.databases),
                plain,
                graph,
            )
        for view in placed:
            if view.tenants is not None:
                where = database if view.tenants.by_schema else None  # tenant databases: one step for them all
                members = groups.setdefault((where, json.dumps(view.tenants.model_dump(), sort_keys=True)), [])
                if view not in members:
                    members.append(view)
    counts: dict[str, int] = {}
    for (database, kind), templates in groups.items():
        by_schema = templates[0].tenants is not None and templates[0].tenants.by_schema
        label = (database or DEFAULT_DATABASE) if by_schema else "databases"
        counts[label] = counts.get(label, 0) + 1
        step = f"{name}_{label}_tenants" + (f"_{counts[label]}" if counts[label] > 1 else "")
        partitions = _partitions(templates[0], label, kind)
        graph = estate.graph(database if by_schema else templates[0].tenants.listed[0])
        assets = build(
            graph,
            name=step,
            pool=pool_of(database, pool),
            views=templates,
            databases=estate.databases,
            partitions_def=partitions,
        )
        keyed(assets, templates, graph)
        found.tenants.append(TenantStep(assets, database, templates, partitions))
    _refuse_shared_keys(found)
    return found


def _refuse_shared_keys(found: EstateAssets) -> None:
    """Two views of different steps with one asset key (a view with tenant databases and a
    default-connection view of the same name): ``ValueError`` naming both, at load."""
    seen: dict[dg.AssetKey, str] = {}
    for definition, key, step in found.keyed:
        where = f"{definition.name} ({step.node_def.name})"
        if key in seen:
            raise ValueError(
                f"views {seen[key]} and {where} translate to the same asset key {key.to_user_string()}; "
                "rename one, or key them apart in the translator's get_asset_key"
            )
        seen[key] = where


def _partitions(template: MatViewDefinition, database: str, kind: str) -> dg.PartitionsDefinition:
    tenants = template.tenants
    assert tenants is not None
    if not tenants.dynamic:
        return dg.StaticPartitionsDefinition(tenants.listed)
    digest = hashlib.sha256(kind.encode()).hexdigest()[:8]
    return dg.DynamicPartitionsDefinition(name=f"matviews_tenants_{database}_{digest}")
