"""The example of examples/estate_celery, for real: Redis (Debian's redis-server), two celery
workers started with `dagster-celery worker start`, and a single-run backfill of a view
partitioned over 20 tenant schemas in two databases, launched with `dagster asset materialize
--partition-range`. Every tenant's view is refreshed exactly once, and both workers execute
steps (a step per database)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import free_port, new_database

from benchmarks.harness import url_for

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "estate_celery"
BIN = Path(sys.executable).parent
TENANTS = [f"t{n:02d}" for n in range(1, 21)]
WORKER = [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y", "celery.yaml"]
MATERIALIZE = [
    str(BIN / "dagster"),
    "asset",
    "materialize",
    "-f",
    "definitions.py",
    "--select",
    "eu/mv_usage,us/mv_usage",
]

pytestmark = pytest.mark.slow


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(server).exists():
        pytest.fail("redis-server is not installed: apt-get install redis-server (.ci/run installs it)")
    port = free_port()
    options = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    process = subprocess.Popen(
        [server, *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                import redis

                redis.Redis(port=port).ping()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


def tenant_database(conn: psycopg.Connection, events: int) -> None:
    for tenant in TENANTS:
        conn.execute(f"CREATE SCHEMA {tenant}")
        conn.execute(f"CREATE TABLE {tenant}.events (account int)")
        conn.execute(f"INSERT INTO {tenant}.events SELECT g % 4 FROM generate_series(1, {events}) g")


def test_a_backfill_over_tenants_and_two_databases_on_two_celery_workers(
    server_dsn: str, second_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    with new_database(server_dsn, "mveu") as eu, new_database(server_dsn, "mvdagster") as instance_db:
        for dsn, events in ((eu, 8), (second_dsn, 12)):
            with psycopg.connect(dsn, autocommit=True) as conn:
                tenant_database(conn, events)
        home = tmp_path / "dagster_home"
        home.mkdir()
        shutil.copy(EXAMPLE / "dagster.yaml", home / "dagster.yaml")
        env = {
            **{k: v for k, v in os.environ.items() if k not in ("MATVIEWS_DSN", "DATABASE_URL")},
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_URL": url_for(instance_db),
            "EU_DSN": eu,
            "US_DSN": second_dsn,
            "CELERY_BROKER_URL": redis_url,
            "CELERY_BACKEND_URL": redis_url,
            "MATVIEWS_DSN": eu,  # the default connection (the queue's run store): any of the estate's
        }
        workers = [
            subprocess.Popen(
                [*WORKER, "--name", name, "--", "--concurrency=1", "--prefetch-multiplier=1"],
                cwd=EXAMPLE,
                env=env,
                start_new_session=True,  # the worker's celery processes are stopped with it
                stdout=subprocess.DEVNULL,
                stderr=(tmp_path / f"{name}.log").open("w"),
            )
            for name in ("worker-1", "worker-2")
        ]
        try:
            _wait_for_workers(env, 2)
            backfill = subprocess.run(
                [*MATERIALIZE, "--partition-range", f"{TENANTS[0]}...{TENANTS[-1]}"],
                cwd=EXAMPLE,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert backfill.returncode == 0, backfill.stderr[-3000:]
        finally:
            for worker in workers:
                os.killpg(worker.pid, signal.SIGTERM)
            for worker in workers:
                try:
                    worker.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(worker.pid, signal.SIGKILL)
        for dsn, events in ((eu, 8), (second_dsn, 12)):
            with psycopg.connect(dsn) as conn:
                for table in ("mat_view_create_runs", "mat_view_refresh_runs"):  # created by its refresh, once each
                    runs = conn.execute(
                        f"SELECT view_name, count(*) FROM {table} WHERE status = 'success' GROUP BY view_name"
                    ).fetchall()
                    assert sorted(runs) == [(f"{t}.mv_usage", 1) for t in TENANTS], table
                assert conn.execute(
                    "SELECT count(*) FROM mat_view_refresh_runs WHERE status <> 'success'"
                ).fetchone() == (0,)
                totals = {conn.execute(f"SELECT sum(events) FROM {t}.mv_usage").fetchone()[0] for t in TENANTS}
                assert totals == {events}
        with psycopg.connect(instance_db) as conn:
            hosts = conn.execute(
                "SELECT DISTINCT substring(event FROM %s) FROM event_logs "
                "WHERE dagster_event_type = 'ENGINE_EVENT' AND event LIKE '%%in celery worker%%'",
                ['"text": "(worker-[12])@[^"]*"}, "label": "Celery worker"'],
            ).fetchall()
        assert sorted(h for (h,) in hosts if h) == ["worker-1", "worker-2"]


def _wait_for_workers(env: dict[str, str], count: int) -> None:
    """Until ``count`` workers answer celery's ping (each takes a few seconds to import Dagster)."""
    from celery import Celery

    app = Celery(broker=env["CELERY_BROKER_URL"], backend=env["CELERY_BACKEND_URL"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if len(app.control.ping(timeout=1.0) or []) >= count:
            return
        time.sleep(0.5)
    pytest.fail("the celery workers did not start within 120 s")
