"""A refresh in progress leaves a trace: its ``running`` row is committed before its statement
runs, on the one-view path and in a batch, and a process killed mid-refresh leaves that row for
the next operation on the view to mark ``failed`` (abandoned). (The Dagster step's path is tested
in ``test_matview_assets``; a queued run runs the same step.)"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import scalar
from test_cli import MATVIEWS, env_for

from matviews_dagster import MatViewDefinition, MatViews

SLOW = MatViewDefinition(
    name="mv_slow", sql="SELECT u.id FROM users u CROSS JOIN (SELECT pg_sleep(s) FROM sleep_seconds) z"
)
YAML = f"views:\n  - name: mv_slow\n    sql: {SLOW.sql}\n  - name: mv_fast\n    sql: SELECT id FROM users\n"


@pytest.mark.parametrize("args", [["refresh", "mv_slow"], ["refresh", "--all"]], ids=["one view", "a batch"])
def test_a_killed_refresh_was_visible_while_it_ran_and_is_abandoned_by_the_next(tmp_path: Path, dsn, db, users, args):
    db.execute("CREATE TABLE sleep_seconds AS SELECT 0::float AS s")
    (tmp_path / "matviews.yaml").write_text(YAML)
    with MatViews(dsn, [SLOW]) as mv:
        assert mv.create("mv_slow").ok
    db.execute("UPDATE sleep_seconds SET s = 30")
    process = subprocess.Popen([MATVIEWS, *args], cwd=tmp_path, env=env_for(dsn), stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not scalar(
            db,
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'REFRESH%%mv_slow%%' "
            "AND datname = current_database()",  # tests of other workers refresh views of that name
        ):
            assert time.monotonic() < deadline, "the refresh never started"
            time.sleep(0.05)
        running = db.execute(
            "SELECT id, (meta ->> 'pid')::int FROM mat_view_refresh_runs WHERE view_name = 'public.mv_slow' "
            "AND status = 'running'"
        ).fetchall()
        assert len(running) == 1 and running[0][1] == process.pid, "the running row is there while it runs"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
    db.execute("UPDATE sleep_seconds SET s = 0")
    with MatViews(dsn, [SLOW]) as mv:
        assert mv.refresh("mv_slow").ok
    status, error = db.execute(
        "SELECT status, error FROM mat_view_refresh_runs WHERE id = %s", (running[0][0],)
    ).fetchone()
    assert status == "failed" and error.startswith("abandoned"), (status, error)
