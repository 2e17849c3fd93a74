"""Make a deployed view match its changed definition: a new query rebuilds it (``swap``'s
rebuild, which keeps owner, grants, comments, other indexes and the views built on it); new or
removed declared indexes and comments are altered in place."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import psycopg
from psycopg import sql

from ..catalog import column_names, matview_state
from ..definition import MatViewDefinition
from ..drift import ViewPlan, plan_view
from . import carry_over
from .indexes import (
    check_declared_columns,
    declared_index_names,
    declared_indexes,
    free_index_name,
    index_shapes,
    index_statement,
)
from .locking import LockAttempts, LockPolicy
from .response import ServiceError, ServiceResponse, disk_full, returns_errors
from .statement_log import StatementLog
from .swap import rebuild


def change_view(
    conn: psycopg.Connection,
    definition: MatViewDefinition,
    *,
    previously_declared: Collection[str] = (),
    rebuild_always: bool = False,
    definitions: Mapping[str, MatViewDefinition] | None = None,
    lock_policy: LockPolicy,
    log: StatementLog,
) -> ServiceResponse:
    """Compare (``drift.plan_view``) and apply. ``skipped`` when nothing differs (unless
    ``rebuild_always``: a forced create). The ``meta`` holds the plan (``change``: summary and
    query diff); the ``payload`` the declared indexes' names, and for a rebuild the rows built.
    A view built on this one that is in ``definitions`` is recreated from its definition."""
    name = definition.qualified
    state = matview_state(conn, name)
    if state is None:
        raise ServiceError(f"{name} does not exist; nothing to change", hint="create it first")
    plan = plan_view(conn, definition, previously_declared)
    meta: dict[str, object] = {"change": plan.to_dict()}
    payload: dict[str, object] = {}
    if plan.action == "unchanged" and not rebuild_always:
        return ServiceResponse("skipped", payload={"declared_indexes": _declared(conn, definition)}, meta=meta)
    if plan.query_changed or rebuild_always:
        built = rebuild(
            conn,
            definition,
            state,
            lock_policy=lock_policy,
            log=log,
            indexes="declared",
            drop_indexes=previously_declared,
            definitions=definitions,
        )
        carry_over.set_comments(log, name, definition.description, definition.column_descriptions)
        meta.update(built.meta)
        if built.warnings:
            meta["warnings"] = built.warnings
        payload.update(rows_count=built.rows, replaced=True)
    else:
        meta.update(_in_place(conn, definition, plan, state.oid, lock_policy, log))
    payload["declared_indexes"] = _declared(conn, definition)
    return ServiceResponse("updated", payload=payload, meta=meta)


def _apply_change(
    conn: psycopg.Connection,
    definition: MatViewDefinition,
    *,
    previously_declared: Collection[str] = (),
    definitions: Mapping[str, MatViewDefinition] | None = None,
    lock_policy: LockPolicy,
    log: StatementLog,
) -> ServiceResponse:
    try:
        return change_view(
            conn,
            definition,
            previously_declared=previously_declared,
            definitions=definitions,
            lock_policy=lock_policy,
            log=log,
        )
    except psycopg.errors.DiskFull as exc:
        raise disk_full(conn, definition.qualified, "rebuilding", exc) from None


apply_change = returns_errors(_apply_change)


def _in_place(
    conn: psycopg.Connection,
    definition: MatViewDefinition,
    plan: ViewPlan,
    oid: int,
    lock_policy: LockPolicy,
    log: StatementLog,
) -> dict[str, object]:
    """New declared indexes built (readers go on: ``CREATE INDEX`` blocks only writers), the
    undeclared ones dropped and comments set, the drops with bounded lock waits."""
    name = definition.qualified
    check_declared_columns(definition, column_names(conn, oid))
    shapes = index_shapes(conn, oid)
    built = []
    with conn.transaction():
        taken = {shape.name for shape in shapes}
        for declared in declared_indexes(definition):
            if not any(shape.is_declared(declared) for shape in shapes):
                index = free_index_name(conn, name, declared[0], taken)
                taken.add(index)
                log.execute(index_statement(declared, name, index))
                built.append(index)
        carry_over.set_comments(log, name, definition.description, definition.column_descriptions)

    attempts = LockAttempts(conn, lock_policy, what=str(name), oids=[oid])
    if plan.drop_indexes:
        for attempt in attempts:
            with attempt:
                for index in plan.drop_indexes:
                    log.execute(sql.SQL("DROP INDEX {}").format(name.sibling(index).identifier))
    return {
        "created_indexes": built,
        "dropped_indexes": list(plan.drop_indexes),
        "lock_attempts": attempts.number,
        "table_lock_wait_ms": attempts.waited_ms,
    }


def _declared(conn: psycopg.Connection, definition: MatViewDefinition) -> list[str]:
    state = matview_state(conn, definition.qualified)
    return declared_index_names(conn, state.oid, definition) if state else []
