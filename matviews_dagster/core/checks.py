"""Health checks of a deployed view, read from the catalog: is it populated, does it have the
unique index ``REFRESH ... CONCURRENTLY`` needs, does it still run its definition's query.

The Dagster layer turns each ``CheckOutcome`` into an asset check result; anything else (a
script, the CLI) can read them as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import psycopg

from .catalog import matview_state, usable_unique_index
from .definition import MatViewDefinition
from .drift import plan_view
from .services.refresh import null_trap_warning


@dataclass(frozen=True)
class CheckOutcome:
    """One check's verdict; ``severity`` says how much a failure matters (``warn``: the view
    still serves readers correctly). ``sql`` holds query texts worth showing as code."""

    name: str
    passed: bool
    description: str | None = None
    severity: Literal["error", "warn"] = "error"
    details: dict[str, str | int] = field(default_factory=dict)
    sql: dict[str, str] = field(default_factory=dict)


Check = Callable[[psycopg.Connection, MatViewDefinition], CheckOutcome]


def check_populated(conn: psycopg.Connection, definition: MatViewDefinition) -> CheckOutcome:
    state = matview_state(conn, definition.qualified)
    if state is None:
        return CheckOutcome("populated", False, f"{definition.name} does not exist; materialize it")
    if not state.populated:
        return CheckOutcome("populated", False, f"{definition.name} is not populated; refresh it")
    return CheckOutcome("populated", True)


def check_unique_index(conn: psycopg.Connection, definition: MatViewDefinition) -> CheckOutcome:
    state = matview_state(conn, definition.qualified)
    index = usable_unique_index(conn, state.oid) if state else None
    if state is None or index is None:
        columns = ", ".join(definition.unique_index_columns)
        return CheckOutcome(
            "unique_index",
            False,
            f"no usable unique index on {definition.name} for REFRESH ... CONCURRENTLY; "
            f"CREATE UNIQUE INDEX ON {definition.name} ({columns}), or create the view with force",
        )
    warning = null_trap_warning(conn, definition.qualified, state.oid, index) if state.populated else None
    if warning:
        return CheckOutcome("unique_index", False, warning, "warn", {"index": index})
    return CheckOutcome("unique_index", True, details={"index": index})


def check_definition(conn: psycopg.Connection, definition: MatViewDefinition) -> CheckOutcome:
    plan = plan_view(conn, definition)
    if plan.action != "change":
        return CheckOutcome("definition_matches", True)
    sql = {"deployed": plan.deployed_sql or "", "expected": plan.expected_sql or ""} if plan.query_changed else {}
    if plan.diff:
        sql["diff"] = plan.diff
    return CheckOutcome(
        "definition_matches",
        False,
        f"{definition.name} differs from its definition ({plan.summary()}); materializing it applies the change "
        "(on_definition_change: apply), as do the create_mat_views job with force: true and matviews apply",
        "warn",
        {"change": plan.summary()},
        sql=sql,
    )


CHECKS: dict[str, tuple[str, Check]] = {
    "populated": ("The view exists and holds data.", check_populated),
    "unique_index": ("REFRESH ... CONCURRENTLY has a unique index Postgres accepts.", check_unique_index),
    "definition_matches": ("The deployed query equals the code's, as Postgres normalizes both.", check_definition),
}


def checks_for(definition: MatViewDefinition) -> list[str]:
    """The checks that apply to a view: ``unique_index`` only for the concurrent strategy."""
    names = ["populated", "definition_matches"]
    if definition.refresh_strategy == "concurrent":
        names.insert(1, "unique_index")
    return names


def run_checks(conn: psycopg.Connection, definition: MatViewDefinition, names: list[str]) -> list[CheckOutcome]:
    """Run the named checks (in the order given) on ``conn``."""
    unknown = [name for name in names if name not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check {', '.join(unknown)}; known: {', '.join(CHECKS)}")
    return [CHECKS[name][1](conn, definition) for name in names]
