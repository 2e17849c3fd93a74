"""The one way to open a connection: autocommit, tagged, bounded, and a password never shown."""

from __future__ import annotations

from typing import Any

import psycopg

from .dsn import mask_dsn, scrub

CONNECT_TIMEOUT_SECONDS = 10


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached (or the DSN is not one); nothing was executed."""


def connect(dsn: str, application_name: str, **options: Any) -> psycopg.Connection[Any]:
    """An autocommit connection tagged with ``application_name`` (at most 63 bytes, as Postgres
    keeps), giving up after 10 seconds. ``options`` go to ``psycopg.connect`` (e.g.
    ``row_factory``). Raises ``DatabaseUnavailable`` with the DSN's password masked."""
    try:
        return psycopg.connect(
            dsn,
            autocommit=True,
            application_name=application_name[:63],
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            **options,
        )
    except psycopg.Error as exc:
        text = str(exc).strip()
        first_line = scrub(text.splitlines()[0] if text else type(exc).__name__, dsn)
        raise DatabaseUnavailable(f"cannot connect to {mask_dsn(dsn)}: {first_line}") from None
