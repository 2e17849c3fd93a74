"""Does the deployed view still match its definition? Postgres normalizes both sides."""

from __future__ import annotations

import psycopg

from .catalog import deployed_definition
from .definition import MatViewDefinition
from .names import derived_name
from .services.binding import bind_search_path, create_statement


class _Rollback(Exception):
    pass


def definition_drift(conn: psycopg.Connection, definition: MatViewDefinition) -> tuple[str, str] | None:
    """``(deployed, expected)`` when the view exists and its stored query differs from what
    Postgres makes of the definition's SQL, else None.

    The definition's SQL is created ``WITH NO DATA`` under a temporary name, bound with the
    view's search path, inside a transaction that is always rolled back; both texts are read
    with ``pg_get_viewdef`` under that same path, so formatting and qualification are alike.
    """
    probe = definition.qualified.sibling(derived_name(definition.qualified.name, "mvprobe"))
    found: tuple[str, str] | None = None
    try:
        with conn.transaction():
            bind_search_path(conn, definition)
            deployed = deployed_definition(conn, definition.qualified)
            if deployed is None:
                return None
            conn.execute(create_statement(probe, definition, data=False))
            expected = deployed_definition(conn, probe) or ""
            found = (deployed, expected)
            raise _Rollback
    except _Rollback:
        pass
    assert found is not None
    return None if found[0] == found[1] else found
