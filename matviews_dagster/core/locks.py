"""One operation per view at a time: a session-level advisory lock per (database, view)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import psycopg

from .names import QualifiedName
from .timing import elapsed_ms, seconds_to_ms

LOCK_NAMESPACE = 0x4D56  # "MV": the first key of every advisory lock this package takes
LOCK_ARGS = "%s, hashtext(%s)"
"""The arguments of every advisory lock call: the namespace, then ``hashtext`` of a name."""


class ViewLockTimeout(Exception):
    """Another operation held the view's lock for longer than the wait allowed."""

    def __init__(self, message: str, waited_ms: int, holder: str | None = None) -> None:
        super().__init__(message)
        self.waited_ms = waited_ms
        self.holder = holder


def lock_holder(conn: psycopg.Connection, name: QualifiedName) -> str | None:
    """``pid N (application 'matviews refresh public.mv')`` of the session holding the lock."""
    row = conn.execute(
        """SELECT l.pid, coalesce(a.application_name, '')
           FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
           WHERE l.locktype = 'advisory' AND l.granted AND l.database = (
                   SELECT oid FROM pg_database WHERE datname = current_database())
             AND l.classid = %s AND l.objid = hashtext(%s)::oid AND l.objsubid = 2""",
        (LOCK_NAMESPACE, str(name)),
    ).fetchone()
    return f"pid {row[0]} (application {row[1]!r})" if row else None


@dataclass(frozen=True)
class HeldLock:
    """The view's lock, held: ``waited_ms`` waiting for it, ``asked_at`` (the server's clock)
    when it was asked for, and whether another operation held it then (``contended``)."""

    waited_ms: int
    asked_at: datetime
    contended: bool


@contextmanager
def view_lock(conn: psycopg.Connection, name: QualifiedName, wait_seconds: float) -> Iterator[HeldLock]:
    """Hold the view's lock for the block.

    The usual case, a free lock, costs one statement (``pg_try_advisory_lock``, which also
    reads the server's clock); only a held lock makes us wait, at most ``wait_seconds``, then
    raise ``ViewLockTimeout`` naming the holder. The lock is tied to the session, so it is
    released if the process dies.
    """
    started = time.monotonic()
    row = conn.execute(
        f"SELECT pg_try_advisory_lock({LOCK_ARGS}), clock_timestamp()", (LOCK_NAMESPACE, str(name))
    ).fetchone()
    assert row is not None
    if not row[0]:
        _wait_for_lock(conn, name, wait_seconds, started)
    held = HeldLock(elapsed_ms(started), row[1], contended=not row[0])
    try:
        yield held
    finally:
        if not conn.broken and not conn.closed:
            conn.execute(f"SELECT pg_advisory_unlock({LOCK_ARGS})", (LOCK_NAMESPACE, str(name)))


def _wait_for_lock(conn: psycopg.Connection, name: QualifiedName, wait_seconds: float, started: float) -> None:
    try:
        conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{max(seconds_to_ms(wait_seconds), 1)}ms",))
        conn.execute(f"SELECT pg_advisory_lock({LOCK_ARGS})", (LOCK_NAMESPACE, str(name)))
    except psycopg.errors.LockNotAvailable:
        waited = elapsed_ms(started)
        holder = None if conn.broken else lock_holder(conn, name)
        raise ViewLockTimeout(
            f"timed out after {wait_seconds:g}s waiting for {name}: another operation holds it", waited, holder
        ) from None
    finally:
        if not conn.broken:
            conn.execute("RESET lock_timeout")
