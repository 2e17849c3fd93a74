"""What the cost readings and the reader watcher add to a refresh: ``matviews refresh`` of one
``regular`` view of 1,000 and of 1,000,000 rows, with the readings on and off, alternating in
the same run (``python -m benchmarks.refresh_costs DSN [--repeats N]``). Off means what the
release before did: no readings (``costs.read`` returns nothing) and no watcher."""

from __future__ import annotations

import argparse
import statistics
import time

import psycopg

from matviews_dagster import MatViewDefinition, MatViews
from matviews_dagster.core import costs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dsn")
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS bench_costs CASCADE; CREATE SCHEMA bench_costs")
        for rows in (1_000, 1_000_000):
            conn.execute(
                f"CREATE TABLE bench_costs.src_{rows} AS "
                f"SELECT g AS id, md5(g::text) AS v FROM generate_series(1, {rows}) g"
            )
    read = costs.read
    for rows in (1_000, 1_000_000):
        name = f"bench_costs.mv_{rows}"
        definition = MatViewDefinition(name=name, sql=f"SELECT id, v FROM bench_costs.src_{rows}")
        with MatViews(args.dsn, [definition]) as mv:
            assert mv.create(name).ok
            watcher = mv.db.readers
            timings: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(args.repeats):
                for on in (True, False):
                    costs.read = read if on else (lambda *a, **k: None)  # type: ignore[assignment]
                    mv.db.readers = watcher if on else None  # type: ignore[assignment]
                    started = time.perf_counter()
                    assert mv.refresh(name).ok
                    timings[on].append((time.perf_counter() - started) * 1000)
            costs.read = read  # type: ignore[assignment]
            mv.db.readers = watcher
        on, off = statistics.median(timings[True]), statistics.median(timings[False])
        print(f"{rows:>9,} rows: on {on:.2f} ms, off {off:.2f} ms, added {on - off:+.2f} ms ({on / off:.3f}x)")


if __name__ == "__main__":
    main()
