"""``MatViewsSettings``: where the views and the run tables are and how long operations wait.
Every interface (the CLI's options, the Dagster resources, the adapter, ``MatViews``'s own
keywords) fills these fields; their defaults are ``DEFAULTS``."""

from __future__ import annotations

from dataclasses import dataclass

from .timing import seconds_to_ms


@dataclass(frozen=True)
class MatViewsSettings:
    """Connection and timing settings shared by every interface.

    ``dsn`` None: ``MATVIEWS_DSN``, ``DATABASE_URL``, else the embedded Postgres (``core.dsn``).
    ``runs_dsn`` None: the run tables live in the views' database, in ``runs_schema``.
    Timeouts are seconds: ``lock_wait_timeout`` bounds the wait for another operation on the
    same view; ``lock_timeout`` and ``lock_retries`` bound each wait for a table lock readers
    queue behind; ``statement_timeout`` (None: the server's) applies to the work.
    ``application_name`` tags the connections (``pg_stat_activity``). ``database_name`` is the
    database's name in an estate (a ``databases:`` key, ``core/estate.py``): run rows record
    it as ``database_name`` (None: the server's name for the database, ``current_database()``).
    """

    dsn: str | None = None
    runs_dsn: str | None = None
    runs_schema: str = "public"
    lock_wait_timeout: float = 60.0
    lock_timeout: float = 2.0
    lock_retries: int = 5
    statement_timeout: float | None = None
    application_name: str = "matviews"
    database_name: str | None = None

    @property
    def lock_timeout_ms(self) -> int:
        return seconds_to_ms(self.lock_timeout)


DEFAULTS = MatViewsSettings()
"""The defaults every interface starts from (``MatViews``, the resources, ``LockPolicy``)."""
