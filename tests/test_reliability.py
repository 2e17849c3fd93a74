"""Faults and contention: runaway statements, lock queues, the concurrent NULL trap."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from conftest import scalar

from matviews_dagster import MatViewDefinition

SLOW = MatViewDefinition(
    name="mv_slow",
    sql="SELECT u.id FROM users u CROSS JOIN (SELECT pg_sleep(s) FROM sleep_seconds) z",
    unique_index_columns=["id"],
)


@pytest.mark.parametrize("strategy", ["regular", "concurrent", "swap"])
def test_per_view_statement_timeout_cancels_a_runaway_refresh(make_mv, db, sleepy, strategy) -> None:
    definition = MatViewDefinition.model_validate(
        {**SLOW.model_dump(), "statement_timeout": 0.5, "refresh_strategy": strategy}
    )
    mv = make_mv(definition)
    mv.create("mv_slow")
    sleepy(5)
    started = time.monotonic()
    result = mv.refresh("mv_slow")
    assert time.monotonic() - started < 4
    assert result.status == "failed" and "timeout" in result.error
    assert scalar(db, "SELECT count(*) FROM mv_slow") == 10
    assert scalar(db, "SELECT count(*) FROM pg_class WHERE relname LIKE 'mv_slow_mv%%'") == 0
    assert mv.history(kind="refresh", limit=1)[0]["status"] == "failed"


def test_statement_timeout_defaults_from_matviews(make_mv, db, sleepy) -> None:
    mv = make_mv(SLOW, statement_timeout=0.5)
    mv.create("mv_slow")
    sleepy(5)
    assert "timeout" in mv.refresh("mv_slow").error


@pytest.mark.parametrize("strategy", ["regular", "swap"])
def test_refresh_never_queues_readers_for_longer_than_lock_timeout(make_mv, dsn, db, users, strategy) -> None:
    """A long reader holds the view; our ACCESS EXCLUSIVE request (the refresh, or the swap's
    rename) waits at most lock_timeout per attempt, so readers arriving meanwhile are delayed by
    at most about that much, and when the retries run out the old data is intact."""
    definition = MatViewDefinition(name="mv_users", sql="SELECT id, plan FROM users", refresh_strategy=strategy)
    mv = make_mv(definition, lock_timeout=0.2, lock_retries=4)
    mv.create("mv_users")
    holder = psycopg.connect(dsn, application_name="long report")
    holder.execute("SELECT count(*) FROM mv_users").fetchone()
    waits: list[float] = []
    stop = threading.Event()

    def reader() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not stop.is_set():
                started = time.monotonic()
                conn.execute("SELECT count(*) FROM mv_users").fetchone()
                waits.append(time.monotonic() - started)
                time.sleep(0.02)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        result = mv.refresh("mv_users")
    finally:
        stop.set()
        thread.join()
        holder.rollback()
        holder.close()
    assert result.status == "failed"
    assert "4 attempts of 200 ms" in result.error and "'long report'" in result.error
    assert len(waits) > 10
    assert max(waits) < 0.6, f"a reader waited {max(waits):.3f}s behind the refresh's lock request"
    assert scalar(db, "SELECT count(*) FROM mv_users") == 10
    assert scalar(db, "SELECT count(*) FROM pg_class WHERE relname LIKE 'mv_users_mv%%'") == 0
