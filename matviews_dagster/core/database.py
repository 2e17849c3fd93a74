"""``Database``: the database the views live in, and what every operation on them shares.

One connection factory, the run store their run rows go to, the lock policy and the timeouts,
built from ``MatViewsSettings``. The core's operations take this small context (never the
``MatViews`` facade that calls them), so nothing below the facade depends on it.
"""

from __future__ import annotations

from typing import Any

import psycopg

from .connection import DatabaseUnavailable, connect
from .dsn import resolve_dsn
from .reader_waits import ReaderWatcher
from .services.locking import LockPolicy
from .settings import MatViewsSettings
from .store import RunStore


class Database:
    """Where the views are (``dsn``, resolved: option, ``MATVIEWS_DSN``, ``DATABASE_URL``, the
    embedded server), where their runs go (``runs``), and how long operations wait
    (``lock_policy``, ``lock_wait_timeout``, ``statement_timeout``, in seconds as the settings
    say). No connection is opened until one is asked for."""

    def __init__(self, settings: MatViewsSettings) -> None:
        self.settings = settings
        self.name = settings.database_name
        """The database's name in an estate (``databases:``), None for the default connection."""
        self.dsn = resolve_dsn(settings.dsn)
        self.runs = RunStore(settings.runs_dsn or self.dsn, settings.runs_schema)
        self.lock_policy = LockPolicy.of(settings)
        self.readers = ReaderWatcher(lambda: self.connect("reader watcher"))
        """Whom refreshes block: one sampling connection for every view this database refreshes
        at once, opened only for a lock held longer than 50 ms."""

    @property
    def lock_wait_timeout(self) -> float:
        return self.settings.lock_wait_timeout

    @property
    def statement_timeout(self) -> float | None:
        return self.settings.statement_timeout

    def connect(self, purpose: str = "") -> psycopg.Connection[Any]:
        """An autocommit connection to the views' database, tagged ``<application_name>
        <purpose>``, that stops its statement soon after this process dies (PostgreSQL 14+).
        Raises ``DatabaseUnavailable`` (password masked; for a database of an estate, naming it)
        when the server cannot be reached or the DSN's ``${VAR}`` is not set."""
        try:
            return connect(self.dsn, f"{self.settings.application_name} {purpose}".strip(), check_client=True)
        except DatabaseUnavailable as exc:
            if self.name is None:
                raise
            raise DatabaseUnavailable(f"database {self.name}: {exc}", limit_reached=exc.limit_reached) from None

    def name_of(self, conn: psycopg.Connection[Any]) -> str:
        """The ``database_name`` of run rows: the estate's name for this database, else the
        server's (``current_database()``) as ``conn`` sees it."""
        return self.name or conn.info.dbname

    def close(self) -> None:
        self.readers.close()
        self.runs.close()
