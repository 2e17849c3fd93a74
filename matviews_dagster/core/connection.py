"""The one way to open a connection: autocommit, tagged, bounded, and a password never shown."""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg

from .dsn import UnsetVariable, expand_env, mask_dsn, scrub

CONNECT_TIMEOUT_SECONDS = 10


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached (or the DSN is not one); nothing was executed.
    ``limit_reached``: the server answered, but no connection slot was free (its
    ``max_connections``, or the role's or database's ``CONNECTION LIMIT``)."""

    def __init__(self, message: str, *, limit_reached: bool = False) -> None:
        super().__init__(message)
        self.limit_reached = limit_reached


_LIMITS = ("too many connections", "remaining connection slots are reserved", "sorry, too many clients")


def connect(dsn: str, application_name: str, *, check_client: bool = False, **options: Any) -> psycopg.Connection[Any]:
    """An autocommit connection tagged with ``application_name`` (at most 63 bytes, as Postgres
    keeps), giving up after 10 seconds. ``options`` go to ``psycopg.connect`` (e.g.
    ``row_factory``). With ``check_client`` the server stops its statement within a second of
    this process dying (``client_connection_check_interval``, PostgreSQL 14+; older servers
    leave the run row to be reconciled later). ``${VAR}`` in ``dsn`` is read from the
    environment now (``dsn.expand_env``). Raises ``DatabaseUnavailable`` with the DSN's password
    masked, or naming the unset variable."""
    try:
        expanded = expand_env(dsn)
    except UnsetVariable as exc:
        raise DatabaseUnavailable(f"cannot connect: {exc}") from None
    try:
        conn = psycopg.connect(
            expanded,
            autocommit=True,
            application_name=application_name[:63],
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            **options,
        )
    except psycopg.Error as exc:
        text = str(exc).strip()
        first_line = scrub(text.splitlines()[0] if text else type(exc).__name__, expanded)
        limit = any(words in text for words in _LIMITS)
        raise DatabaseUnavailable(f"cannot connect to {mask_dsn(dsn)}: {first_line}", limit_reached=limit) from None
    if check_client:
        with contextlib.suppress(psycopg.Error):
            conn.execute("SET client_connection_check_interval = '1s'")
    return conn
