"""7. The queue backend at load: many refresh requests from several processes, drained by a real
``dagster-daemon`` (Postgres instance storage, the queued run coordinator of
``examples/dagster.yaml``), from the first enqueue to the last request settled."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from ..data import load_source
from ..harness import ROOT, Bench, Sample, Section, background, table, url_for

VIEWS = 10
WRITERS = 4
LOCATION = '''"""{n} views, the queue sensor ticking every {interval} s."""
from matviews_dagster import build_definitions

defs = build_definitions({path!r}, queue_sensor_interval={interval})
'''
WRITER = """import sys

from matviews_dagster import MatViewsAdapter, RefreshViewJob

adapter = MatViewsAdapter(backend="queue", definitions_path=sys.argv[1])
views = [f"mv_queue_{{i}}" for i in range({views})]
for i in range(int(sys.argv[2])):
    option = ["exact"] if i % 10 == 0 else []  # one request in ten asks for an exact row count
    adapter.enqueue(RefreshViewJob, queue="default", args=[views[i % len(views)], *option])
"""


def _scalar(dsn: str, query: str) -> object:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query).fetchone()
    return row[0] if row else None


def _wait(dsn: str, query: str, expected: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while _scalar(dsn, query) != expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.2)


def _drain(bench: Bench, directory: Path, dsn: str, storage: str, requests: int, interval: int) -> dict[str, float]:
    """One round: a fresh queue, a warm daemon, ``requests`` enqueued by ``WRITERS`` processes."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE mat_view_run_requests, mat_view_refresh_runs, mat_view_queue_consumers")
    (directory / "defs.py").write_text(LOCATION.format(n=VIEWS, interval=interval, path=str(directory / "views.yaml")))
    home = directory / "dagster_home"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir()
    shutil.copy(ROOT / "examples" / "dagster.yaml", home / "dagster.yaml")
    env = bench.env(MATVIEWS_DSN=dsn, DAGSTER_HOME=str(home), DAGSTER_PG_URL=url_for(storage))
    daemon = [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-f", "defs.py"]
    with background(daemon, directory, env, "daemon.log"):
        _wait(dsn, "SELECT count(*) FROM mat_view_queue_consumers", 1, 180, "the queue sensor's first tick")
        share = [requests // WRITERS + (1 if i < requests % WRITERS else 0) for i in range(WRITERS)]
        writer = [sys.executable, "writer.py", str(directory / "views.yaml")]
        writers = [subprocess.Popen([*writer, str(n)], cwd=directory, env=env) for n in share]
        for process in writers:
            if process.wait(300) != 0:
                raise RuntimeError("a writer failed to enqueue")
        unsettled = "SELECT count(*) FROM mat_view_run_requests WHERE status IN ('pending', 'submitted')"
        _wait(dsn, unsettled, 0, 900, "the queue to drain")
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            """SELECT extract(epoch FROM max(finished_at) - min(enqueued_at)),
                      extract(epoch FROM max(enqueued_at) - min(enqueued_at)),
                      count(*) FILTER (WHERE status = 'success'), count(*),
                      count(DISTINCT dagster_run_id)
               FROM mat_view_run_requests"""
        ).fetchone()
        refreshes = conn.execute("SELECT count(*) FROM mat_view_refresh_runs").fetchone()
    assert row is not None and refreshes is not None
    drain_s, enqueue_s, succeeded, total, runs = row
    if succeeded != total or total != requests:
        raise RuntimeError(f"{total - succeeded} of {total} requests did not succeed (expected {requests})")
    return {
        "drain_s": float(drain_s),
        "enqueue_s": float(enqueue_s),
        "runs": float(runs),
        "refreshes": float(refreshes[0]),
    }


def run(bench: Bench) -> Section:
    requests = 20 if bench.smoke else 500
    intervals = (1,) if bench.smoke else (10, 2)
    directory = bench.workdir / "queue"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    (directory / "views.yaml").write_text(
        "views:\n"
        + "".join(
            f"  - name: mv_queue_{i}\n    sql: SELECT id, val FROM bench_source WHERE id % {VIEWS} = {i}\n"
            for i in range(VIEWS)
        )
    )
    (directory / "writer.py").write_text(WRITER.format(views=VIEWS))
    rows, data = [], {}
    with bench.database("queue") as dsn, bench.database("queue_dagster") as storage:
        with psycopg.connect(dsn, autocommit=True) as conn:
            load_source(conn, "bench_source", 1_000)
        from matviews_dagster import MatViews, load_definitions

        with MatViews(dsn=dsn, definitions=load_definitions(directory / "views.yaml")) as mv:
            if not all(result.ok for result in mv.create_many(None)):
                raise RuntimeError("could not create the queue benchmark's views")
        for interval in intervals:
            rounds = [_drain(bench, directory, dsn, storage, requests, interval) for _ in range(bench.repeats)]
            drain = Sample(tuple([r["drain_s"] * 1000 for r in rounds]))
            enqueue = Sample(tuple([r["enqueue_s"] * 1000 for r in rounds]))
            runs = Sample(tuple([r["runs"] for r in rounds]))
            refreshes = Sample(tuple([r["refreshes"] for r in rounds]))
            per_second = requests / (drain.median / 1000)
            rows.append(
                [
                    f"{interval} s",
                    f"{drain.median / 1000:,.1f} ({drain.low / 1000:,.1f}-{drain.high / 1000:,.1f})",
                    f"{enqueue.median / 1000:,.1f}",
                    f"{per_second:,.1f}",
                    f"{runs.median:,.0f} ({runs.low:,.0f}-{runs.high:,.0f})",
                    f"{refreshes.median:,.0f}",
                ]
            )
            data[f"interval_{interval}"] = {
                "drain_ms": drain.as_dict(),
                "enqueue_ms": enqueue.as_dict(),
                "runs": runs.as_dict(),
                "refreshes": refreshes.as_dict(),
                "requests_per_second": per_second,
            }
    header = [
        "sensor interval",
        f"{requests} requests: first enqueue to last settled, s",
        f"enqueueing ({WRITERS} processes), s",
        "requests per second",
        "Dagster runs",
        "view refreshes",
    ]
    markdown = table(header, rows)
    return Section("queue", "The queue backend at load", markdown, {"requests": requests, **data})
