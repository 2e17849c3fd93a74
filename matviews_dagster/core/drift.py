"""Does the deployed view still match its definition? Postgres normalizes both sides."""

from __future__ import annotations

import psycopg

from .catalog import deployed_definition
from .definition import MatViewDefinition
from .names import derived_name
from .services.binding import bind_search_path, create_statement


class _Rollback(Exception):
    pass


def normalized_definition(conn: psycopg.Connection, definition: MatViewDefinition) -> str:
    """What Postgres would store for the definition's SQL: created ``WITH NO DATA`` under a
    temporary name inside a transaction that is always rolled back."""
    probe = definition.qualified.sibling(derived_name(definition.qualified.name, "mvprobe"))
    text = ""
    try:
        with conn.transaction():
            bind_search_path(conn, definition)
            conn.execute(create_statement(probe, definition, data=False))
            text = deployed_definition(conn, probe) or ""
            raise _Rollback
    except _Rollback:
        pass
    return text


def definition_drift(conn: psycopg.Connection, definition: MatViewDefinition) -> tuple[str, str] | None:
    """``(deployed, expected)`` when the view exists and differs from its definition, else None."""
    deployed = deployed_definition(conn, definition.qualified)
    if deployed is None:
        return None
    expected = normalized_definition(conn, definition)
    return None if deployed == expected else (deployed, expected)
