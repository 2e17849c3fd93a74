"""How a view definition becomes an ``AssetSpec``; subclass to customise (as in dagster-dbt).

The spec decides everything downstream: the asset key, its deps, group and tags, the keys its
checks attach to, the schedules' targets and the assets the adapter selects. A view's
dependency on another defined view is that view's own translated spec's key, so overriding
``get_asset_spec`` alone is enough:

>>> class Prefixed(DagsterMatViewTranslator):
...     def get_asset_spec(self, definition, graph):
...         spec = super().get_asset_spec(definition, graph)
...         return spec.replace_attributes(key=spec.key.with_prefix("warehouse"))
"""

import hashlib
import weakref
from collections.abc import Mapping
from datetime import timedelta

import dagster as dg

from .core.definition import MatViewDefinition
from .core.estate_fields import DatabaseSpec
from .core.graph import ViewGraph
from .core.names import QualifiedName

DEFAULT_GROUP = "matviews"
DEFINITION_METADATA_KEY = "matviews/definition"
"""Spec metadata holding the view's definition (JSON), read back by ``MatViewsResource``."""
DATABASES_METADATA_KEY = "matviews/databases"
"""Spec metadata holding the ``databases:`` entries the step works on (``DatabaseSpecs``, in
the code location's process only, like the translator: a DSN is never serialized to the UI)."""
TRANSLATOR_METADATA_KEY = "matviews/translator"
"""Spec metadata holding the translator object (in the code location's process only, as
dagster-dbt keeps its translator), so a step keys column lineage as the specs are keyed."""


def relation_key(relation: QualifiedName) -> dg.AssetKey:
    """The default asset key of a relation: ``[schema, name]``."""
    return dg.AssetKey([relation.schema, relation.name])


class DagsterMatViewTranslator:
    """Maps a ``MatViewDefinition`` (within its ``ViewGraph``) to the ``AssetSpec`` of its asset,
    and a source table to its asset key."""

    def get_asset_spec(self, definition: MatViewDefinition, graph: ViewGraph) -> dg.AssetSpec:
        """Key ``get_asset_key``; deps: the defined views it reads (by their translated keys),
        then the other relations it reads (``get_source_asset_key``; not for a view with tenant
        schemas, whose tables are each tenant's) and its ``dependencies``; group ``matviews``
        unless the definition names one; kinds ``{"postgres"}``."""
        name = definition.name
        deps = [self.spec_for(graph[upstream], graph).key for upstream in graph.upstream(name)]
        if definition.tenants is None or not definition.tenants.by_schema:
            deps += [self.get_source_asset_key(source) for source in graph.sources(name)]
        return dg.AssetSpec(
            key=self.get_asset_key(definition),
            deps=list(dict.fromkeys(deps)),
            description=definition.description or f"Materialized view {definition.name}",
            group_name=definition.group_name or DEFAULT_GROUP,
            owners=definition.owners,
            tags=definition.tags,
            kinds={"postgres"},
            code_version=self.get_code_version(definition),
            automation_condition=self.get_automation_condition(definition),
            freshness_policy=self.get_freshness_policy(definition),
            metadata={
                "dagster/table_name": definition.name,
                "strategy": str(definition.refresh_strategy),
                "sql": dg.MetadataValue.md(f"```sql\n{definition.sql}\n```"),
                DEFINITION_METADATA_KEY: _stored(definition),
                TRANSLATOR_METADATA_KEY: self,
            },
        )

    def get_asset_key(self, definition: MatViewDefinition) -> dg.AssetKey:
        """``[schema, view]``; ``[database, schema, view]`` for a view of a named database
        (``database:``); a view with tenant schemas is one asset whose partitions are the
        schemas, so its key has no schema: ``[view]`` (``[database, view]``). A view with
        tenant databases is partitioned by database: ``[schema, view]``."""
        tenants = definition.tenants
        by_schema = tenants is not None and tenants.by_schema
        path = [definition.qualified.name] if by_schema else [definition.qualified.schema, definition.qualified.name]
        if definition.database is not None and (tenants is None or by_schema):
            path.insert(0, definition.database)
        return dg.AssetKey(path)

    def get_automation_condition(self, definition: MatViewDefinition) -> dg.AutomationCondition | None:
        """``automation: eager`` -> ``AutomationCondition.eager()`` (refresh once its upstream
        views or sources update); ``{on_cron: C}`` -> ``AutomationCondition.on_cron(C)``; none
        -> ``None``. Dagster evaluates them in the ``default_automation_condition_sensor``,
        which must be running (``dagster-daemon``)."""
        if definition.automation == "eager":
            return dg.AutomationCondition.eager()
        if definition.automation is not None:
            return dg.AutomationCondition.on_cron(
                valid_cron(definition.automation.on_cron, definition, "automation on_cron")
            )
        return None

    def get_freshness_policy(self, definition: MatViewDefinition) -> dg.FreshnessPolicy | None:
        """``freshness: {warn_after, fail_after}`` -> ``FreshnessPolicy.time_window``: the UI
        shows the view late (warn, then fail) that long after its last materialization."""
        freshness = definition.freshness
        if freshness is None:
            return None
        warn = freshness.warn_after_seconds
        return dg.FreshnessPolicy.time_window(
            fail_window=timedelta(seconds=freshness.fail_after_seconds),
            warn_window=None if warn is None else timedelta(seconds=warn),
        )

    def get_source_asset_key(self, relation: QualifiedName) -> dg.AssetKey:
        """The key of a relation a view reads that is not a defined view: ``[schema, table]``."""
        return relation_key(relation)

    def get_code_version(self, definition: MatViewDefinition) -> str:
        """Changes when the SQL or the strategy changes, so the UI flags the view as changed."""
        payload = f"{definition.refresh_strategy}\n{definition.sql}"
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def spec_for(self, definition: MatViewDefinition, graph: ViewGraph) -> dg.AssetSpec:
        """``get_asset_spec`` of the view, computed once per graph (deps ask for their
        upstream views' specs, so a chain is translated once, not once per descendant)."""
        cache: weakref.WeakKeyDictionary[ViewGraph, dict[str, dg.AssetSpec]]
        cache = self.__dict__.setdefault("_matviews_specs", weakref.WeakKeyDictionary())
        specs = cache.setdefault(graph, {})
        if definition.name not in specs:
            specs[definition.name] = self.get_asset_spec(definition, graph)
        return specs[definition.name]


def valid_cron(cron: str, definition: MatViewDefinition, field: str) -> str:
    """``cron`` when Dagster accepts it, else ``ValueError`` naming the view and the field.
    (Dagster's public API validates a cron only where it is used: a probe schedule asks it.)"""
    try:
        dg.ScheduleDefinition(name="matviews_cron_probe", cron_schedule=cron, job_name="matviews_cron_probe")
    except (dg.DagsterInvalidDefinitionError, dg.DagsterInvariantViolationError, ValueError):
        raise ValueError(
            f"{definition.name}: {field} {cron!r} is not a valid cron expression (e.g. '0 3 * * *')"
        ) from None
    return cron


def with_definition(
    spec: dg.AssetSpec, definition: MatViewDefinition, translator: DagsterMatViewTranslator
) -> dg.AssetSpec:
    """The spec carrying its view's definition and the translator, so the resource can read
    them back at run time (the default spec has both already, and is returned as it is: a
    copy per view costs loading 1,000 views about 40 ms; a translator may have replaced the
    metadata)."""
    missing: dict[str, object] = {}
    stored = spec.metadata.get(DEFINITION_METADATA_KEY)
    if not (isinstance(stored, dg.JsonMetadataValue) and stored.value == definition.stored_fields()):
        missing[DEFINITION_METADATA_KEY] = _stored(definition)
    if spec.metadata.get(TRANSLATOR_METADATA_KEY) is not translator:
        missing[TRANSLATOR_METADATA_KEY] = translator
    return spec.merge_attributes(metadata=missing) if missing else spec


def _stored(definition: MatViewDefinition) -> dg.JsonMetadataValue:
    return dg.MetadataValue.json(definition.stored_fields())


class DatabaseSpecs:
    """The ``databases:`` entries a ``@matview_assets`` step's views live in, by name; an object
    (not a mapping) so that Dagster keeps it as it is instead of serializing it."""

    def __init__(self, specs: Mapping[str, DatabaseSpec]) -> None:
        self.specs = dict(specs)

    def __repr__(self) -> str:
        return f"DatabaseSpecs({', '.join(self.specs)})"  # names only: a DSN is never shown


def databases_of(assets_def: dg.AssetsDefinition) -> dict[str, DatabaseSpec]:
    """The ``databases:`` entries of a ``@matview_assets`` definition's views (empty: every
    view is on the default connection)."""
    for spec in assets_def.specs:
        found = spec.metadata.get(DATABASES_METADATA_KEY)
        if isinstance(found, DatabaseSpecs):
            return found.specs
    return {}


def definitions_of(assets_def: dg.AssetsDefinition) -> dict[dg.AssetKey, MatViewDefinition]:
    """The view definitions of a ``@matview_assets`` definition, by asset key."""
    found = {}
    for spec in assets_def.specs:
        stored = spec.metadata.get(DEFINITION_METADATA_KEY)
        if stored is not None:
            value = stored.value if isinstance(stored, dg.JsonMetadataValue) else stored
            found[spec.key] = MatViewDefinition(**value)
    return found


def translator_of(assets_def: dg.AssetsDefinition) -> DagsterMatViewTranslator:
    """The translator a ``@matview_assets`` definition was built with (the default one when
    its specs do not carry it)."""
    for spec in assets_def.specs:
        found = spec.metadata.get(TRANSLATOR_METADATA_KEY)
        if isinstance(found, DagsterMatViewTranslator):
            return found
    return DagsterMatViewTranslator()
