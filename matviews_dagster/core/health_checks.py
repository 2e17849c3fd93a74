"""Health checks of a deployed view, read from the catalog: is it populated, does it have the
unique index ``REFRESH ... CONCURRENTLY`` needs, does it still run its definition's query;
and, from the run history, the verdicts on its columns (``column_schema_change``) and on its
refresh strategy (``strategy_fits``).

The Dagster layer turns each ``CheckOutcome`` into an asset check result; anything else (a
script, the CLI) can read them as they are.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import psycopg

from .catalog import NotAMaterializedView, matview_state, usable_unique_index
from .definition import MatViewDefinition
from .drift import ViewPlan, plan_view
from .schema_change import SCHEMA_CHANGE, Columns, column_changes
from .services.concurrent_check import null_trap_warning
from .services.response import ServiceError, describe_db_error

if TYPE_CHECKING:
    from .advice_rules import Advice
    from .database import Database


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


_ON_CHANGE = {
    "apply": "materializing it applies the change (on_definition_change: apply)",
    "warn": "materializing it refreshes the deployed query (on_definition_change: warn); apply the change with "
    "the create_mat_views job (force: true) or matviews apply",
    "fail": "materializing it fails until the change is applied (on_definition_change: fail) with the "
    "create_mat_views job (force: true) or matviews apply",
}


def check_definition(
    conn: psycopg.Connection, definition: MatViewDefinition, previously_declared: Collection[str] = ()
) -> CheckOutcome:
    try:
        plan = plan_view(conn, definition, previously_declared)
    except ServiceError as exc:  # the definition does not compile, or the role cannot compare
        return CheckOutcome("definition_matches", False, f"{exc}; {exc.hint}" if exc.hint else str(exc))
    if plan.action == "create":
        return CheckOutcome("definition_matches", False, f"{definition.name} does not exist; materialize it")
    return drift_outcome(definition, plan if plan.action == "change" else None)


def drift_outcome(definition: MatViewDefinition, drift: ViewPlan | None) -> CheckOutcome:
    """The ``definition_matches`` verdict of a compared view: passed without ``drift``, else a
    warning (readers still get the deployed query's rows) saying what differs and what
    materializing it does under ``on_definition_change``."""
    if drift is None:
        return CheckOutcome("definition_matches", True)
    sql = {"deployed": drift.deployed_sql or "", "expected": drift.expected_sql or ""} if drift.query_changed else {}
    if drift.diff:
        sql["diff"] = drift.diff
    return CheckOutcome(
        "definition_matches",
        False,
        f"{definition.name} differs from its definition ({drift.summary()}); "
        f"{_ON_CHANGE[definition.on_definition_change]}",
        "warn",
        {"change": drift.summary()},
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


def run_checks(
    conn: psycopg.Connection, definition: MatViewDefinition, names: list[str], previously_declared: Collection[str] = ()
) -> list[CheckOutcome]:
    """Run the named checks (in the order given) on ``conn``. ``previously_declared``: the
    indexes the last applied definition declared (``definition_matches`` reports those it no
    longer declares as to drop)."""
    unknown = [name for name in names if name not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check {', '.join(unknown)}; known: {', '.join(CHECKS)}")
    return [
        check_definition(conn, definition, previously_declared)
        if name == "definition_matches"
        else CHECKS[name][1](conn, definition)
        for name in names
    ]


def run_checks_safely(
    db: Database, conn: psycopg.Connection, definition: MatViewDefinition, names: Sequence[str]
) -> list[CheckOutcome]:
    """``run_checks`` with what the last applied definition declared (from ``db.runs``); a
    database error, or the view's name taken by another kind of relation, fails every check
    with its message instead of raising."""
    try:
        applied = db.runs.applied(definition, db.name_of(conn)) if "definition_matches" in names else None
        return run_checks(conn, definition, list(names), applied.indexes if applied else ())
    except (psycopg.Error, NotAMaterializedView) as exc:
        reason = describe_db_error(exc) if isinstance(exc, psycopg.Error) else str(exc)
        return [CheckOutcome(name, False, f"the check could not run: {reason}") for name in names]


def schema_change_outcome(
    previous: Columns | None, current: Columns | None, severity: Literal["warn", "error", "off"]
) -> CheckOutcome:
    """The ``column_schema_change`` verdict: ``current`` columns against ``previous`` (the last
    materialization's); fails with ``severity`` (a definition's ``schema_change_severity``) on
    a column removed, renamed or retyped, passes when columns were only added or there is
    nothing to compare with."""
    if current is None:
        return CheckOutcome(SCHEMA_CHANGE, False, "the view's columns could not be read to compare", "warn")
    if previous is None:
        return CheckOutcome(SCHEMA_CHANGE, True, details={"columns_compared_with": "nothing: no earlier column schema"})
    changes = column_changes(previous, current)
    details: dict[str, str | int] = {
        "columns_compared_with": "the last materialization",
        "removed_columns": ", ".join(changes.removed),
        "added_columns": ", ".join(changes.added),
        "retyped_columns": ", ".join(f"{n}: {old} -> {new}" for n, old, new in changes.retyped),
    }
    summary = f"columns since the last materialization: {changes.summary()}"
    failing: Literal["warn", "error"] = "error" if severity == "error" else "warn"
    return CheckOutcome(SCHEMA_CHANGE, not changes.breaking, summary, failing, {k: v for k, v in details.items() if v})


STRATEGY_FITS = "strategy_fits"
"""The verdict of the strategy advisor (``core/advisor.py``) on a view's refresh strategy."""


def strategy_outcome(advice: Sequence[Advice]) -> CheckOutcome:
    """The ``strategy_fits`` verdict (left out for ``strategy_advice: off``): passes when the
    advisor has nothing to say of the view (as before 3 runs of its strategy), else warns with
    each piece of advice, its evidence as JSON and the change to make. Never an error: the view
    still serves readers correctly."""
    if not advice:
        return CheckOutcome(STRATEGY_FITS, True)
    details: dict[str, str | int] = {
        "strategy_advice": "\n".join(f"{a.current} -> {a.recommended}: {a.reason}; {a.effect}" for a in advice),
        "strategy_change": "\n".join(a.change for a in advice),
        "strategy_evidence": json.dumps([a.evidence for a in advice]),
    }
    summary = "; ".join(a.summary for a in advice)
    return CheckOutcome(STRATEGY_FITS, False, summary, "warn", details)
