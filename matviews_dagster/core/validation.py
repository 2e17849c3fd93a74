"""Validation of a view (``matviews validate``): is reading the view faster than running its
query, and do both return the same rows? The query runs with the owner's rights, as ``REFRESH``
runs it, so a view under row-level security is compared with what its owner may see."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from psycopg import sql

from .definition import MatViewDefinition
from .services.binding import bind_search_path, query_statement
from .services.owner_rights import owner_scratch
from .services.statement_log import StatementLog


@dataclass(frozen=True)
class Timing:
    min_ms: float
    median_ms: float
    max_ms: float


@dataclass(frozen=True)
class ValidationResult:
    view: str
    iterations: int
    query_rows: int
    view_rows: int
    query: Timing
    view_read: Timing
    matches: bool

    @property
    def speedup(self) -> float:
        """How many times faster reading the view is than running its query (medians)."""
        return self.query.median_ms / self.view_read.median_ms if self.view_read.median_ms else float("inf")

    def as_row(self) -> dict[str, Any]:
        return {
            "view": self.view,
            "iterations": self.iterations,
            "query_rows": self.query_rows,
            "view_rows": self.view_rows,
            **{f"query_{k}": round(v, 3) for k, v in asdict(self.query).items()},
            **{f"view_{k}": round(v, 3) for k, v in asdict(self.view_read).items()},
            "speedup": round(self.speedup, 2),
            "matches": self.matches,
        }


def _time_reads(
    conn: psycopg.Connection, statement: sql.Composable, iterations: int, *, fetch: bool = True
) -> tuple[Timing, int]:
    durations = []
    rows = 0
    for _ in range(iterations):
        started = time.perf_counter()
        cursor = conn.execute(statement)
        rows = len(cursor.fetchall()) if fetch else 0
        durations.append((time.perf_counter() - started) * 1000)
    return Timing(min(durations), statistics.median(durations), max(durations)), rows


def _fingerprint(conn: psycopg.Connection, relation: sql.Composable) -> tuple[int, str | None]:
    """Row count and an order-independent digest of the rows (as text): a multiset fingerprint."""
    row = conn.execute(
        sql.SQL(  # ROW(r.*), not r: a column named r would be read instead of the row
            "SELECT count(*), md5(string_agg(ROW(r.*)::text, E'\\n' ORDER BY ROW(r.*)::text)) FROM {} r"
        ).format(relation)
    ).fetchone()
    assert row is not None
    return int(row[0]), row[1]


def validate_view(conn: psycopg.Connection, definition: MatViewDefinition, iterations: int = 5) -> ValidationResult:
    """Time ``iterations`` runs of the defining query and reads of the view; compare their rows.

    The query runs with the rights of the view's owner, as ``REFRESH`` runs it
    (``owner_rights``): directly when the role is the owner, else as ``REFRESH`` of a scratch
    view given to the owner (its timing then includes writing the rows), rolled back after.
    Raises ``ServiceError`` (``OwnerRightsRefused``) when the role cannot act for the owner,
    ``ValueError`` for ``iterations`` below 1 or a view that does not exist.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    name = definition.qualified
    view = sql.SQL("SELECT * FROM {}").format(name.identifier)
    with conn.transaction() as transaction:  # the query's names bound as at create; nothing is kept
        bind_search_path(conn, definition)
        row = conn.execute(
            "SELECT pg_get_userbyid(relowner), pg_get_userbyid(relowner) = current_user FROM pg_class "
            "WHERE oid = to_regclass(%s) AND relkind = 'm'",
            (name.identifier.as_string(conn),),
        ).fetchone()
        if row is None:
            raise ValueError(f"{name} does not exist; create it first")
        owner, is_owner = row
        if is_owner:
            query_timing, query_rows = _time_reads(conn, query_statement(definition), iterations)
            query_print = _fingerprint(conn, sql.SQL("(\n{}\n)").format(sql.SQL(definition.sql)))
        else:
            log = StatementLog(conn)
            scratch = owner_scratch(conn, log, name, owner, sql.SQL(definition.sql), what="validate", suffix="mvvalid")
            refresh = sql.SQL("REFRESH MATERIALIZED VIEW {}").format(scratch.identifier)
            query_timing, _ = _time_reads(conn, refresh, iterations, fetch=False)
            query_print = _fingerprint(conn, scratch.identifier)
            query_rows = query_print[0]
        view_timing, view_rows = _time_reads(conn, view, iterations)
        view_print = _fingerprint(conn, name.identifier)
        raise psycopg.Rollback(transaction)
    matches = query_print == view_print
    return ValidationResult(definition.name, iterations, query_rows, view_rows, query_timing, view_timing, matches)
