"""Operations: argument normalization, one operation per view, abandoned runs, the result dict."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psycopg
import pytest
from conftest import scalar

from matviews_dagster import DatabaseUnavailable, MatViewDefinition, MatViews, OperationResult
from matviews_dagster.core.arguments import UNSET, normalize_flag, normalize_row_count

SLOW = MatViewDefinition(
    name="mv_slow",
    sql="SELECT u.id FROM users u CROSS JOIN (SELECT pg_sleep(s) FROM sleep_seconds) z",
)
FAST = MatViewDefinition(name="mv_fast", sql="SELECT id FROM users")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        (None, False),
        ({"force": True}, True),
        ({"force": False}, False),
        ("true", True),
        ("YES", True),
        ("1", True),
        ("no", False),
        ("0", False),
        ("false", False),
    ],
)
def test_flag_normalization(value: object, expected: bool) -> None:
    assert normalize_flag(value, "force") is expected


@pytest.mark.parametrize("value", ["maybe", 2, 1.0, [True], {"cascade": True}, {"force": True, "x": 1}, object()])
def test_bad_flags_list_the_accepted_values(value: object) -> None:
    with pytest.raises(ValueError, match="accepted: True/False"):
        normalize_flag(value, "force")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (UNSET, "exact"),
        ("estimated", "estimated"),
        ("exact", "exact"),
        (None, "none"),
        ("none", "none"),
        ({"row_count_strategy": "exact"}, "exact"),
        ({"row_count_strategy": None}, "none"),
    ],
)
def test_row_count_normalization(value: object, expected: str) -> None:
    assert normalize_row_count(value, "exact") == expected


@pytest.mark.parametrize("value", [True, 1, "approx", {"rows": "exact"}, ["exact"]])
def test_bad_row_counts_list_the_accepted_values(value: object) -> None:
    with pytest.raises(ValueError, match="accepted: 'estimated', 'exact', 'none'"):
        normalize_row_count(value, "estimated")


def test_result_dict_shape(make_mv, users) -> None:
    result = make_mv(FAST).create("mv_fast")
    assert set(result.to_dict()) >= {"status", "run_id", "view", "duration_ms", "rows_count", "error", "outcome"}
    assert result.view == "public.mv_fast" and isinstance(result.duration_ms, int)


def test_two_refreshes_of_one_view_serialize(make_mv, db, sleepy) -> None:
    mv = make_mv(SLOW)
    mv.create("mv_slow")
    sleepy(0.7)
    results: list[OperationResult] = []
    threads = [threading.Thread(target=lambda: results.append(mv.refresh("mv_slow"))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status for r in results] == ["success", "success"]
    first, second = db.execute(
        "SELECT started_at, finished_at, (meta->>'lock_wait_ms')::int FROM mat_view_refresh_runs ORDER BY started_at"
    ).fetchall()
    assert second[0] >= first[1], "the second run started before the first finished"
    assert second[2] >= 500, "the second run should have waited for the lock"


def test_different_views_do_not_block_each_other(make_mv, db, sleepy) -> None:
    mv = make_mv(SLOW, FAST)
    mv.create("mv_slow")
    mv.create("mv_fast")
    sleepy(2)
    worker = threading.Thread(target=mv.refresh, args=("mv_slow",))
    worker.start()
    time.sleep(0.3)
    result = mv.refresh("mv_fast")
    slow_still_running = scalar(db, "SELECT count(*) FROM mat_view_refresh_runs WHERE status = 'running'")
    worker.join()
    assert result.status == "success"
    assert slow_still_running == 1
    fast_wait = scalar(
        db,
        "SELECT (meta->>'lock_wait_ms')::int FROM mat_view_refresh_runs WHERE view_name = 'public.mv_fast'",
    )
    assert fast_wait < 500


def test_lock_wait_timeout_records_a_failed_run_naming_the_holder(make_mv, db, sleepy) -> None:
    mv = make_mv(SLOW, lock_wait_timeout=0.5)
    mv.create("mv_slow")
    sleepy(2.5)
    worker = threading.Thread(target=mv.refresh, args=("mv_slow",))
    worker.start()
    time.sleep(0.5)
    holder_id = scalar(db, "SELECT id FROM mat_view_refresh_runs WHERE status = 'running'")
    result = mv.delete("mv_slow")
    worker.join()
    assert result.status == "failed"
    assert "timed out after 0.5s waiting for public.mv_slow" in result.error
    assert f"refresh run #{holder_id}" in result.error
    row = db.execute("SELECT status, error, meta FROM mat_view_delete_runs").fetchone()
    assert row[0] == "failed" and row[1] == result.error and row[2]["lock_wait_ms"] >= 400
    assert scalar(db, "SELECT count(*) FROM mv_slow") == 10


KILLABLE = textwrap.dedent(
    """
    import sys
    from matviews_dagster import MatViews, MatViewDefinition
    definition = MatViewDefinition(name="mv_slow", sql=sys.argv[2], refresh_strategy=sys.argv[3],
                                   unique_index_columns=["id"])
    mv = MatViews(dsn=sys.argv[1], definitions=[definition])
    mv.create("mv_slow", force=True) if sys.argv[4] == "create" else mv.refresh("mv_slow")
    """
)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("strategy", "operation"),
    [("regular", "refresh"), ("concurrent", "refresh"), ("swap", "refresh"), ("regular", "create")],
    ids=["regular", "concurrent", "swap", "create --force"],
)
def test_killed_process_leaves_view_intact_and_its_run_is_reconciled(
    make_mv, dsn, db, sleepy, strategy, operation
) -> None:
    definition = MatViewDefinition.model_validate(
        {**SLOW.model_dump(), "refresh_strategy": strategy, "unique_index_columns": ["id"]}
    )
    runs = f"mat_view_{operation}_runs"
    mv = make_mv(definition)
    mv.create("mv_slow")
    db.execute("INSERT INTO users SELECT g, 'late', 'free' FROM generate_series(11, 20) g")
    sleepy(30)
    child = subprocess.Popen([sys.executable, "-c", KILLABLE, dsn, definition.sql, strategy, operation])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if scalar(
                db,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'matviews public.mv_slow' "
                "AND datname = current_database() "
                "AND state = 'active' AND (query LIKE 'REFRESH%%' OR query LIKE 'CREATE%%')",
            ):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the refresh never started")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    assert scalar(db, f"SELECT status FROM {runs} ORDER BY id DESC LIMIT 1") == "running"
    deadline = time.monotonic() + 15  # the server notices the dead client within ~1 s and aborts
    while scalar(
        db,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'matviews public.mv_slow' "
        "AND datname = current_database()",
    ):
        assert time.monotonic() < deadline, "the orphaned statement was not cancelled"
        time.sleep(0.1)
    assert scalar(db, "SELECT ispopulated FROM pg_matviews WHERE matviewname = 'mv_slow'") is True
    assert scalar(db, "SELECT count(*) FROM mv_slow") == 10, "the old data must still be there"
    sleepy(0)
    result = mv.refresh("mv_slow", "exact")
    assert result.status == "success", result
    killed = db.execute(f"SELECT status, error FROM {runs} ORDER BY id DESC LIMIT 1").fetchone()
    if operation == "refresh":
        killed = db.execute(f"SELECT status, error FROM {runs} ORDER BY id LIMIT 1").fetchone()
    assert killed[0] == "failed" and killed[1].startswith("abandoned")
    assert scalar(db, "SELECT status FROM mat_view_refresh_runs ORDER BY id DESC LIMIT 1") == "success"
    assert result.rows_count == 20


def test_unreachable_database_is_a_clear_error_without_the_password() -> None:
    mv = MatViews(dsn="postgresql://me:s3cret-pw@127.0.0.1:1/app", definitions=[FAST])
    with pytest.raises(DatabaseUnavailable) as info:
        mv.refresh("mv_fast")
    assert "s3cret-pw" not in str(info.value)
    assert "cannot connect to postgresql://me:***@127.0.0.1:1/app" in str(info.value)


def test_view_name_conflicting_in_definitions_is_rejected() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        MatViews(dsn="postgresql://x@127.0.0.1:1/x", definitions=[FAST, FAST.model_copy()])


def test_operations_accept_definitions_and_ids(make_mv, db, users) -> None:
    mv = make_mv(FAST)
    assert mv.create(FAST).status == "success"
    definition_id = scalar(db, "SELECT id FROM mat_view_definitions")
    assert mv.refresh(definition_id).status == "success"
    assert mv.delete(str(definition_id)).outcome == "deleted"
    with pytest.raises(ValueError, match="must be a name"):
        mv.refresh(3.5)  # type: ignore[arg-type]
    with psycopg.connect(db.info.dsn) as check:
        assert check.execute("SELECT count(*) FROM mat_view_delete_runs").fetchone() == (1,)
