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
LOST_RETRY_S = 1.0
"""After a sample is lost (no connection could be had), the next try waits this long."""
IDLE_CLOSE_S = 2.0
"""The watcher's connection closes after this long without a hold to watch."""

_SAMPLE = """
    SELECT n.now, l.relation::bigint, l.pid, l.waitstart FROM (SELECT clock_timestamp() AS now) n
    LEFT JOIN pg_locks l ON l.locktype = 'relation' AND NOT l.granted AND l.relation = ANY(%s)
      AND l.pid <> ALL(%s) AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"""
"""The sessions waiting for a lock on the watched relations, and the server's time (always a row)."""


@dataclass
class ReaderWaits:
    """What the sessions waiting on one hold did: ``readers_blocked`` (sessions), their total
    and longest wait in milliseconds; ``samples`` taken (0: the hold was too short to sample)."""

    readers_blocked: int = 0
    reader_wait_ms: int = 0
    reader_wait_max_ms: int = 0
    samples: int = 0
    lost: int = 0
    """Samples that could not be taken (no connection slot, say): with none taken, unknown."""

    def meta(self) -> dict[str, Any]:
        """The run's ``meta["costs"]`` entries; all ``None`` when every sample was lost."""
        unknown = self.lost > 0 and self.samples == 0
        return {
            "readers_blocked": None if unknown else self.readers_blocked,
            "reader_wait_ms": None if unknown else self.reader_wait_ms,
            "reader_wait_max_ms": None if unknown else self.reader_wait_max_ms,
            "reader_samples": self.samples,
            "reader_samples_lost": self.lost,
        }


@dataclass(eq=False)  # each hold is itself: removed by identity, never by equal fields
class _Hold:
    oids: list[int]
    pid: int
    due: float
    interval: float = MIN_INTERVAL_S
    waiters: dict[tuple[int, datetime], tuple[datetime, bool]] = field(default_factory=dict)
    """(pid, waitstart) -> (when it stopped waiting: the last sample's server time that saw it, or
    halfway to the first that did not; whether the last sample saw it)."""
    last_server: datetime | None = None
    last_local: float = 0.0
    samples: int = 0
    lost: int = 0


@dataclass(eq=False)  # each refresh is itself: removed by identity, never by equal counts
class Flight:
    """One refresh in flight: ``overlapped`` counts the other refreshes of the same watcher
    (``Database``) that ran at some moment of it."""

    overlapped: int = 0


class ReaderWatcher:
    """Samples the sessions waiting on views that refreshes hold (``holding`` wraps one hold),
    and knows which refreshes of its ``Database`` run at once (``refreshing``)."""

    def __init__(self, connect: Callable[[], psycopg.Connection]) -> None:
        self._connect = connect
        self._holds: list[_Hold] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._flights: list[Flight] = []

    @contextlib.contextmanager
    def refreshing(self) -> Iterator[Flight]:
        """One refresh, start to end: its ``Flight`` counts the others that overlapped it."""
        flight = Flight()
        with self._cond:
            for other in self._flights:
                other.overlapped += 1
            flight.overlapped = len(self._flights)
            self._flights.append(flight)
        try:
            yield flight
        finally:
            with self._cond:
                self._flights.remove(flight)

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
                if rows is None:  # try again later, not at once: a full server is not hammered
                    hold.lost += 1
                    hold.due = local + LOST_RETRY_S
                    continue
                _record(hold, [row[1:] for row in rows if row[1] in hold.oids], rows[0][0], local)
                hold.due = local + hold.interval
        return conn


def _record(hold: _Hold, rows: list[tuple[Any, ...]], now: datetime, local: float) -> None:
    """One sample of one hold, taken at ``now`` on the server's clock: who waits now (``rows``:
    relation, pid, waitstart); a waiter gone since the last sample stopped halfway between the
    two; the interval shrinks while some wait, grows otherwise."""
    seen = {(pid, waitstart) for _, pid, waitstart in rows if waitstart is not None}
    for key, (last, still) in list(hold.waiters.items()):
        if still and key not in seen:  # gave up, or got the lock, between the two samples
            hold.waiters[key] = (last + (now - last) / 2, False)
    for key in seen:
        hold.waiters[key] = (now, True)
    hold.last_server, hold.last_local = now, local
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
    waits.lost += hold.lost
    for (_, waitstart), (last_seen, still) in hold.waiters.items():
        until_ms = (last_seen - waitstart).total_seconds() * 1000
        if still and hold.last_server is not None:
            until_ms = (hold.last_server - waitstart).total_seconds() * 1000 + (ended - hold.last_local) * 1000
        wait = max(int(until_ms), 0)
        waits.readers_blocked += 1
        waits.reader_wait_ms += wait
        waits.reader_wait_max_ms = max(waits.reader_wait_max_ms, wait)
