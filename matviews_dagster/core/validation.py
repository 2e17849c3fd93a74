"""Validation of a view (``matviews validate``): is reading the view faster than running its
query, and do both return the same rows?"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from psycopg import sql

from .definition import MatViewDefinition
from .services.binding import bind_search_path, query_statement


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


def _time_reads(conn: psycopg.Connection, statement: sql.Composable, iterations: int) -> tuple[Timing, int]:
    durations = []
    rows = 0
    for _ in range(iterations):
        started = time.perf_counter()
        rows = len(conn.execute(statement).fetchall())
        durations.append((time.perf_counter() - started) * 1000)
    return Timing(min(durations), statistics.median(durations), max(durations)), rows


def _fingerprint(conn: psycopg.Connection, relation: sql.Composable) -> tuple[int, str | None]:
    """Row count and an order-independent digest of the rows (as text): a multiset fingerprint."""
    row = conn.execute(
        sql.SQL("SELECT count(*), md5(string_agg(r::text, E'\\n' ORDER BY r::text)) FROM {} r").format(relation)
    ).fetchone()
    assert row is not None
    return int(row[0]), row[1]


def validate_view(conn: psycopg.Connection, definition: MatViewDefinition, iterations: int = 5) -> ValidationResult:
    """Time ``iterations`` reads of the defining query and of the view; compare their rows."""
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    view = sql.SQL("SELECT * FROM {}").format(definition.qualified.identifier)
    with conn.transaction():  # the query's names bound as at create; nothing is written
        bind_search_path(conn, definition)
        query_timing, query_rows = _time_reads(conn, query_statement(definition), iterations)
        view_timing, view_rows = _time_reads(conn, view, iterations)
        query_print = _fingerprint(conn, sql.SQL("(\n{}\n)").format(sql.SQL(definition.sql)))
        view_print = _fingerprint(conn, definition.qualified.identifier)
    matches = query_print == view_print
    return ValidationResult(definition.name, iterations, query_rows, view_rows, query_timing, view_timing, matches)
