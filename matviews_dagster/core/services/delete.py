"""Drop a materialized view, ``RESTRICT`` unless ``cascade``."""

from __future__ import annotations

import psycopg
from psycopg import sql

from ..catalog import dependent_relations, described, matview_state
from ..names import QualifiedName
from .response import ServiceError, ServiceResponse, describe_db_error, returns_errors
from .statement_log import StatementLog


@returns_errors
def delete_view(
    conn: psycopg.Connection, name: QualifiedName, *, cascade: bool = False, log: StatementLog
) -> ServiceResponse:
    """Drop the view. Absent: ``skipped``. Views built on it (at any depth) without ``cascade``:
    an error naming each with its kind; with ``cascade`` they are dropped too and listed in
    ``payload["dropped_dependents"]`` as ``[name, kind]`` pairs."""
    meta = {"cascade": cascade}
    with conn.transaction():
        state = matview_state(conn, name)
        if state is None:
            return ServiceResponse("skipped", meta={**meta, "reason": "view does not exist"})
        dependents = dependent_relations(conn, state.oid)
        if dependents and not cascade:
            raise ServiceError(
                f"cannot delete {name}: built on it: {described(dependents)}",
                hint="delete with cascade=True to drop them too, or delete them first",
                dependents=[name_ for name_, _ in dependents],
            )
        mode = sql.SQL("CASCADE" if cascade else "RESTRICT")
        try:
            log.execute(sql.SQL("DROP MATERIALIZED VIEW {} {}").format(name.identifier, mode))
        except psycopg.errors.DependentObjectsStillExist as exc:  # not a view: a function, a column of its type
            detail = " ".join((exc.diag.message_detail or "").split())
            raise ServiceError(
                f"cannot delete {name}: {detail or describe_db_error(exc)}",
                hint="drop those objects first, or delete with cascade=True, which drops them too",
            ) from None
    return ServiceResponse("deleted", payload={"dropped_dependents": [list(d) for d in dependents]}, meta=meta)
