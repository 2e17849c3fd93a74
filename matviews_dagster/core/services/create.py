"""Create a materialized view with its indexes; ``force`` recreates it in one transaction."""

from __future__ import annotations

import psycopg
from psycopg import sql

from ..catalog import column_names, dependent_views, matview_state
from ..definition import MatViewDefinition
from .indexes import check_index_columns, definition_index_statements
from .response import ServiceError, ServiceResponse, StatementLog, returns_errors


@returns_errors
def create_view(
    conn: psycopg.Connection, definition: MatViewDefinition, *, force: bool = False, log: StatementLog
) -> ServiceResponse:
    """Create the view (populated) and its indexes.

    Exists and not ``force``: ``skipped``. With ``force`` the drop and the new create share one
    transaction, so a failing new definition leaves the old view and its data in place.
    """
    name = definition.qualified
    meta = {"force": force}
    with conn.transaction():
        state = matview_state(conn, name)
        if state is not None and not force:
            return ServiceResponse("skipped", meta={**meta, "reason": "view exists"})
        if state is not None:
            dependents = dependent_views(conn, state.oid)
            if dependents:
                raise ServiceError(
                    f"cannot recreate {name}: views depend on it: {', '.join(dependents)}",
                    hint="drop those views first (delete with cascade), then create again",
                    dependents=dependents,
                )
            log.execute(sql.SQL("DROP MATERIALIZED VIEW {} RESTRICT").format(name.identifier))
        cursor = log.execute(
            sql.SQL("CREATE MATERIALIZED VIEW {} AS {} WITH DATA").format(name.identifier, sql.SQL(definition.sql))
        )
        rows_count = cursor.rowcount
        created = matview_state(conn, name)
        assert created is not None
        check_index_columns(definition, column_names(conn, created.oid))
        for statement in definition_index_statements(definition):
            log.execute(statement)
    return ServiceResponse(
        "created",
        payload={"rows_count": rows_count, "replaced": state is not None},
        meta=meta,
    )
