"""``StatementLog``: every statement a service sends goes through it, so the run's ``meta``
lists the SQL that ran (even that of a failure)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql


class StatementLog:
    """Executes statements on a connection and keeps their text for the run's ``meta``."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.statements: list[str] = []
        self.meta: dict[str, Any] = {}
        """What the service measured before it failed (a failure's response keeps it)."""

    def execute(self, statement: sql.Composable, params: Any = None) -> psycopg.Cursor:
        self.statements.append(statement.as_string(self.conn))
        return self.conn.execute(statement, params)
