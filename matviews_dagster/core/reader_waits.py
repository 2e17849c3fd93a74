"""Whom a refresh blocks: the sessions that waited for a lock on the view while the refresh held
(or queued for) its strongest lock, and for how long.

A ``ReaderWatcher`` samples ``pg_locks`` on a connection of its own, one per ``Database`` (so
one per batch, however many views refresh at once), from one thread. A hold shorter than
``FIRST_SAMPLE_S`` costs nothing: no connection, no statement. Past it the hold is sampled
every ``MIN_INTERVAL_S`` (at most 20 samples a second) while sessions wait, the interval
growing to ``MAX_INTERVAL_S`` while none do. A waiter's wait runs from its ``waitstart``
(``pg_locks``, PostgreSQL 14+) to the hold's end when it still waited at the last sample,
else to the last sample that saw it; both on the server's clock.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from .connection import DatabaseUnavailable

FIRST_SAMPLE_S = 0.05
MIN_INTERVAL_S = 0.05
MAX_INTERVAL_S = 0.25
IDLE_CLOSE_S = 2.0
"""The watcher's connection closes after this long without a hold to watch."""

_SAMPLE = """
    SELECT l.relation::bigint, l.pid, l.waitstart, clock_timestamp() FROM pg_locks l
    WHERE l.locktype = 'relation' AND NOT l.granted AND l.relation = ANY(%s) AND l.pid <> ALL(%s)
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"""


@dataclass
class ReaderWaits:
    """What the sessions waiting on one hold did: ``readers_blocked`` (sessions), their total
    and longest wait in milliseconds; ``samples`` taken (0: the hold was too short to sample)."""

    readers_blocked: int = 0
    reader_wait_ms: int = 0
    reader_wait_max_ms: int = 0
    samples: int = 0

    def meta(self) -> dict[str, Any]:
        return {
            "readers_blocked": self.readers_blocked,
            "reader_wait_ms": self.reader_wait_ms,
            "reader_wait_max_ms": self.reader_wait_max_ms,
            "reader_samples": self.samples,
        }


@dataclass
class _Hold:
    oids: list[int]
    pid: int
    due: float
    interval: float = MIN_INTERVAL_S
    waiters: dict[tuple[int, datetime], tuple[datetime, bool]] = field(default_factory=dict)
    """(pid, waitstart) -> (the last sample's server time that saw it, seen by the last sample)."""
    last_server: datetime | None = None
    last_local: float = 0.0
    samples: int = 0


class ReaderWatcher:
    """Samples the sessions waiting on views that refreshes hold; ``holding`` wraps one hold."""

    def __init__(self, connect: Callable[[], psycopg.Connection]) -> None:
        self._connect = connect
        self._holds: list[_Hold] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    @contextlib.contextmanager
    def holding(self, oids: list[int], pid: int, waits: ReaderWaits) -> Iterator[None]:
        """Watch the sessions waiting on ``oids`` (the view's relations) while the block runs on
        the refresh's backend ``pid``; what they waited is added to ``waits`` when it ends."""
        hold = _Hold(oids, pid, due=time.monotonic() + FIRST_SAMPLE_S)
        with self._cond:
            self._holds.append(hold)
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="matviews reader watcher", daemon=True)
                self._thread.start()
            self._cond.notify()
        try:
            yield
        finally:
            ended = time.monotonic()
            with self._cond:
                self._holds.remove(hold)
                _summarize(hold, ended, waits)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)

    def _run(self) -> None:
        conn: psycopg.Connection | None = None  # this thread's own, opened at its first sample
        try:
            while True:
                with self._cond:
                    due = self._wait_for_due()
                    if due is None:  # still under the condition: a new hold starts a new thread
                        self._thread = None
                        return
                conn = self._sample(conn, due)
        finally:
            with self._cond:
                if self._thread is threading.current_thread():  # an unexpected error ended it
                    self._thread = None
            if conn is not None:
                with contextlib.suppress(psycopg.Error):
                    conn.close()

    def _wait_for_due(self) -> list[_Hold] | None:
        """Under the condition: the holds due for a sample, or None when the watcher closes (or
        has had nothing to watch for ``IDLE_CLOSE_S``)."""
        idle_since = time.monotonic()
        while not self._closed:
            now = time.monotonic()
            if not self._holds:
                if now - idle_since > IDLE_CLOSE_S:
                    return None
                self._cond.wait(IDLE_CLOSE_S)
                continue
            idle_since = now
            due = [hold for hold in self._holds if hold.due <= now]
            if due:
                return due
            self._cond.wait(min(hold.due for hold in self._holds) - now)
        return None

    def _sample(self, conn: psycopg.Connection | None, holds: list[_Hold]) -> psycopg.Connection | None:
        """One sample of ``holds`` on ``conn`` (opened when None or closed); the connection to use
        next, None after an error (the next sample opens another)."""
        rows: list[tuple[Any, ...]] | None
        try:
            if conn is None or conn.closed:
                conn = self._connect()
            rows = conn.execute(
                _SAMPLE, ([oid for hold in holds for oid in hold.oids], [hold.pid for hold in holds])
            ).fetchall()
        except (psycopg.Error, DatabaseUnavailable):  # e.g. no connection slot free: a sample lost
            rows = None
            if conn is not None:
                with contextlib.suppress(psycopg.Error):
                    conn.close()
            conn = None
        local = time.monotonic()
        with self._cond:
            for hold in holds:
                if rows is not None:
                    _record(hold, [row for row in rows if row[0] in hold.oids], local)
                hold.due = local + hold.interval
        return conn


def _record(hold: _Hold, rows: list[tuple[Any, ...]], local: float) -> None:
    """One sample of one hold: who waits now; the interval shrinks while some do, grows otherwise."""
    seen = {(pid, waitstart): server for _, pid, waitstart, server in rows if waitstart is not None}
    for key, (last, _) in list(hold.waiters.items()):
        hold.waiters[key] = (last, False)
    for key, server in seen.items():
        hold.waiters[key] = (server, True)
    if rows:
        hold.last_server, hold.last_local = rows[0][3], local
    elif hold.waiters:
        hold.last_server = None
    hold.samples += 1
    hold.interval = MIN_INTERVAL_S if seen else min(hold.interval * 1.5, MAX_INTERVAL_S)


def watched(
    readers: ReaderWatcher | None, conn: psycopg.Connection, oids: list[int], waits: ReaderWaits | None
) -> contextlib.AbstractContextManager[None]:
    """A lock-holding block of ``conn``'s refresh, watched by ``readers`` into ``waits``
    (nothing when either is None)."""
    if readers is None or waits is None:
        return contextlib.nullcontext()
    return readers.holding(oids, conn.info.backend_pid, waits)


def _summarize(hold: _Hold, ended: float, waits: ReaderWaits) -> None:
    """Add the waits of a hold that has ended: a waiter the last sample saw waited until the end."""
    waits.samples += hold.samples
    for (_, waitstart), (last_seen, still) in hold.waiters.items():
        until_ms = (last_seen - waitstart).total_seconds() * 1000
        if still and hold.last_server is not None:
            until_ms = (hold.last_server - waitstart).total_seconds() * 1000 + (ended - hold.last_local) * 1000
        wait = max(int(until_ms), 0)
        waits.readers_blocked += 1
        waits.reader_wait_ms += wait
        waits.reader_wait_max_ms = max(waits.reader_wait_max_ms, wait)
