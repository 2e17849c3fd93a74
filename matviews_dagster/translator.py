"""How a view definition becomes an ``AssetSpec``; subclass to customise (as in dagster-sling).

>>> class MyTranslator(DagsterMatViewTranslator):
...     def get_asset_spec(self, definition):
...         return super().get_asset_spec(definition).replace_attributes(group_name="reporting")
"""

import hashlib

import dagster as dg

from .core.analysis import referenced_relations
from .core.definition import MatViewDefinition
from .core.names import DEFAULT_SCHEMA, QualifiedName

DEFAULT_GROUP = "matviews"


def relation_key(schema: str | None, name: str) -> dg.AssetKey:
    """The asset key of a relation: ``[schema, name]``, unqualified names in ``public``."""
    return dg.AssetKey([schema or DEFAULT_SCHEMA, name])


class DagsterMatViewTranslator:
    """Maps a ``MatViewDefinition`` to the ``AssetSpec`` of its asset."""

    def get_asset_key(self, definition: MatViewDefinition) -> dg.AssetKey:
        return relation_key(definition.qualified.schema, definition.qualified.name)

    def get_deps(self, definition: MatViewDefinition) -> list[dg.AssetKey]:
        """Relations the SQL reads (CTEs, subqueries, joins) plus ``dependencies``."""
        keys = [relation_key(schema, name) for schema, name in referenced_relations(definition.sql)]
        for dependency in definition.dependencies:
            name = QualifiedName.parse(dependency)
            keys.append(relation_key(name.schema, name.name))
        return list(dict.fromkeys(keys))

    def get_code_version(self, definition: MatViewDefinition) -> str:
        payload = f"{definition.refresh_strategy}\n{definition.sql}"
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def get_asset_spec(self, definition: MatViewDefinition) -> dg.AssetSpec:
        return dg.AssetSpec(
            key=self.get_asset_key(definition),
            deps=self.get_deps(definition),
            description=definition.description or f"Materialized view {definition.name}",
            group_name=definition.group_name or DEFAULT_GROUP,
            owners=definition.owners,
            tags=definition.tags,
            kinds={"postgres"},
            code_version=self.get_code_version(definition),
            metadata={
                "dagster/table_name": definition.name,
                "strategy": definition.refresh_strategy,
                "sql": dg.MetadataValue.md(f"```sql\n{definition.sql}\n```"),
            },
        )
