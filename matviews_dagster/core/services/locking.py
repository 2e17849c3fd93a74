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
from psycopg import IsolationLevel

from ..catalog import lock_holders
from ..settings import DEFAULTS
from .response import ServiceError

T = TypeVar("T")


@contextmanager
def _isolation(conn: psycopg.Connection, level: IsolationLevel | None) -> Iterator[None]:
    """The isolation level of the transactions begun in the block (``BEGIN ISOLATION LEVEL``)."""
    if level is None:
        yield
        return
    previous = conn.isolation_level
    conn.isolation_level = level
    try:
        yield
    finally:
        if not conn.closed:
            conn.isolation_level = previous


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
    isolation: IsolationLevel | None = None,
    pipeline: bool = True,
) -> tuple[T, int, int]:
    """Run ``work`` in a transaction (``isolation``: default the server's) with
    ``lock_timeout``; retry on lock timeouts. With ``pipeline`` BEGIN, the statements and
    COMMIT travel in one round trip (for work that does not branch on what it reads).

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
            with _isolation(conn, isolation), _pipeline(conn, pipeline), conn.transaction():
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
