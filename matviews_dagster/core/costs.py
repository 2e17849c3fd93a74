"""What a refresh cost the server: WAL written, temporary bytes spilled, shared buffers read and
hit, the view's size before and after, and the rows a concurrent refresh changed.

One reading before the refresh and one after, each one round trip on the connection the
refresh holds (``pg_stat_force_next_flush()``, then one statement of counters, pipelined): the
session's pending statistics reach the shared counters first (PostgreSQL 15+ flushes them when
the session goes idle, at most once a second unless forced). The difference is the refresh's
cost. Where the counters come from depends on the server; ``readings_source`` says which:

- WAL: on PostgreSQL 18+ the session's own (``pg_stat_get_backend_wal``: exactly what this
  refresh wrote, however many others run at once; a refresh's parallel workers only read);
  before 18 the server's position (``pg_current_wal_lsn()``), which holds what every session
  wrote meanwhile.
- buffers and temporary bytes: the database's (``pg_stat_database``) everywhere. They include
  what the refresh's parallel workers did (which PostgreSQL 18's per-session I/O counters leave
  out: a parallel plan read a fifth of its buffers there) and what other sessions did
  meanwhile; ``overlapped`` counts the other refreshes of the same process that ran meanwhile
  (a batch of several views at once), so a reader of the figures knows they are shared.

``pg_stat_statements`` is not read: its counters are per statement text, and
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

_WAL_SESSION = "(SELECT wal_bytes FROM pg_stat_get_backend_wal(pg_backend_pid()))"
_WAL_SERVER = "pg_current_wal_lsn() - '0/0'::pg_lsn"
_READING = """SELECT {wal}, pg_stat_get_db_blocks_fetched(d.oid) - pg_stat_get_db_blocks_hit(d.oid),
    pg_stat_get_db_blocks_hit(d.oid), pg_stat_get_db_temp_bytes(d.oid), {size},
    pg_stat_get_tuples_inserted(r.oid) + pg_stat_get_tuples_deleted(r.oid),
    pg_stat_get_numscans(r.oid) + (SELECT coalesce(sum(pg_stat_get_numscans(indexrelid)), 0) FROM pg_index
                                    WHERE indrelid = r.oid),
    (SELECT reltuples FROM pg_class WHERE oid = r.oid)
    FROM pg_database d, (SELECT to_regclass(%(rel)s) AS oid) r WHERE d.datname = current_database()"""
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
            return cls("pg_stat_get_backend_wal", "pg_stat_database")
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
    rows_estimate: int | None


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
        size=sql.SQL(_SIZE if sized else "NULL"), wal=sql.SQL(_WAL_SESSION if session else _WAL_SERVER)
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


def costs(
    before: Reading | None, after: Reading | None, *, rows_known: bool, server: Sources, overlapped: int = 0
) -> dict[str, Any]:
    """The ``meta`` a refresh records: ``costs`` (``COST_FIELDS``, each ``None`` where unknown;
    ``view_scans_before`` / ``_after``, the scans counter either side, whose difference between
    two refreshes is how often the view was read meanwhile; ``rows_estimate``, the view's
    ``reltuples`` after; ``overlapped``, how many other refreshes of this process ran meanwhile,
    whose work the server's and the database's counters also hold) and ``readings_source``
    (``wal``, ``buffers``, ``temp``); ``rows_known``: the strategy's rows written are its
    changes (``concurrent``: the diff it applied, rows deleted plus inserted)."""
    if before is None or after is None:
        return {"costs": {**dict.fromkeys(COST_FIELDS), "overlapped": overlapped}}

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
        "rows_estimate": after.rows_estimate if after.rows_estimate is None or after.rows_estimate >= 0 else None,
        "overlapped": overlapped,
    }
    described = {"wal": server.wal, "buffers": server.buffers, "temp": "pg_stat_database"}
    return {"costs": values, "readings_source": described}
