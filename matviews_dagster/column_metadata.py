"""What a view's materialization says about its columns: ``dagster/column_lineage`` (from
``core.lineage``), and the column schema of its last materialization, which the
``column_schema_change`` verdict (``core.schema_change``) compares with. Lineage is metadata:
a failure to read or follow it is logged and leaves it out, never fails a view.
"""

from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg

from .core.catalog import ViewDescription
from .core.definition import MatViewDefinition
from .core.lineage import LineageReader, ViewLineage
from .core.matviews import MatViews
from .core.names import QualifiedName
from .core.schema_change import Columns

KeyOf = Callable[[QualifiedName], dg.AssetKey]
"""The asset key of an upstream relation, as the translator makes it."""


def read_lineage(mv: MatViews, names: Sequence[str], log: Any) -> LineageReader | None:
    """The catalog reading a step's column lineage comes from (one query), or ``None`` (logged)
    when it could not be read."""
    if not names:
        return None
    try:
        return mv.lineage_reader(names)
    except Exception as exc:  # any failure to read lineage leaves it out; the refresh goes on
        log.warning(f"column lineage left out: the catalog could not be read ({exc})")
        return None


def lineage_for(
    reader: LineageReader | None,
    definition: MatViewDefinition,
    description: ViewDescription | None,
    key_of: KeyOf,
    log: Any,
) -> dict[str, Any]:
    """The lineage metadata of a view just refreshed, its own columns as the refresh left
    them (``description``); empty when there is none to give."""
    if reader is None or description is None or not description.exists:
        return {}
    try:
        reader.described(description.name, [name for name, _ in description.columns])
        return lineage_metadata(reader.of(definition), key_of)
    except Exception as exc:  # a lineage we cannot follow never fails the view
        log.warning(f"{definition.name}: column lineage left out ({type(exc).__name__}: {exc})")
        return {}


def lineage_metadata(lineage: ViewLineage, key_of: KeyOf) -> dict[str, Any]:
    """``dagster/column_lineage`` (``TableColumnLineage``: each column with upstream sources,
    the upstream relations keyed by ``key_of``), as dagster-dbt reports a model's; and
    ``column_lineage``, the same as a Markdown table (column, upstream columns as asset
    key / column, or why they are not known), because Dagster's open-source UI shows the
    former only in Dagster+."""
    deps = {
        column: [dg.TableColumnDep(asset_key=key_of(source.relation), column_name=source.column) for source in sources]
        for column, sources in lineage.columns.items()
        if sources
    }
    rows = [
        f"| `{column}` | "
        + (
            f"not known: {lineage.unresolved[column]}"
            if column in lineage.unresolved
            else ", ".join(f"{key_of(s.relation).to_user_string()} `{s.column}`" for s in sources) or "(constants)"
        )
        + " |"
        for column, sources in lineage.columns.items()
    ]
    return {
        "dagster/column_lineage": dg.TableColumnLineage(deps_by_column=deps),
        "column_lineage": dg.MetadataValue.md("\n".join(["| column | computed from |", "|---|---|", *rows])),
    }


def previous_column_schemas(
    instance: dg.DagsterInstance, keys: Sequence[dg.AssetKey]
) -> dict[dg.AssetKey, Columns | None]:
    """The ``dagster/column_schema`` of each asset's latest materialization, in one call to
    the instance (``None``: never materialized, or without a column schema)."""
    if not keys:
        return {}
    found: dict[dg.AssetKey, Columns | None] = {}
    for key, event in instance.get_latest_materialization_events(list(keys)).items():
        materialization = event.asset_materialization if event is not None else None
        schema = materialization.metadata.get("dagster/column_schema") if materialization is not None else None
        value = getattr(schema, "schema", None)
        found[key] = [(c.name, c.type) for c in value.columns] if isinstance(value, dg.TableSchema) else None
    return found
