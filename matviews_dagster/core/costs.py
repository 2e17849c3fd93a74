"""What a refresh cost the server: WAL written, temporary bytes spilled, shared buffers read and
hit, the view's size before and after, and the rows a concurrent refresh changed.

One reading before the refresh and one after, each one round trip on the connection the
refresh holds (``pg_stat_force_next_flush()``, then the counters, pipelined): the session's
pending statistics reach the shared counters first (PostgreSQL 15+ flushes them when the
session goes idle, at most once a second unless forced). The difference is the refresh's cost.

Where the counters come from depends on the server, and ``readings_source`` says which:

- PostgreSQL 18+: the session's own counters (``pg_stat_get_backend_wal``,
  ``pg_stat_get_backend_io``): exactly what this refresh did, however many others run at once.
- ``pg_stat_statements``, when the extension is installed and loaded (before PostgreSQL 18, for
  the ``REFRESH`` statement of ``regular`` and ``concurrent``): that statement's own buffers
  and temporary blocks, nested work included.
- otherwise ``pg_stat_database`` for buffers and temporary bytes, and ``pg_current_wal_lsn()``
  for WAL: whole-database and whole-server counters, which include what other sessions did
  meanwhile (a batch refreshing several views at once shares them).

Temporary bytes always come from ``pg_stat_database`` (or ``pg_stat_statements``): no
per-session counter of temporary files exists. Each value is ``None`` when it cannot be
known (a view swapped away, a counter the role may not read).
"""

from __future__ import annotations

import contextlib
import weakref
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

_SESSION = """
    (SELECT wal_bytes FROM pg_stat_get_backend_wal(pg_backend_pid())) AS wal,
    (SELECT sum(reads) FROM pg_stat_get_backend_io(pg_backend_pid()) WHERE object = 'relation') AS buffers_read,
    (SELECT sum(hits) FROM pg_stat_get_backend_io(pg_backend_pid()) WHERE object = 'relation') AS buffers_hit,"""
_DATABASE = """
    pg_current_wal_lsn() - '0/0'::pg_lsn AS wal, d.blks_read AS buffers_read, d.blks_hit AS buffers_hit,"""


@dataclass(frozen=True)
class Sources:
    """Which counters a connection's readings use (``readings_source`` in the run's meta)."""

    wal: str
    buffers: str
    statements: sql.Composable | None  # pg_stat_statements, schema-qualified, when used


_SOURCES: weakref.WeakKeyDictionary[psycopg.Connection, Sources] = weakref.WeakKeyDictionary()


def sources(conn: psycopg.Connection) -> Sources:
    """The counters this server offers (read once per connection)."""
    found = _SOURCES.get(conn)
    if found is not None:
        return found
    if conn.info.server_version >= 180000:
        found = Sources("pg_stat_get_backend_wal", "pg_stat_get_backend_io", None)
    else:
        statements = None
        try:  # installed in this database, and loaded (else reading it raises)
            row = conn.execute(
                "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
                "WHERE e.extname = 'pg_stat_statements'"
            ).fetchone()
            if row is not None:
                statements = sql.Identifier(row[0], "pg_stat_statements")
                conn.execute(
                    sql.SQL("SELECT dealloc FROM {}").format(sql.Identifier(row[0], "pg_stat_statements_info"))
                )
        except psycopg.Error:
            statements = None
        found = Sources("pg_current_wal_lsn", "pg_stat_statements" if statements else "pg_stat_database", statements)
    _SOURCES[conn] = found
    return found


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


def read(conn: psycopg.Connection, name: QualifiedName, statement: str | None = None) -> Reading | None:
    """The counters now, after flushing this session's pending ones; ``statement`` (a text
    ``pg_stat_statements`` may know) has its buffers read from there when that is the source.
    ``None`` when they cannot be read (the refresh goes on without them)."""
    try:
        source = sources(conn)
    except psycopg.Error:
        return None
    relation = name.identifier.as_string(conn)
    per_statement = source.statements is not None and statement is not None
    query = sql.SQL(
        "SELECT {counters} d.temp_bytes, "
        "pg_stat_get_tuples_inserted(to_regclass(%(rel)s)) + pg_stat_get_tuples_deleted(to_regclass(%(rel)s)) "
        "AS tuples, (SELECT seq_scan + coalesce(idx_scan, 0) FROM pg_stat_all_tables "
        "WHERE relid = to_regclass(%(rel)s)) AS scans{columns} "
        "FROM pg_stat_database d{join} WHERE d.datname = current_database()"
    ).format(
        counters=sql.SQL(_SESSION if source.wal == "pg_stat_get_backend_wal" else _DATABASE),
        columns=sql.SQL(", s.read, s.hit, s.temp * current_setting('block_size')::bigint" if per_statement else ""),
        join=sql.SQL(_STATEMENT).format(source.statements) if per_statement else sql.SQL(""),
    )
    sized: psycopg.Cursor | None = None
    try:
        with conn.pipeline() as pipeline:  # one round trip
            if conn.info.server_version >= 150000:
                conn.execute("SELECT pg_stat_force_next_flush()")
                pipeline.sync()
            cursor = conn.execute(query, {"rel": relation, "statement": statement})
            pipeline.sync()
            with contextlib.suppress(psycopg.errors.LockNotAvailable), conn.transaction():
                # the size opens the relation (ACCESS SHARE): behind another session's refresh it is
                # not known, rather than waited for
                conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{SIZE_LOCK_TIMEOUT_MS}ms",))
                sized = conn.execute("SELECT pg_total_relation_size(to_regclass(%s))", (relation,))
        row = cursor.fetchone()
        size = sized.fetchone() if sized is not None else None
    except psycopg.Error:
        return None
    if row is None:
        return None
    wal, buffers_read, buffers_hit, temp_bytes, tuples, scans, *statement_row = row
    size = size[0] if size else None
    if statement_row:  # pg_stat_statements: the statement's own blocks (0 before its first call)
        buffers_read, buffers_hit, temp_bytes = (int(value or 0) for value in statement_row)
    return Reading(
        _int(wal), _int(buffers_read), _int(buffers_hit), _int(temp_bytes), _int(size), _int(tuples), _int(scans)
    )


_STATEMENT = """, (SELECT sum(shared_blks_read) AS read, sum(shared_blks_hit) AS hit, sum(temp_blks_written) AS temp
    FROM {} WHERE query = %(statement)s AND toplevel AND userid = current_user::regrole
      AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())) s"""


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def costs(
    conn: psycopg.Connection, before: Reading | None, after: Reading | None, *, rows_known: bool, statement: bool
) -> dict[str, Any]:
    """The ``meta`` a refresh records: ``costs`` (``COST_FIELDS``, each ``None`` where unknown;
    ``view_scans_before`` / ``_after``, the scans counter either side, whose difference between
    two refreshes is how often the view was read meanwhile) and ``readings_source``;
    ``rows_known``: the strategy's rows written are its changes (``concurrent``: the diff it
    applied, rows deleted plus inserted); ``statement``: ``pg_stat_statements`` was read."""
    if before is None or after is None:
        return {"costs": dict.fromkeys((*COST_FIELDS, "view_scans_before", "view_scans_after"))}
    source = sources(conn)

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
    described = {"wal": source.wal, "buffers": source.buffers, "temp": "pg_stat_database"}
    if source.statements is not None:  # a swap's many statements: the database's counters
        described["buffers"] = described["temp"] = "pg_stat_statements" if statement else "pg_stat_database"
    return {"costs": values, "readings_source": described}
