"""What ``MatViews`` runs for each view, in its ``operation``: create, refresh (applying a
changed definition as ``on_definition_change`` says), apply and delete. Each keeps the run
store's record of what was applied (``RunStore.record_applied``) in step with the view."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import TYPE_CHECKING

import psycopg

from .catalog import NotAMaterializedView, describe_view, matview_state
from .definition import MatViewDefinition
from .deployed import deployed_identity
from .drift import ViewPlan, plan_view
from .operation import Operation, operation
from .result import OperationResult
from .services.apply import apply_change
from .services.create import create_view
from .services.delete import delete_view
from .services.refresh import refresh_view
from .services.response import ServiceError, ServiceResponse
from .source_versions import flush_statistics, read_versions
from .vocabulary import REFRESHED_MEANWHILE

if TYPE_CHECKING:
    from .matviews import MatViews

Connection = psycopg.Connection | None
"""A batch's worker connection, or None: the operation opens its own."""


def create_one(
    mv: MatViews, definition: MatViewDefinition, *, force: bool, dagster_run_id: str | None, conn: Connection
) -> OperationResult:
    with operation(mv, "create", definition, dagster_run_id, conn) as op:
        if op.not_started:
            return op.not_started
        return _create(op, {"force": force, "sql": definition.sql}, force)


def refresh_one(
    mv: MatViews,
    definition: MatViewDefinition,
    *,
    rows: str,
    strategy: str | None,
    create_if_missing: bool,
    dagster_run_id: str | None,
    describe: bool,
    conn: Connection,
) -> OperationResult:
    chosen = strategy or definition.refresh_strategy
    options = {"strategy": chosen, "row_count_strategy": rows, "sql": definition.sql}
    with operation(mv, "refresh", definition, dagster_run_id, conn) as op:
        if op.not_started:
            return op.not_started
        if op.lock is not None and op.lock.contended:  # another operation held the view: did it do our work?
            covering = mv.runs.refreshed_since(
                database_name=op.database, view_name=definition.name, since=op.lock.asked_at, sql_text=definition.sql
            )
            if covering is not None:
                skipped = op.run("refresh", options, _refreshed_meanwhile, covering)
                return replace(skipped, outcome=f"skipped ({REFRESHED_MEANWHILE.format(run_id=covering)})")
        created, query, what = None, None, "create the missing view"
        if create_if_missing and not _exists(op.conn, definition):
            created = _create(op, {"force": False, "reason": "create_if_missing", "sql": definition.sql}, False)
        elif isinstance(change := _changed(op), ServiceError):
            return op.run("refresh", options, _cannot_compare, change)
        elif change is not None:
            policy = definition.on_definition_change
            if policy == "fail":
                return op.run("refresh", options, _refuse_change, change)
            if policy == "apply":
                created = _apply(op, {"reason": "definition_change", "sql": definition.sql})
                what = "apply the changed definition"
            else:
                op.warnings.append(
                    f"the deployed view differs from its definition ({change.summary()}) and the definition was not "
                    "applied (on_definition_change: warn): "
                    "the deployed query was refreshed; apply it with matviews apply"
                )
                query = change.deployed_sql
        if created is not None and (not created.ok or created.rows_count is not None):
            result = op.run("refresh", options, _populated_by_create, created, rows, what)  # built: nothing to refresh
        else:
            op.recorded["source_versions"] = read_versions(op.conn, definition)
            policy_ = mv.lock_policy
            result = op.run(
                "refresh",
                options,
                refresh_view,
                definition,
                strategy=chosen,
                row_count_strategy=rows,
                lock_policy=policy_,
                query=query,
            )
        if created is not None:
            result = replace(result, created=created)
        if result.ok and not op.conn.broken:
            flush_statistics(op.conn)
        if describe and result.ok and not op.conn.broken:
            with contextlib.suppress(psycopg.Error):  # the run is recorded; a description is a bonus
                result = replace(result, description=describe_view(op.conn, definition.qualified), database=op.database)
        return result


def apply_one(
    mv: MatViews, definition: MatViewDefinition, *, dagster_run_id: str | None, conn: Connection
) -> OperationResult:
    """Create the view when missing, else make it match its definition (``skipped`` when it does)."""
    with operation(mv, "create", definition, dagster_run_id, conn) as op:
        if op.not_started:
            return op.not_started
        if not _exists(op.conn, definition):
            return _create(op, {"force": False, "reason": "apply", "sql": definition.sql}, False)
        return _apply(op, {"reason": "apply", "sql": definition.sql})


def delete_one(
    mv: MatViews, definition: MatViewDefinition, *, cascade: bool, dagster_run_id: str | None, conn: Connection
) -> OperationResult:
    with operation(mv, "delete", definition, dagster_run_id, conn) as op:
        if op.not_started:
            return op.not_started
        result = op.run("delete", {"cascade": cascade}, delete_view, definition.qualified, cascade=cascade)
        if result.ok:
            mv.runs.forget_applied(definition, op.database)
        for dropped in result.dropped:  # each defined view DROP ... CASCADE took with it gets its own row
            name = dropped.split(" (")[0]
            if mv.is_defined(name):
                dependent = mv.definition(name)
                mv.runs.record_finished(
                    "delete",
                    status="success",
                    view_name=name,
                    database_name=op.database,
                    definition_id=mv.runs.definition_id(dependent),
                    meta={"outcome": "deleted", "dropped_by": result.view, "cascade_of_run": result.run_id},
                    dagster_run_id=dagster_run_id,
                )
                mv.runs.forget_applied(dependent, op.database)
        return result


def _create(op: Operation, options: dict[str, object], force: bool) -> OperationResult:
    mv, definition = op.mv, op.definition
    applied = mv.runs.applied(definition, op.database)
    result = op.run(
        "create",
        options,
        create_view,
        definition,
        force=force,
        expected_reads=mv.expected_reads(definition),
        upstream=mv.upstream_views(definition),
        previously_declared=applied.indexes if applied else (),
        definitions=_by_name(mv),
        lock_policy=mv.lock_policy,
    )
    _record(op, result)
    return result


def _apply(op: Operation, options: dict[str, object]) -> OperationResult:
    """Make the view match its definition, as a create run whose ``meta.change`` holds the plan."""
    applied = op.mv.runs.applied(op.definition, op.database)
    previously = applied.indexes if applied else ()
    result = op.run(
        "create",
        options,
        apply_change,
        op.definition,
        previously_declared=previously,
        definitions=_by_name(op.mv),
        lock_policy=op.mv.lock_policy,
    )
    _record(op, result)
    return result


def _by_name(mv: MatViews) -> dict[str, MatViewDefinition]:
    return {definition.name: definition for definition in mv.definitions}


def _record(op: Operation, result: OperationResult) -> None:
    """A view created or changed to its definition: remember what was applied, and to which view."""
    declared = op.payload.get("declared_indexes")
    identity = deployed_identity(op.conn, op.definition.qualified) if result.ok and declared is not None else None
    if identity is not None:
        op.mv.runs.record_applied(op.definition, op.database, list(declared or ()), identity.query)


def _changed(op: Operation) -> ViewPlan | ServiceError | None:
    """How the deployed view differs from its definition, None when it does not. Cheaply, when
    the definition is the one last applied and the deployed query is the one it was applied to
    (another tool that re-created the view with another query changed it; a swap keeps it) with
    the declared indexes still there: one catalog read. Otherwise the catalog is compared
    (``drift.plan_view``) and, when equal, the view recorded as applied."""
    applied = op.mv.runs.applied(op.definition, op.database)
    identity = deployed_identity(op.conn, op.definition.qualified)
    if identity is None:
        return None  # missing, or another kind of relation: the refresh says which
    if (
        applied is not None
        and applied.fingerprint == op.definition.fingerprint
        and applied.query == identity.query
        and set(applied.indexes) <= identity.indexes
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
        op.mv.runs.record_applied(op.definition, op.database, names, identity.query)
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
        hint="apply the change (matviews apply), or set on_definition_change to apply or warn",
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
