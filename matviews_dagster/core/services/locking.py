"""Short, bounded lock waits: ``lock_timeout`` per attempt and a few retries.

A statement waiting for an ACCESS EXCLUSIVE lock makes every new reader queue behind it, so
waits that touch readers are capped (the Postgres lock-queue problem).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

import psycopg

from ..catalog import lock_holders
from ..settings import DEFAULTS, MatViewsSettings
from ..timing import elapsed_ms
from .response import ServiceError


@dataclass(frozen=True)
class LockPolicy:
    """``timeout_ms`` per attempt, ``attempts`` in all, ``backoff_ms`` growing between them."""

    timeout_ms: int = DEFAULTS.lock_timeout_ms
    attempts: int = DEFAULTS.lock_retries
    backoff_ms: int = 200

    @classmethod
    def of(cls, settings: MatViewsSettings) -> LockPolicy:
        """The policy ``settings`` give (``lock_timeout`` seconds per attempt, ``lock_retries``)."""
        return cls(timeout_ms=settings.lock_timeout_ms, attempts=settings.lock_retries)


class LockAttempt:
    """One attempt of ``lock_attempts``: a transaction (pipelined or not) with ``lock_timeout``,
    entered with ``with attempt:``. A lock timeout (or deadlock) inside it, or surfacing when a
    pipeline syncs, ends the attempt quietly; any other error goes on."""

    def __init__(self, conn: psycopg.Connection, policy: LockPolicy, number: int, pipeline: bool) -> None:
        self.conn, self.policy, self.number, self.pipeline = conn, policy, number, pipeline
        self.succeeded = False
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> LockAttempt:
        if self.pipeline:
            self._stack.enter_context(self.conn.pipeline())
        self._stack.enter_context(self.conn.transaction())
        self.conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{self.policy.timeout_ms}ms",))
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        try:
            self._stack.__exit__(kind, exc, tb)  # commit, or roll back what ``exc`` interrupted
        except _TIMED_OUT:  # surfaced when the pipeline synced
            return kind is None or issubclass(kind, _TIMED_OUT)
        if kind is None:
            self.succeeded = True
            return False
        return issubclass(kind, _TIMED_OUT)


_TIMED_OUT = (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected)


class LockAttempts:
    """Transactions with a short ``lock_timeout``, tried again while a lock wait times out, so a
    statement waiting for a lock never keeps readers queued behind it for long::

        attempts = LockAttempts(conn, policy, what="public.mv", oids=[oid])
        for attempt in attempts:
            with attempt:
                conn.execute(...)

    With ``pipeline`` BEGIN, the statements and COMMIT travel in one round trip (for work that
    does not branch on what it reads). After the loop, ``number`` is the attempt that
    succeeded and ``waited_ms`` the time the attempts that timed out and the pauses between them
    took (what waited within the one that succeeded only its statements can tell). When every
    attempt timed out, iterating raises ``ServiceError`` naming the sessions that held the lock.
    """

    def __init__(
        self, conn: psycopg.Connection, policy: LockPolicy, *, what: str, oids: list[int], pipeline: bool = True
    ) -> None:
        self.conn, self.policy, self.what, self.oids, self.pipeline = conn, policy, what, oids, pipeline
        self.number = 0
        self.waited_ms = 0

    def __iter__(self) -> Iterator[LockAttempt]:
        holders: list[str] = []
        started = time.monotonic()
        for number in range(1, self.policy.attempts + 1):
            tried = time.monotonic()
            attempt = LockAttempt(self.conn, self.policy, number, self.pipeline)
            yield attempt
            if attempt.succeeded:
                self.number, self.waited_ms = number, elapsed_ms(started) - elapsed_ms(tried)
                return
            holders = lock_holders(self.conn, self.oids)
            if number < self.policy.attempts:
                time.sleep(self.policy.backoff_ms * number / 1000)
        raise ServiceError(
            f"could not lock {self.what}: {self.policy.attempts} attempts of {self.policy.timeout_ms} ms timed "
            f"out; held by {', '.join(holders) or 'a session that has since finished'}",
            hint="end the blocking transaction, or retry later; lock_timeout bounds each attempt",
            lock_attempts=self.policy.attempts,
            lock_holders=holders,
            table_lock_wait_ms=elapsed_ms(started),
        )


_CONFLICTING_HOLDERS = """
    SELECT EXISTS (
        SELECT 1 FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'relation' AND l.relation = %s AND l.granted AND l.pid <> pg_backend_pid()
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
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
    return elapsed_ms(started)


EXCLUSIVE_CONFLICTS = (
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
)
"""The lock modes ``REFRESH ... CONCURRENTLY`` (``EXCLUSIVE``) waits for on a materialized view
(row-level modes cannot be held on one)."""
