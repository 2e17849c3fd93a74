"""What a refresh cost the server: WAL written, temporary bytes spilled, shared buffers read and
hit, the view's size before and after, and the rows a concurrent refresh changed.

One reading before the refresh and one after, each one round trip on the connection the
refresh holds (``pg_stat_force_next_flush()``, then one statement of counters, pipelined): the
session's pending statistics reach the shared counters first (PostgreSQL 15+ flushes them when
the session goes idle, at most once a second unless forced). The difference is the refresh's
cost. Where the counters come from depends on the server; ``readings_source`` says which:

- PostgreSQL 18+: the session's own counters (``pg_stat_get_backend_wal``,
  ``pg_stat_get_backend_io``): exactly what this refresh did, however many others run at once.
- before 18: ``pg_current_wal_lsn()`` for WAL and ``pg_stat_database`` for buffers: the
  server's and the database's counters, which include what other sessions did meanwhile (a
  batch refreshing several views at once shares them).

Temporary bytes come from ``pg_stat_database`` everywhere: no per-session counter of temporary
files exists. ``pg_stat_statements`` is not read: its counters are per statement text, and
reading them scans every entry (5.0 ms at 4,851 entries without the texts, 8.7 ms with them,
measured on PostgreSQL 15), more than the 2 ms a reading of a 1,000-row refresh may cost.
Each value is ``None`` when it cannot be known (a counter the role may not read, the size of a
view another session holds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from .names import QualifiedName

SIZE_LOCK_TIMEOUT_MS = 10
"""How long a reading waits to open the view for its size when another session holds it
(another refresh, DDL); past it the size is ``None``. Counters take no lock at all."""

COST_FIELDS = (
    "wal_bytes",
    "temp_bytes",
    "buffers_read",
    "buffers_hit",
    "size_before_bytes",
    "size_after_bytes",
    "rows_changed",
)
"""The readings a refresh's ``meta["costs"]`` holds (bytes, 8 kB buffers, rows); each a run-table
column of the same name (``store/migrations.py``)."""

_SESSION = """(SELECT wal_bytes FROM pg_stat_get_backend_wal(pg_backend_pid())) AS wal, io.read, io.hit"""
_SESSION_IO = """, (SELECT sum(reads) AS read, sum(hits) AS hit FROM pg_stat_get_backend_io(pg_backend_pid())
    WHERE object = 'relation') io"""
_DATABASE = """pg_current_wal_lsn() - '0/0'::pg_lsn AS wal,
    pg_stat_get_db_blocks_fetched(d.oid) - pg_stat_get_db_blocks_hit(d.oid), pg_stat_get_db_blocks_hit(d.oid)"""
_READING = """SELECT {counters}, pg_stat_get_db_temp_bytes(d.oid), {size},
    pg_stat_get_tuples_inserted(r.oid) + pg_stat_get_tuples_deleted(r.oid),
    pg_stat_get_numscans(r.oid) + (SELECT coalesce(sum(pg_stat_get_numscans(indexrelid)), 0) FROM pg_index
                                    WHERE indrelid = r.oid)
    FROM pg_database d, (SELECT to_regclass(%(rel)s) AS oid) r{join} WHERE d.datname = current_database()"""
_SIZE = """CASE WHEN set_config('lock_timeout', %(timeout)s, true) IS NOT NULL THEN pg_total_relation_size(r.oid) END"""
"""The view's size: it opens the view (ACCESS SHARE), so the reading, its own transaction, waits
at most ``SIZE_LOCK_TIMEOUT_MS`` for it (``set_config`` is evaluated first, by the ``CASE``)."""


@dataclass(frozen=True)
class Sources:
    """Which counters a server's readings use (``readings_source`` in the run's meta)."""

    wal: str
    buffers: str

    @classmethod
    def of(cls, conn: psycopg.Connection) -> Sources:
        if conn.info.server_version >= 180000:
            return cls("pg_stat_get_backend_wal", "pg_stat_get_backend_io")
        return cls("pg_current_wal_lsn", "pg_stat_database")


@dataclass(frozen=True)
class Reading:
    """The counters at one moment: WAL position or bytes, buffers, temporary bytes, the view's
    size (``None`` when it does not exist), its rows inserted plus deleted, and the scans of it
    (``pg_stat_all_tables``: sequential plus index scans, every session's)."""

    wal: int | None
    buffers_read: int | None
    buffers_hit: int | None
    temp_bytes: int | None
    size: int | None
    tuples: int | None
    scans: int | None


def read(conn: psycopg.Connection, name: QualifiedName) -> Reading | None:
    """The counters now, after flushing this session's pending ones: one round trip (two when
    another session holds the view, whose size is then ``None``); ``None`` when they cannot be
    read (the refresh goes on without them)."""
    try:
        row = _reading(conn, name, sized=True)
    except psycopg.errors.LockNotAvailable:  # another session's refresh or DDL: no size, no wait
        try:
            row = _reading(conn, name, sized=False)
        except psycopg.Error:
            return None
    except psycopg.Error:
        return None
    if row is None:
        return None
    return Reading(*(_int(value) for value in row))


def _reading(conn: psycopg.Connection, name: QualifiedName, *, sized: bool) -> tuple[Any, ...] | None:
    session = Sources.of(conn).wal == "pg_stat_get_backend_wal"
    query = sql.SQL(_READING).format(
        size=sql.SQL(_SIZE if sized else "NULL"),
        counters=sql.SQL(_SESSION if session else _DATABASE),
        join=sql.SQL(_SESSION_IO if session else ""),
    )
    params = {"rel": name.identifier.as_string(conn), "timeout": f"{SIZE_LOCK_TIMEOUT_MS}ms"}
    with conn.pipeline() as pipeline:
        if conn.info.server_version >= 150000:
            conn.execute("SELECT pg_stat_force_next_flush()")
            pipeline.sync()
        cursor = conn.execute(query, params)
    return cursor.fetchone()


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def costs(before: Reading | None, after: Reading | None, *, rows_known: bool, server: Sources) -> dict[str, Any]:
    """The ``meta`` a refresh records: ``costs`` (``COST_FIELDS``, each ``None`` where unknown;
    ``view_scans_before`` / ``_after``, the scans counter either side, whose difference between
    two refreshes is how often the view was read meanwhile) and ``readings_source`` (``wal``,
    ``buffers``, ``temp``); ``rows_known``: the strategy's rows written are its changes
    (``concurrent``: the diff it applied, rows deleted plus inserted)."""
    if before is None or after is None:
        return {"costs": dict.fromkeys((*COST_FIELDS, "view_scans_before", "view_scans_after"))}

    def delta(now: int | None, then: int | None) -> int | None:
        return None if now is None or then is None else max(now - then, 0)

    values = {
        "wal_bytes": delta(after.wal, before.wal),
        "temp_bytes": delta(after.temp_bytes, before.temp_bytes),
        "buffers_read": delta(after.buffers_read, before.buffers_read),
        "buffers_hit": delta(after.buffers_hit, before.buffers_hit),
        "size_before_bytes": before.size,
        "size_after_bytes": after.size,
        "rows_changed": delta(after.tuples, before.tuples) if rows_known else None,
        "view_scans_before": before.scans,
        "view_scans_after": after.scans,
    }
    described = {"wal": server.wal, "buffers": server.buffers, "temp": "pg_stat_database"}
    return {"costs": values, "readings_source": described}
