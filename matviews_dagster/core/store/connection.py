"""The run store's own connection: separate from the work, retried when it drops.

Every write commits at once on this connection, so a failed or rolled-back operation never
loses its run row; writes are retried with backoff when the connection drops, so a row is not
left ``running`` by a server restart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ..connection import DatabaseUnavailable, connect
from ..dsn import scrub
from ..names import validate_identifier
from ..settings import DEFAULTS

T = TypeVar("T")


class StoreConnection:
    """The connection of the run tables in ``schema``; ``run(work)`` retries a dropped one."""

    def __init__(
        self,
        dsn: str,
        schema: str = DEFAULTS.runs_schema,
        *,
        retry_seconds: float = 30.0,
        application_name: str = "matviews-runs",
    ) -> None:
        self.dsn = dsn
        self.schema = validate_identifier(schema, "runs schema")
        self.retry_seconds = retry_seconds
        self.application_name = application_name
        self._conn: psycopg.Connection | None = None
        self._lock = threading.RLock()
        self._migrated = False
        self._connected_once = False

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = connect(self.dsn, self.application_name, row_factory=dict_row)
            except DatabaseUnavailable as exc:
                if not self._connected_once:
                    raise  # a wrong DSN or a server that is down: say so now, do not wait
                raise psycopg.OperationalError(str(exc)) from None  # a restart: retried by run()
            self._connected_once = True
        return self._conn

    def run(self, work: Callable[[psycopg.Connection], T]) -> T:
        """Run ``work``; reconnect and retry with backoff while the connection is broken (a
        server restart), for up to ``retry_seconds``. The first connection is not retried:
        ``DatabaseUnavailable`` at once."""
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.1
        with self._lock:
            while True:
                try:
                    return work(self._connection())
                except psycopg.OperationalError as exc:
                    broken = self._conn is None or self._conn.broken or self._conn.closed
                    if self._conn is not None and broken:
                        self._conn.close()
                        self._conn = None
                    if not broken or time.monotonic() + delay > deadline:
                        raise psycopg.OperationalError(scrub(str(exc), self.dsn)) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def table(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)
