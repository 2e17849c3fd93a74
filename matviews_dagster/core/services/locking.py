"""Short, bounded lock waits: ``lock_timeout`` per attempt and a few retries.

A statement waiting for an ACCESS EXCLUSIVE lock makes every new reader queue behind it, so
waits that touch readers are capped (the Postgres lock-queue problem).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import psycopg

from ..catalog import lock_holders
from ..settings import DEFAULTS
from .response import ServiceError

T = TypeVar("T")


@contextmanager
def _pipeline(conn: psycopg.Connection, wanted: bool) -> Iterator[None]:
    if not wanted:
        yield
        return
    with conn.pipeline():
        yield


@dataclass(frozen=True)
class LockPolicy:
    """``timeout_ms`` per attempt, ``attempts`` in all, ``backoff_ms`` growing between them."""

    timeout_ms: int = DEFAULTS.lock_timeout_ms
    attempts: int = DEFAULTS.lock_retries
    backoff_ms: int = 200


def with_lock_retries(
    conn: psycopg.Connection,
    policy: LockPolicy,
    work: Callable[[], T],
    *,
    what: str,
    oids: list[int],
    pipeline: bool = True,
) -> tuple[T, int, int]:
    """Run ``work`` in a transaction with ``lock_timeout``; retry on lock timeouts. With
    ``pipeline`` BEGIN, the statements and COMMIT travel in one round trip (for work that does
    not branch on what it reads).

    Returns ``(result, attempts, waited_ms)``: ``waited_ms`` is the time the attempts that
    timed out and the pauses between them took (what ``work`` waited within the attempt that
    succeeded only it can tell). When every attempt timed out, raises ``ServiceError`` naming
    the sessions that held the lock.
    """
    holders: list[str] = []
    started = time.monotonic()
    for attempt in range(1, policy.attempts + 1):
        tried = time.monotonic()
        try:
            with _pipeline(conn, pipeline), conn.transaction():
                conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{policy.timeout_ms}ms",))
                result = work()
            return result, attempt, int((tried - started) * 1000)
        except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected):
            holders = lock_holders(conn, oids)
            if attempt < policy.attempts:
                time.sleep(policy.backoff_ms * attempt / 1000)
    raise ServiceError(
        f"could not lock {what}: {policy.attempts} attempts of {policy.timeout_ms} ms timed out; "
        f"held by {', '.join(holders) or 'a session that has since finished'}",
        hint="end the blocking transaction, or retry later; lock_timeout bounds each attempt",
        lock_attempts=policy.attempts,
        lock_holders=holders,
        table_lock_wait_ms=int((time.monotonic() - started) * 1000),
    )


_CONFLICTING_HOLDERS = """
    SELECT EXISTS (
        SELECT 1 FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'relation' AND l.relation = %s AND l.granted AND l.pid <> pg_backend_pid()
          AND l.mode = ANY(%s) AND a.backend_type IS DISTINCT FROM 'autovacuum worker')"""


def wait_until_free(conn: psycopg.Connection, oid: int, modes: tuple[str, ...], policy: LockPolicy) -> int:
    """Wait, holding no lock and no snapshot, while another session holds a lock on relation
    ``oid`` in one of ``modes`` (an autovacuum worker excepted: PostgreSQL cancels it for a
    waiting statement); returns the milliseconds waited. For a statement whose own lock wait
    cannot be timed apart from its work (``REFRESH ... CONCURRENTLY``); bounded by what
    ``policy``'s attempts would wait, after which the statement's attempts say who holds it."""
    started = time.monotonic()
    deadline = started + policy.timeout_ms * policy.attempts / 1000
    pause = 0.02
    while time.monotonic() < deadline:
        row = conn.execute(_CONFLICTING_HOLDERS, (oid, list(modes))).fetchone()
        if not (row and row[0]):
            break
        time.sleep(pause)
        pause = min(pause * 2, 0.2)
    return int((time.monotonic() - started) * 1000)


EXCLUSIVE_CONFLICTS = (
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
)
"""The lock modes ``REFRESH ... CONCURRENTLY`` (``EXCLUSIVE``) waits for on a materialized view
(row-level modes cannot be held on one)."""
