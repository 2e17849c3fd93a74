"""Count what a block of code sends to Postgres: connections opened and statements executed.

Benchmark instrumentation only: it wraps psycopg's ``Cursor.execute``/``executemany``, the
connection's transaction commands (``BEGIN``/``COMMIT``) and ``Connection.connect`` while the
block runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql


@dataclass
class RoundTrips:
    connections: int = 0
    statements: int = 0
    sent: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.statements} statements, {self.connections} connection{'s' if self.connections != 1 else ''}"


@contextmanager
def counting() -> Iterator[RoundTrips]:
    counts = RoundTrips()
    cursor_execute = psycopg.Cursor.execute
    cursor_executemany = psycopg.Cursor.executemany
    exec_command = psycopg.Connection._exec_command
    connect = psycopg.Connection.connect.__func__  # type: ignore[attr-defined]

    def execute(self: psycopg.Cursor, *args: Any, **kwargs: Any) -> Any:
        counts.statements += 1
        counts.sent.append(_text(args[0], self.connection))
        return cursor_execute(self, *args, **kwargs)

    def executemany(self: psycopg.Cursor, *args: Any, **kwargs: Any) -> Any:
        counts.statements += 1
        return cursor_executemany(self, *args, **kwargs)

    def command(self: psycopg.Connection, *args: Any, **kwargs: Any) -> Any:
        counts.statements += 1
        counts.sent.append(_text(args[0], self))
        return exec_command(self, *args, **kwargs)

    def open_connection(cls: type[psycopg.Connection], *args: Any, **kwargs: Any) -> Any:
        counts.connections += 1
        return connect(cls, *args, **kwargs)

    psycopg.Cursor.execute = execute  # type: ignore[method-assign]
    psycopg.Cursor.executemany = executemany  # type: ignore[method-assign]
    psycopg.Connection._exec_command = command  # type: ignore[method-assign]
    psycopg.Connection.connect = classmethod(open_connection)  # type: ignore[assignment,method-assign]
    module_connect = psycopg.connect
    psycopg.connect = psycopg.Connection.connect  # type: ignore[assignment]
    try:
        yield counts
    finally:
        psycopg.Cursor.execute = cursor_execute  # type: ignore[method-assign]
        psycopg.Cursor.executemany = cursor_executemany  # type: ignore[method-assign]
        psycopg.Connection._exec_command = exec_command  # type: ignore[method-assign]
        psycopg.Connection.connect = classmethod(connect)  # type: ignore[assignment,method-assign]
        psycopg.connect = module_connect  # type: ignore[assignment]


def _text(query: Any, conn: psycopg.Connection) -> str:
    if isinstance(query, sql.Composable):
        return query.as_string(conn)
    return query.decode() if isinstance(query, bytes) else str(query)
