"""4. Strategies and availability: refresh time against what readers of the view go through."""

from __future__ import annotations

import random
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from matviews_dagster import MatViews

from ..data import change_rows, load_source, view
from ..harness import Bench, Sample, Section, ratio, table

STRATEGIES = ("regular", "concurrent", "swap")
PERCENTS = (0, 1, 10, 100)


@dataclass
class Reader:
    """A loop of point lookups on the view, on its own connection, while a refresh runs."""

    dsn: str
    view_name: str
    rows: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Reader:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(ready,), daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(60)

    def _loop(self, ready: threading.Event) -> None:
        query = sql.SQL("SELECT val FROM {} WHERE id = %s").format(sql.Identifier(self.view_name))
        randoms = random.Random(7)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(query, (1,))
            ready.set()
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    conn.execute(query, (randoms.randint(1, self.rows),)).fetchone()
                except psycopg.Error as exc:
                    self.errors.append(str(exc).splitlines()[0])
                    if conn.broken:
                        return
                self.latencies_ms.append((time.perf_counter() - started) * 1000)


def _percentile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


def run(bench: Bench) -> Section:
    rows_count = 20_000 if bench.smoke else 1_000_000
    percents = (0, 100) if bench.smoke else PERCENTS
    results: list[dict[str, Any]] = []
    with bench.database("strategies") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            load_source(conn, "facts", rows_count)
        definitions = [view(f"mv_{strategy}", "facts", strategy) for strategy in STRATEGIES]
        with MatViews(dsn=dsn, definitions=definitions) as mv, psycopg.connect(dsn, autocommit=True) as conn:
            for definition in definitions:
                mv.create(definition.name)
            for percent in percents:
                timings: dict[str, list[float]] = {s: [] for s in STRATEGIES}
                latencies: dict[str, list[float]] = {s: [] for s in STRATEGIES}
                errors: dict[str, list[str]] = {s: [] for s in STRATEGIES}
                checks: dict[str, list[float]] = {s: [] for s in STRATEGIES}
                for round_ in range(1 + bench.repeats):
                    change_rows(conn, "facts", percent)  # each view sees `percent` % changed rows
                    for definition in definitions:
                        strategy = definition.refresh_strategy
                        with Reader(dsn, definition.qualified.name, rows_count) as reader:
                            started = time.perf_counter()
                            result = mv.refresh(definition.name)
                            elapsed = (time.perf_counter() - started) * 1000
                        if result.status != "success":
                            raise RuntimeError(f"{strategy} refresh failed: {result.error}")
                        if round_ == 0:
                            continue  # warm-up
                        timings[strategy].append(elapsed)
                        meta = mv.history(kind="refresh", view=definition.name, limit=1)[0]["meta"]
                        if "equality_check_ms" in meta:
                            checks[strategy].append(float(meta["equality_check_ms"]))
                        latencies[strategy] += reader.latencies_ms
                        errors[strategy] += reader.errors
                regular = Sample(tuple(timings["regular"]))
                for strategy in STRATEGIES:
                    sample = Sample(tuple(timings[strategy]))
                    waits = latencies[strategy]
                    results.append(
                        {
                            "percent": percent,
                            "strategy": strategy,
                            "refresh": sample,
                            "vs_regular": ratio(sample, regular),
                            "check": statistics.median(checks[strategy]) if checks[strategy] else None,
                            "reads": len(waits),
                            "p50": _percentile(waits, 0.5),
                            "p99": _percentile(waits, 0.99),
                            "max": max(waits, default=float("nan")),
                            "errors": len(errors[strategy]),
                            "first_error": errors[strategy][0] if errors[strategy] else None,
                        }
                    )
    markdown = table(
        [
            "rows changed",
            "strategy",
            "refresh ms",
            "vs regular",
            "of which equality check ms",
            "reads",
            "read p50 ms",
            "read p99 ms",
            "read max ms",
            "read errors",
        ],
        [
            [
                f"{r['percent']}%",
                r["strategy"],
                r["refresh"].cell(0),
                f"{r['vs_regular']:.2f}",
                "-" if r["check"] is None else f"{r['check']:,.0f}",
                f"{r['reads']:,}",
                f"{r['p50']:.2f}",
                f"{r['p99']:.1f}",
                f"{r['max']:,.1f}",
                r["errors"],
            ]
            for r in results
        ],
    )
    markdown = (
        f"View of {rows_count:,} rows with a unique index; a reader does point lookups by id during each refresh.\n\n"
        + markdown
    )
    data = [{**r, "refresh": r["refresh"].as_dict()} for r in results]
    return Section("strategies", "Strategies and availability", markdown, {"rows": rows_count, "results": data})
