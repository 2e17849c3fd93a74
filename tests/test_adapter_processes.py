"""The adapter end to end with real processes: dagster-daemon over Postgres instance storage
(queue backend) and dagster-webserver (graphql backend)."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from conftest import new_database, scalar
from psycopg.conninfo import conninfo_to_dict

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


def url_for(dsn: str) -> str:
    """A SQLAlchemy URL (for dagster-postgres) for a libpq DSN, sockets included."""
    params = conninfo_to_dict(dsn)
    user = quote(params.get("user", "postgres"))
    password = f":{quote(params['password'])}" if params.get("password") else ""
    host = params.get("host", "localhost")
    query = f"?host={quote(host)}" if host.startswith("/") else ""
    netloc = "" if query else host + (f":{params['port']}" if params.get("port") else "")
    if query and params.get("port"):
        query += f"&port={params['port']}"
    return f"postgresql+psycopg2://{user}{password}@{netloc}/{params['dbname']}{query}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


@contextmanager
def background(args: list[str], cwd: Path, env: dict[str, str], log: str) -> Iterator[subprocess.Popen]:
    """A long-running Dagster process for the test, stopped (killed if need be) afterwards."""
    with open(cwd / log, "w") as stderr:
        process = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


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

        def all_refreshed() -> bool:
            return scalar(db, "SELECT count(*) FROM mat_view_refresh_runs WHERE status = 'success'") == 3

        wait_for(all_refreshed, 240, "three refreshes run by the daemon")
        wait_for(
            lambda: scalar(db, "SELECT count(*) FROM mat_view_run_requests WHERE dagster_run_id IS NOT NULL") == 3,
            60,
            "the Dagster run ids on the requests",
        )
        requests = db.execute("SELECT id, status, dagster_run_id FROM mat_view_run_requests ORDER BY id").fetchall()
        assert [r[1] for r in requests] == ["submitted"] * 3
        runs = db.execute(
            "SELECT dagster_run_id, rows_count, started_at, finished_at FROM mat_view_refresh_runs ORDER BY started_at"
        ).fetchall()
        assert {r[0] for r in runs} == {r[2] for r in requests}
        assert [r[1] for r in runs] == [10, 10, 10]
        for earlier, later in itertools.pairwise(runs):
            assert later[2] >= earlier[3], "queue 'heavy' allows one run at a time"

        # a duplicate claim of an already-run request (a second tick, another process): no second run
        db.execute("UPDATE mat_view_run_requests SET status = 'pending' WHERE id = %s", (request_ids[0],))
        wait_for(
            lambda: (
                scalar(db, "SELECT status FROM mat_view_run_requests WHERE id = %s", (request_ids[0],)) == "submitted"
            ),
            60,
            "the sensor to claim the request again",
        )
        time.sleep(5)
        assert scalar(db, "SELECT count(*) FROM mat_view_refresh_runs") == 3
        with psycopg.connect(storage_dsn) as storage:
            tagged = storage.execute(
                "SELECT count(*) FROM run_tags WHERE key = 'matviews/request_id' AND value = %s",
                (str(request_ids[0]),),
            ).fetchone()
        assert tagged == (1,)


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
