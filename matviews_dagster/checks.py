"""Asset checks per view: populated, usable unique index (concurrent), definition drift.

The checks of one view share one step (a subsettable multi-check), so they cost one process
under the multiprocess executor and can still be run one by one, without a refresh.
"""

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import dagster as dg
import psycopg

from .core.catalog import matview_state, usable_unique_index
from .core.definition import MatViewDefinition
from .core.drift import definition_drift
from .core.services.refresh import null_trap_warning
from .resources import PostgresResource
from .translator import DagsterMatViewTranslator

Check = Callable[[psycopg.Connection, MatViewDefinition], dict[str, Any]]
"""A check returns the keyword arguments of its ``AssetCheckResult``."""


def check_populated(conn: psycopg.Connection, definition: MatViewDefinition) -> dict[str, Any]:
    state = matview_state(conn, definition.qualified)
    if state is None:
        return dict(passed=False, description=f"{definition.name} does not exist; materialize it")
    return dict(
        passed=state.populated,
        description="populated" if state.populated else f"{definition.name} is not populated; refresh it",
    )


def check_unique_index(conn: psycopg.Connection, definition: MatViewDefinition) -> dict[str, Any]:
    state = matview_state(conn, definition.qualified)
    index = usable_unique_index(conn, state.oid) if state else None
    if index is None:
        columns = ", ".join(definition.unique_index_columns)
        return dict(
            passed=False,
            description=f"no usable unique index on {definition.name} for REFRESH ... CONCURRENTLY; "
            f"CREATE UNIQUE INDEX ON {definition.name} ({columns}), or create the view with force",
        )
    warning = null_trap_warning(conn, definition.qualified, state.oid, index) if state and state.populated else None
    if warning:
        return dict(passed=False, severity=dg.AssetCheckSeverity.WARN, description=warning, metadata={"index": index})
    return dict(passed=True, metadata={"index": index})


def check_definition(conn: psycopg.Connection, definition: MatViewDefinition) -> dict[str, Any]:
    drift = definition_drift(conn, definition)
    if drift is None:
        return dict(passed=True)
    deployed, expected = drift
    return dict(
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{definition.name} runs an older query; apply the change with a force create "
        "(create_mat_views with force: true) or a swap refresh (strategy: swap)",
        metadata={
            "deployed": dg.MetadataValue.md(f"```sql\n{deployed}\n```"),
            "expected": dg.MetadataValue.md(f"```sql\n{expected}\n```"),
        },
    )


CHECKS: dict[str, tuple[str, Check]] = {
    "populated": ("The view exists and holds data.", check_populated),
    "unique_index": ("REFRESH ... CONCURRENTLY has a unique index Postgres accepts.", check_unique_index),
    "definition_matches": (
        "The deployed query equals the code's, as Postgres normalizes both.",
        check_definition,
    ),
}


def _view_checks(definition: MatViewDefinition, key: dg.AssetKey) -> dg.AssetChecksDefinition:
    names = ["populated", "definition_matches"]
    if definition.refresh_strategy == "concurrent":
        names.insert(1, "unique_index")
    specs = [dg.AssetCheckSpec(name, asset=key, description=CHECKS[name][0]) for name in names]

    @dg.multi_asset_check(name=f"check_{'__'.join(key.path)}", specs=specs, can_subset=True)
    def view_checks(
        context: dg.AssetCheckExecutionContext, matviews_postgres: PostgresResource
    ) -> Iterator[dg.AssetCheckResult]:
        selected = {check_key.name for check_key in context.selected_asset_check_keys}
        with matviews_postgres.get_connection() as conn:
            for name in names:
                if name in selected:
                    outcome = CHECKS[name][1](conn, definition)
                    yield dg.AssetCheckResult(asset_key=key, check_name=name, **outcome)

    return view_checks


def build_matview_checks(
    definitions: Sequence[MatViewDefinition], *, translator: DagsterMatViewTranslator | None = None
) -> list[dg.AssetChecksDefinition]:
    """Checks for every view: populated, definition_matches and, for concurrent, unique_index."""
    translator = translator or DagsterMatViewTranslator()
    return [_view_checks(definition, translator.get_asset_key(definition)) for definition in definitions]
