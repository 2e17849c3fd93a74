"""Does the deployed view still match its definition? Postgres normalizes both sides."""

from __future__ import annotations

import psycopg
from psycopg import sql

from .catalog import deployed_definition
from .definition import MatViewDefinition
from .names import derived_name


class _Rollback(Exception):
    pass


def normalized_definition(conn: psycopg.Connection, definition: MatViewDefinition) -> str:
    """What Postgres would store for the definition's SQL: created ``WITH NO DATA`` under a
    temporary name inside a transaction that is always rolled back."""
    probe = definition.qualified.sibling(derived_name(definition.qualified.name, "mvprobe"))
    text = ""
    try:
        with conn.transaction():
            conn.execute(
                sql.SQL("CREATE MATERIALIZED VIEW {} AS {} WITH NO DATA").format(
                    probe.identifier, sql.SQL(definition.sql)
                )
            )
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
