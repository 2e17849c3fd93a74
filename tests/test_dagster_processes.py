"""The demo and the executor through the real `dagster` CLI, in subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from conftest import scalar

ROOT = Path(__file__).resolve().parent.parent
DAGSTER = str(Path(sys.executable).with_name("dagster"))

PARALLEL = """
from matviews_dagster import MatViewDefinition, build_definitions

slow = "SELECT u.id FROM users u CROSS JOIN (SELECT pg_sleep(2)) z"
defs = build_definitions([
    MatViewDefinition(name="mv_a", sql=slow),
    MatViewDefinition(name="mv_b", sql=slow),
    MatViewDefinition(name="mv_after_a", sql="SELECT id FROM mv_a"),
], max_parallel={max_parallel})
"""


def environment(dsn: str, home: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DAGSTER_HOME")}
    env["MATVIEWS_DSN"] = dsn
    if home:
        env["DAGSTER_HOME"] = str(home)
    return env


def dagster(args: list[str], dsn: str, cwd: Path, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DAGSTER, *args], cwd=cwd, env=environment(dsn, home), capture_output=True, text=True, timeout=300
    )


def overlap(a: tuple, b: tuple) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def create_windows(db: psycopg.Connection) -> dict[str, tuple]:
    rows = db.execute("SELECT view_name, started_at, finished_at FROM mat_view_create_runs").fetchall()
    return {row[0].split(".")[1]: (row[1], row[2]) for row in rows}


def test_definitions_validate(dsn: str) -> None:
    done = dagster(["definitions", "validate", "-f", "definitions.py"], dsn, ROOT)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_headless_demo_materializes_everything(dsn: str, db: psycopg.Connection) -> None:
    done = dagster(["asset", "materialize", "-f", "definitions.py", "--select", "*"], dsn, ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert scalar(db, "SELECT count(*) FROM pg_matviews WHERE ispopulated") == 5
    assert scalar(db, "SELECT count(*) FROM mat_view_refresh_runs WHERE status = 'success'") == 5
    assert scalar(db, "SELECT count(*) FROM users") == 500
    ours = [
        line
        for line in done.stderr.splitlines()
        if "Warning" in line
        and any(s in line for s in ("matviews_dagster", "owners", "XDG_RUNTIME_DIR", "dagster_run is deprecated"))
    ]
    assert ours == [], "no warning from our code, nor the ones Dagster raised about our sensor and resources"


@pytest.mark.slow
def test_independent_views_run_in_parallel_and_dependents_after(dsn, db, users, tmp_path) -> None:
    (tmp_path / "defs.py").write_text(PARALLEL.format(max_parallel=4))
    done = dagster(["asset", "materialize", "-f", "defs.py", "--select", "*"], dsn, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    windows = create_windows(db)
    a, b, after = windows["mv_a"], windows["mv_b"], windows["mv_after_a"]
    assert overlap(a, b), f"mv_a {a} and mv_b {b} did not overlap"
    assert after[0] >= a[1], "a dependent view was built before its upstream finished"


@pytest.mark.slow
def test_max_parallel_one_refreshes_views_one_at_a_time(dsn, db, users, tmp_path) -> None:
    (tmp_path / "defs.py").write_text(PARALLEL.format(max_parallel=1))
    done = dagster(["asset", "materialize", "-f", "defs.py", "--select", "public/mv_a,public/mv_b"], dsn, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    windows = create_windows(db)
    assert not overlap(windows["mv_a"], windows["mv_b"]), f"max_parallel 1 but {windows} overlapped"


@pytest.mark.slow
def test_pool_limit_serializes_runs(dsn, db, users, tmp_path) -> None:
    """Two runs at once, each refreshing one view: with the pool's limit at 1, their steps
    take turns; the views of one step are bounded by max_parallel instead."""
    (tmp_path / "defs.py").write_text(PARALLEL.format(max_parallel=4))
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("concurrency:\n  pools:\n    default_limit: 1\n")
    migrated = dagster(["instance", "migrate"], dsn, tmp_path, home)  # storage first, not raced by two runs
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    runs = [
        subprocess.Popen(
            [DAGSTER, "asset", "materialize", "-f", "defs.py", "--select", f"public/{view}"],
            cwd=tmp_path,
            env=environment(dsn, home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for view in ("mv_a", "mv_b")
    ]
    for run in runs:
        _, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr[-3000:]
    windows = create_windows(db)
    assert not overlap(windows["mv_a"], windows["mv_b"]), f"pool limit 1 but {windows} overlapped"


@pytest.mark.slow
def test_a_view_and_what_is_built_on_it_by_selection(dsn, db, users, tmp_path) -> None:
    """The documented selection for "this view and its downstream views": ``key*``."""
    (tmp_path / "defs.py").write_text(PARALLEL.format(max_parallel=4))
    done = dagster(["asset", "materialize", "-f", "defs.py", "--select", "public/mv_a*"], dsn, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert set(create_windows(db)) == {"mv_a", "mv_after_a"}
