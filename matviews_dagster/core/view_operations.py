"""The operations on one view: create, refresh (applying a changed definition as
``on_definition_change`` says), apply and delete, each inside its ``operation`` (the view's
lock, its run rows). Each keeps the run store's record of what was applied
(``RunStore.record_applied``) in step with the view. They take the small context they need:
the ``Database`` and the ``DefinedViews``, never the facade that calls them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import wraps
from typing import TYPE_CHECKING, Any

import psycopg

from .catalog import NotAMaterializedView, describe_view, matview_state
from .database import Database
from .defined_views import DefinedViews
from .definition import MatViewDefinition
from .deployed import deployed_identity
from .drift import ViewPlan, comments_differ, index_changes, plan_view
from .operation import Operation, operation
from .result import OperationResult
from .services.apply import apply_change
from .services.create import create_view
from .services.delete import delete_view
from .services.refresh import refresh_view
from .services.response import ServiceError, ServiceResponse
from .source_versions import flush_statistics, read_versions
from .vocabulary import REFRESHED_MEANWHILE, RunKind

if TYPE_CHECKING:
    from .health_checks import CheckOutcome

Connection = psycopg.Connection | None
"""A batch's worker connection, or None: the operation opens its own."""
OnOneView = Callable[..., OperationResult]
"""``(db, views, definition, conn=None, *, dagster_run_id, **options) -> OperationResult``."""


def _in_operation(kind: RunKind) -> Callable[[Callable[..., OperationResult]], OnOneView]:
    """Run the decorated body, ``body(op, views, **options)``, inside the view's operation; a
    view whose operation could not begin (its lock, a leftover) gets the recorded failure."""

    def wrap(body: Callable[..., OperationResult]) -> OnOneView:
        @wraps(body)
        def one(
            db: Database,
            views: DefinedViews,
            definition: MatViewDefinition,
            conn: Connection = None,
            *,
            dagster_run_id: str | None,
            **options: Any,
        ) -> OperationResult:
            with operation(db, kind, definition, dagster_run_id, conn) as op:
                return op.not_started or body(op, views, **options)

        return one

    return wrap


@_in_operation("create")
def create_one(op: Operation, views: DefinedViews, *, force: bool) -> OperationResult:
    return _create(op, views, {"force": force, "sql": op.definition.sql}, force)


@_in_operation("refresh")
def refresh_one(
    op: Operation,
    views: DefinedViews,
    *,
    row_count_strategy: str,
    strategy: str | None,
    create_if_missing: bool,
    describe: bool,
    checks: Sequence[str] = (),
) -> OperationResult:
    """Refresh the view (creating it first with ``create_if_missing``), applying, refusing or
    warning about a changed definition as ``on_definition_change`` says, then run ``checks``
    (``health_checks``) on its connection and, with ``describe``, read its description."""
    definition, rows, db = op.definition, row_count_strategy, op.db
    chosen = strategy or definition.refresh_strategy
    options = {"strategy": chosen, "row_count_strategy": rows, "sql": definition.sql}
    if op.lock is not None and op.lock.contended:  # another operation held the view: did it do our work?
        covering = db.runs.refreshed_since(
            database_name=op.database, view_name=definition.name, since=op.lock.asked_at, sql_text=definition.sql
        )
        if covering is not None:
            skipped = op.run("refresh", options, _refreshed_meanwhile, covering)
            return replace(skipped, outcome=f"skipped ({REFRESHED_MEANWHILE.format(run_id=covering)})")
    created, query, what, kept = None, None, "create the missing view", None
    if create_if_missing and not _exists(op.conn, definition):
        created = _create(op, views, {"force": False, "reason": "create_if_missing", "sql": definition.sql}, False)
    elif isinstance(change := _changed(op), ServiceError):
        return op.run("refresh", options, _cannot_compare, change)
    elif change is not None:
        policy = definition.on_definition_change
        if policy == "fail":
            return op.run("refresh", options, _refuse_change, change)
        if policy == "apply":
            created = _apply(op, views, {"reason": "definition_change", "sql": definition.sql})
            what = "apply the changed definition"
        else:
            op.warnings.append(
                f"the deployed view differs from its definition ({change.summary()}) and the definition was not "
                "applied (on_definition_change: warn): "
                "the deployed query was refreshed; apply it with apply_many()"
            )
            query, kept = change.deployed_sql, change
    if created is not None and (not created.ok or created.rows_count is not None):
        result = op.run("refresh", options, _populated_by_create, created, rows, what)  # built: nothing to refresh
    else:
        op.recorded["source_versions"] = read_versions(op.conn, definition)
        result = op.run(
            "refresh",
            options,
            refresh_view,
            definition,
            strategy=chosen,
            row_count_strategy=rows,
            lock_policy=db.lock_policy,
            query=query,
            readers=db.readers,
        )
    if created is not None:
        result = replace(result, created=created)
    if result.ok and not op.conn.broken and not result.costs:  # a refresh's last reading flushed them
        flush_statistics(op.conn)
    if describe and result.ok and not op.conn.broken:
        with contextlib.suppress(psycopg.Error):  # the run is recorded; a description is a bonus
            result = replace(result, description=describe_view(op.conn, definition.qualified), database=op.database)
    if checks and result.ok:
        result = replace(result, checks=_checks_after_refresh(op, checks, kept))
    return result


def _checks_after_refresh(op: Operation, names: Sequence[str], drift: ViewPlan | None) -> tuple[CheckOutcome, ...]:
    """The ``names`` checks of a view just refreshed, taken from what the refresh established
    where it did: a view ``REFRESH`` or ``CREATE`` just filled is populated (PostgreSQL marks it
    so), and its definition matches unless the refresh found a difference it kept
    (``drift``, under ``on_definition_change: warn``); the others read the catalog."""
    from .health_checks import CheckOutcome, drift_outcome, run_checks_safely  # not on the CLI's path

    known = {"populated": CheckOutcome("populated", True), "definition_matches": drift_outcome(op.definition, drift)}
    read = iter(run_checks_safely(op.db, op.conn, op.definition, [n for n in names if n not in known]))
    return tuple(known[name] if name in known else next(read) for name in names)


@_in_operation("create")
def apply_one(op: Operation, views: DefinedViews) -> OperationResult:
    """Create the view when missing, else make it match its definition (``skipped`` when it does)."""
    if not _exists(op.conn, op.definition):
        return _create(op, views, {"force": False, "reason": "apply", "sql": op.definition.sql}, False)
    return _apply(op, views, {"reason": "apply", "sql": op.definition.sql})


@_in_operation("delete")
def delete_one(op: Operation, views: DefinedViews, *, cascade: bool) -> OperationResult:
    definition, runs = op.definition, op.db.runs
    result = op.run("delete", {"cascade": cascade}, delete_view, definition.qualified, cascade=cascade)
    if result.ok:
        runs.forget_applied(definition, op.database)
    for dropped in result.dropped:  # each defined view DROP ... CASCADE took with it gets its own row
        name = dropped.split(" (")[0]
        if views.is_defined(name):
            dependent = views.definition(name)
            runs.record_finished(
                "delete",
                status="success",
                view_name=name,
                database_name=op.database,
                definition_id=runs.definition_id(dependent),
                meta={"outcome": "deleted", "dropped_by": result.view, "cascade_of_run": result.run_id},
                dagster_run_id=op.dagster_run_id,
            )
            runs.forget_applied(dependent, op.database)
    return result


def _create(op: Operation, views: DefinedViews, options: dict[str, object], force: bool) -> OperationResult:
    definition = op.definition
    applied = op.db.runs.applied(definition, op.database)
    result = op.run(
        "create",
        options,
        create_view,
        definition,
        force=force,
        expected_reads=views.expected_reads(definition),
        upstream=views.upstream_views(definition),
        previously_declared=applied.indexes if applied else (),
        definitions=views.by_name,
        lock_policy=op.db.lock_policy,
    )
    _record(op, result)
    return result


def _apply(op: Operation, views: DefinedViews, options: dict[str, object]) -> OperationResult:
    """Make the view match its definition, as a create run whose ``meta.change`` holds the plan."""
    applied = op.db.runs.applied(op.definition, op.database)
    previously = applied.indexes if applied else ()
    result = op.run(
        "create",
        options,
        apply_change,
        op.definition,
        previously_declared=previously,
        definitions=views.by_name,
        lock_policy=op.db.lock_policy,
    )
    _record(op, result)
    return result


def _record(op: Operation, result: OperationResult) -> None:
    """A view created or changed to its definition: remember what was applied, and to which view."""
    declared = op.payload.get("declared_indexes")
    identity = deployed_identity(op.conn, op.definition.qualified) if result.ok and declared is not None else None
    if identity is not None:
        op.db.runs.record_applied(op.definition, op.database, list(declared or ()), identity.query)


def _changed(op: Operation) -> ViewPlan | ServiceError | None:
    """How the deployed view differs from its definition, None when it does not. Cheaply, when
    the definition is the one last applied and the deployed query is the one it was applied to
    (another tool that re-created the view with another query changed it; a swap keeps it) with
    the declared indexes (by shape) and comments still there: three catalog reads. Otherwise the catalog is
    compared (``drift.plan_view``) and, when equal, the view recorded as applied. None means
    what ``plan_view`` would call ``unchanged``, so a check can take it as its verdict."""
    applied = op.db.runs.applied(op.definition, op.database)
    identity = deployed_identity(op.conn, op.definition.qualified)
    if identity is None:
        return None  # missing, or another kind of relation: the refresh says which
    if (
        applied is not None
        and applied.fingerprint == op.definition.fingerprint
        and applied.query == identity.query
        and index_changes(op.conn, identity.oid, op.definition, applied.indexes) == ((), ())
        and not comments_differ(op.conn, identity.oid, op.definition)
    ):
        return None
    try:
        plan = plan_view(op.conn, op.definition, applied.indexes if applied else ())
    except ServiceError as exc:  # the definition does not compile, or the role cannot compare
        return exc
    if plan.action == "create":
        return None  # missing: the refresh says so
    if plan.action == "unchanged":
        from .services.indexes import declared_index_names

        names = declared_index_names(op.conn, identity.oid, op.definition)
        op.db.runs.record_applied(op.definition, op.database, names, identity.query)
        return None
    return plan


def _exists(conn: psycopg.Connection, definition: MatViewDefinition) -> bool:
    try:
        return matview_state(conn, definition.qualified) is not None
    except NotAMaterializedView:
        return True  # let the refresh report what the name really is


def _cannot_compare(conn: psycopg.Connection, error: ServiceError) -> ServiceResponse:
    return ServiceResponse.failure(str(error), hint=error.hint)


def _refuse_change(conn: psycopg.Connection, change: ViewPlan) -> ServiceResponse:
    return ServiceResponse.failure(
        f"the deployed {change.view} differs from its definition ({change.summary()}) and on_definition_change is "
        "fail: nothing was "
        "refreshed",
        hint="apply the change (apply_many()), or set on_definition_change to apply or warn",
        change=change.to_dict(),
    )


def _refreshed_meanwhile(conn: psycopg.Connection, run_id: int) -> ServiceResponse:
    """This refresh waited for the view's lock while refresh run ``run_id``, which started after
    this one was asked for, refreshed it: its data is at least as new as this one's would be."""
    return ServiceResponse(
        "skipped",
        meta={"reason": REFRESHED_MEANWHILE.format(run_id=run_id), "refreshed_by_run": run_id},
    )


def _populated_by_create(conn: psycopg.Connection, created: OperationResult, rows: str, what: str) -> ServiceResponse:
    """The refresh step right after a create or rebuild: the data is fresh, so nothing runs twice."""
    if not created.ok:
        return ServiceResponse.failure(f"could not {what}: {created.error}", hint=created.hint)
    return ServiceResponse(
        "created" if created.outcome == "created" else "updated",
        payload={"rows_count": None if rows == "none" else created.rows_count},
        meta={"populated_by_create_run": created.run_id, "row_count_strategy": rows},
    )
