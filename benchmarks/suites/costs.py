"""12. What the cost readings and the reader watcher add to a refresh: one ``regular`` view of
1,000 and of 1,000,000 rows refreshed with them and without them (what the release before did:
no readings, no watcher), alternating in the same run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from matviews_dagster import MatViews
from matviews_dagster.core import costs

from ..data import load_source, view
from ..harness import Bench, Section, interleaved, ratio, table


@contextmanager
def _without_readings(mv: MatViews) -> Iterator[None]:
    """Refreshes as before the readings: ``costs.read`` reads nothing, no watcher."""
    read, watcher = costs.read, mv.db.readers
    costs.read = lambda *args, **kwargs: None  # type: ignore[assignment]
    mv.db.readers = None  # type: ignore[assignment]
    try:
        yield
    finally:
        costs.read, mv.db.readers = read, watcher  # type: ignore[assignment]


def run(bench: Bench) -> Section:
    sizes = (1_000, 20_000) if bench.smoke else (1_000, 1_000_000)
    results: list[dict[str, Any]] = []
    with bench.database("costs") as dsn:
        for rows in sizes:
            table_name = f"facts_{rows}"
            with psycopg.connect(dsn, autocommit=True) as conn:
                load_source(conn, table_name, rows)
            definition = view(f"mv_{rows}", table_name, "regular")
            with MatViews(dsn=dsn, definitions=[definition]) as mv:
                assert mv.create(definition.name).ok

                def measured(mv: MatViews = mv, name: str = definition.name) -> None:
                    assert mv.refresh(name).ok

                def unmeasured(mv: MatViews = mv, name: str = definition.name) -> None:
                    with _without_readings(mv):
                        assert mv.refresh(name).ok

                repeats = bench.repeats * (4 if rows <= 1_000 else 1)  # small ones: more runs, steadier medians
                samples = interleaved({"on": measured, "off": unmeasured}, repeats)
            on, off = samples["on"], samples["off"]
            results.append(
                {"rows": rows, "on": on, "off": off, "added_ms": on.median - off.median, "ratio": ratio(on, off)}
            )
    markdown = table(
        ["view rows", "refresh, readings on, ms", "readings off, ms", "added ms (medians)", "on / off"],
        [
            [f"{r['rows']:,}", r["on"].cell(2), r["off"].cell(2), f"{r['added_ms']:+.2f}", f"{r['ratio']:.3f}"]
            for r in results
        ],
    )
    data = [{**r, "on": r["on"].as_dict(), "off": r["off"].as_dict()} for r in results]
    return Section("costs", "What the readings cost", markdown, {"results": data})
