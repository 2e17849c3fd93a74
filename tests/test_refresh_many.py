"""Many views at once: dependency order, parallel connections, skips after a failure, interrupts."""

from __future__ import annotations

import itertools
import time

import psycopg
import pytest
from conftest import scalar

from matviews_dagster import MatViewDefinition

SLEEP = "CROSS JOIN (SELECT pg_sleep(s) FROM sleep_seconds) z"


def slow(name: str, source: str = "users") -> MatViewDefinition:
    return MatViewDefinition(name=name, sql=f"SELECT t.id FROM {source} t {SLEEP}")


def windows(db: psycopg.Connection, table: str = "mat_view_refresh_runs") -> dict[str, tuple]:
    rows = db.execute(f"SELECT view_name, started_at, finished_at, status FROM {table} ORDER BY id").fetchall()
    return {row[0].removeprefix("public."): row[1:] for row in rows}


def overlap(a: tuple, b: tuple) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_independent_views_overlap_and_dependents_wait(make_mv, db, sleepy) -> None:
    mv = make_mv(slow("mv_a"), slow("mv_b"), slow("mv_after_a", "mv_a"))
    assert all(r.ok for r in mv.create_many())
    sleepy(0.6)
    results = list(mv.refresh_many(max_parallel=4))
    assert {r.view for r in results} == {"public.mv_a", "public.mv_b", "public.mv_after_a"}
    assert all(r.ok and r.outcome == "updated" for r in results)
    runs = windows(db)
    assert overlap(runs["mv_a"], runs["mv_b"]), f"independent views did not overlap: {runs}"
    assert runs["mv_after_a"][0] >= runs["mv_a"][1], "a view was refreshed before its upstream finished"
    assert results[-1].view == "public.mv_after_a"


def test_max_parallel_one_is_sequential_on_one_connection(make_mv, db, sleepy) -> None:
    views = [slow(f"mv_{i}") for i in range(4)]
    mv = make_mv(*views)
    list(mv.create_many())
    sleepy(0.2)
    results = list(mv.refresh_many(max_parallel=1))
    assert [r.view for r in results] == [f"public.mv_{i}" for i in range(4)]
    runs = sorted(windows(db).values())
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(runs))
    pids = {row[0] for row in db.execute("SELECT meta->>'backend_pid' FROM mat_view_refresh_runs")}
    assert len(pids) == 1, "one worker reuses one connection for its views"


def test_connections_are_reused_by_workers(make_mv, db, users) -> None:
    views = [MatViewDefinition(name=f"mv_{i}", sql=f"SELECT id FROM users WHERE id > {i}") for i in range(8)]
    mv = make_mv(*views)
    assert all(r.ok for r in mv.create_many(max_parallel=2))
    assert all(r.ok for r in mv.refresh_many(max_parallel=2))
    pids = {row[0] for row in db.execute("SELECT meta->>'backend_pid' FROM mat_view_refresh_runs")}
    assert 1 <= len(pids) <= 2
    assert scalar(db, "SELECT count(*) FROM mat_view_refresh_runs WHERE status = 'success'") == 8


def test_a_failure_skips_what_is_built_on_it_and_independent_views_go_on(make_mv, db, users) -> None:
    db.execute("CREATE TABLE ctl (d int)")
    db.execute("INSERT INTO ctl VALUES (1)")
    base = MatViewDefinition(name="mv_base", sql="SELECT id FROM users")
    broken = MatViewDefinition(name="mv_broken", sql="SELECT id, 1 / (SELECT d FROM ctl) AS x FROM mv_base")
    child = MatViewDefinition(name="mv_child", sql="SELECT id FROM mv_broken")
    grandchild = MatViewDefinition(name="mv_grandchild", sql="SELECT id FROM mv_child")
    alone = MatViewDefinition(name="mv_alone", sql="SELECT id FROM users WHERE id > 5")
    mv = make_mv(base, broken, child, grandchild, alone)
    assert all(r.ok for r in mv.create_many())
    db.execute("UPDATE ctl SET d = 0")
    results = {r.view: r for r in mv.refresh_many(max_parallel=2)}
    assert results["public.mv_broken"].status == "failed"
    assert "division by zero" in results["public.mv_broken"].error
    for name in ("public.mv_child", "public.mv_grandchild"):
        assert results[name].status == "skipped" and results[name].run_id is None
        assert results[name].skipped_because == ("public.mv_broken",)
        assert "upstream public.mv_broken failed" in results[name].error
    assert results["public.mv_base"].ok and results["public.mv_alone"].ok
    statuses = dict(db.execute("SELECT view_name, status FROM mat_view_refresh_runs").fetchall())
    assert statuses == {"public.mv_base": "success", "public.mv_broken": "failed", "public.mv_alone": "success"}
    assert results["public.mv_child"].to_dict()["skipped_because"] == ["public.mv_broken"]


def test_results_come_as_each_view_finishes(make_mv, db, users) -> None:
    db.execute("CREATE TABLE sleep_seconds (s float)")
    db.execute("INSERT INTO sleep_seconds VALUES (1.0)")
    quick = MatViewDefinition(name="mv_quick", sql="SELECT id FROM users")
    mv = make_mv(slow("mv_slow"), quick)
    db.execute("UPDATE sleep_seconds SET s = 0")
    list(mv.create_many())
    db.execute("UPDATE sleep_seconds SET s = 1.0")
    started = time.monotonic()
    stream = mv.refresh_many(max_parallel=2)
    first = next(stream)
    assert first.view == "public.mv_quick" and time.monotonic() - started < 0.9
    assert next(stream).view == "public.mv_slow"


def test_delete_many_drops_dependents_first_and_create_many_upstream_first(make_mv, db, users) -> None:
    base = MatViewDefinition(name="mv_base", sql="SELECT id FROM users")
    top = MatViewDefinition(name="mv_top", sql="SELECT id FROM mv_base")
    mv = make_mv(top, base)
    assert [r.view for r in mv.create_many(max_parallel=4)] == ["public.mv_base", "public.mv_top"]
    assert [r.view for r in mv.delete_many(max_parallel=4)] == ["public.mv_top", "public.mv_base"]
    assert scalar(db, "SELECT count(*) FROM pg_matviews") == 0


def test_a_failed_delete_keeps_what_it_is_built_on(make_mv, db, users) -> None:
    base = MatViewDefinition(name="mv_base", sql="SELECT id FROM users")
    top = MatViewDefinition(name="mv_top", sql="SELECT id FROM mv_base")
    mv = make_mv(base, top)
    list(mv.create_many())
    db.execute("CREATE VIEW v_reader AS SELECT * FROM mv_top")
    results = {r.view: r for r in mv.delete_many()}
    assert results["public.mv_top"].status == "failed" and "public.v_reader" in results["public.mv_top"].error
    assert results["public.mv_base"].status == "skipped"
    assert "public.mv_top, built on it, could not be deleted" in results["public.mv_base"].error
    assert scalar(db, "SELECT count(*) FROM pg_matviews") == 2


def test_unknown_views_and_bad_parallelism_fail_before_anything_runs(make_mv, db, users) -> None:
    mv = make_mv(MatViewDefinition(name="mv_a", sql="SELECT id FROM users"))
    with pytest.raises(ValueError, match="unknown view 'mv_nope'"):
        mv.refresh_many(["mv_a", "mv_nope"])
    with pytest.raises(ValueError, match="max_parallel must be a positive integer"):
        mv.refresh_many(max_parallel=0)
    assert scalar(db, "SELECT to_regclass('public.mat_view_refresh_runs')") is None


def test_stopping_early_cancels_the_refreshes_in_flight(make_mv, db, sleepy) -> None:
    quick = MatViewDefinition(name="mv_quick", sql="SELECT id FROM users")
    mv = make_mv(slow("mv_slow"), quick)
    list(mv.create_many())
    sleepy(30)
    stream = mv.refresh_many(max_parallel=2)
    assert next(stream).view == "public.mv_quick"
    started = time.monotonic()
    stream.close()  # the caller gives up: the slow refresh is cancelled, not awaited for 30 s
    assert time.monotonic() - started < 10
    status, error = db.execute(
        "SELECT status, error FROM mat_view_refresh_runs WHERE view_name = 'public.mv_slow'"
    ).fetchone()
    assert status == "failed" and "cancel" in error
    assert scalar(db, "SELECT count(*) FROM mv_slow") == 10, "the view kept its data"


def test_two_batches_never_overlap_on_the_same_view(make_mv, db, sleepy) -> None:
    import threading

    shared = slow("mv_shared")
    first, second = make_mv(shared, slow("mv_one")), make_mv(shared, slow("mv_two"))
    list(first.create_many())
    list(second.create_many(["mv_two"]))
    sleepy(0.5)
    batches = [threading.Thread(target=lambda mv=mv: list(mv.refresh_many(max_parallel=2))) for mv in (first, second)]
    for batch in batches:
        batch.start()
    for batch in batches:
        batch.join()
    rows = db.execute(
        "SELECT started_at, finished_at, status FROM mat_view_refresh_runs WHERE view_name = 'public.mv_shared'"
    ).fetchall()
    assert [row[2] for row in rows] == ["success", "success"]
    assert not overlap(rows[0][:2], rows[1][:2]), f"two refreshes of one view overlapped: {rows}"
    assert scalar(db, "SELECT count(*) FROM mat_view_refresh_runs WHERE status = 'success'") == 4


def test_a_view_without_a_connection_fails_alone(make_mv, dsn, db, users) -> None:
    import uuid

    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    role = f"mv_limited_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 3")
    try:
        views = [MatViewDefinition(name=f"mv_{i}", sql=f"SELECT id FROM users WHERE id > {i}") for i in range(8)]
        mv = make_mv(*views)
        mv.migrate()  # the run tables, by the owner; the limited role only writes rows
        db.execute(f"GRANT ALL ON SCHEMA public TO {role}")
        db.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        db.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")
        limited = make_conninfo(dsn, user=role, password=conninfo_to_dict(dsn).get("password"))
        mv = make_mv(*views, dsn=limited, runs_dsn=limited)
        results = list(mv.create_many(max_parallel=4))  # one run-store connection + 2 workers fit
        assert sorted(r.view for r in results) == sorted(d.name for d in views), "every view reported once"
        failed = [r for r in results if not r.ok]
        assert failed and len(failed) < 8
        assert all("too many connections" in r.error and "max_parallel" in r.hint for r in failed)
        rows = dict(db.execute("SELECT view_name, status FROM mat_view_create_runs").fetchall())
        assert len(rows) == 8 and {r.view for r in failed} == {v for v, s in rows.items() if s == "failed"}
    finally:
        db.execute(f"DROP OWNED BY {role}")
        db.execute(f"DROP ROLE {role}")
