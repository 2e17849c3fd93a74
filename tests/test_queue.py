"""The queue backend's sensor against real Postgres and a real (test) Dagster instance:
coalescing, code locations sharing the queue, run keys, a request's status following its
run, relaunch of a claim whose tick died, and bad input refused at enqueue."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import dagster as dg
import psycopg
import pytest
from conftest import scalar

from matviews_dagster import CreateViewJob, MatViewDefinition, MatViewsAdapter, RefreshViewJob
from matviews_dagster.build import build_definitions
from matviews_dagster.queue_sensor import QUEUE_SENSOR

A = MatViewDefinition(name="mv_a", sql="SELECT id, plan FROM users", unique_index_columns=["id"])
B = MatViewDefinition(name="mv_b", sql="SELECT plan, count(*) AS n FROM users GROUP BY plan")
C = MatViewDefinition(name="mv_c", sql="SELECT id FROM mv_a WHERE plan = 'pro'")


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def defs(dsn: str, users) -> dg.Definitions:
    users(10)
    defs = build_definitions([A, B, C], dsn=dsn)
    adapter = MatViewsAdapter(backend="inline", dsn=dsn).bind(defs)
    adapter.enqueue(CreateViewJob, args=["mv_a"])
    adapter.enqueue(CreateViewJob, args=["mv_b"])
    adapter.enqueue(CreateViewJob, args=["mv_c"])
    return defs


def queued(dsn: str, defs: dg.Definitions) -> MatViewsAdapter:
    return MatViewsAdapter(backend="queue", dsn=dsn).bind(defs)


def tick(defs: dg.Definitions, instance: dg.DagsterInstance) -> list[dg.RunRequest]:
    with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
        return list(defs.resolve_sensor_def(QUEUE_SENSOR)(context))


def launch(defs: dg.Definitions, instance: dg.DagsterInstance, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """Run what the sensor asked for, in process, on the test instance (as the daemon would)."""
    job = defs.resolve_job_def(request.job_name) if request.job_name else defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        run_config=request.run_config,
        asset_selection=request.asset_selection,
        tags={**request.tags, "dagster/run_key": request.run_key},
        instance=instance,
        raise_on_error=False,
    )


def requests(db: psycopg.Connection) -> list[tuple]:
    return db.execute(
        "SELECT id, status, run_key, views, dagster_run_id IS NOT NULL, error FROM mat_view_run_requests ORDER BY id"
    ).fetchall()


def test_requests_with_the_same_job_queue_and_options_share_one_run(dsn, db, defs, instance) -> None:
    adapter = queued(dsn, defs)
    ids = [
        adapter.enqueue(RefreshViewJob, queue="q", args=["mv_a"]).request_id,
        adapter.enqueue(RefreshViewJob, queue="q", args=["mv_b"]).request_id,
        adapter.enqueue(RefreshViewJob, queue="q", args=["mv_a"]).request_id,  # already pending: same run
        adapter.enqueue(RefreshViewJob, queue="q", args=["mv_a", "exact"]).request_id,  # other options
        adapter.enqueue(RefreshViewJob, queue="other", args=["mv_a"]).request_id,  # other queue
        adapter.enqueue(RefreshViewJob, queue="q", args=["mv_a", {"downstream": True}]).request_id,
    ]
    launched = tick(defs, instance)
    assert len(launched) == 3
    by_selection = {tuple(k.path[-1] for k in r.asset_selection or []): r for r in launched}
    shared = by_selection[("mv_a", "mv_b", "mv_c")]
    assert shared.tags["matviews/queue"] == "q" and shared.tags["matviews/requests"] == "4"
    assert shared.run_config == {}, "left out, each definition decides"
    assert by_selection[("mv_a",)].run_config in (
        {"ops": {"matviews": {"config": {"row_count_strategy": "exact"}}}},
        {},
    )
    assert {r.tags["matviews/queue"] for r in launched} == {"q", "other"}
    keys = {r.run_key for r in launched}
    assert len(keys) == 3 and all(re.fullmatch(r"matviews-[0-9a-f]{24}", k) for k in keys)
    rows = {row[0]: row for row in requests(db)}
    assert {rows[i][2] for i in (ids[0], ids[1], ids[2], ids[5])} == {shared.run_key}
    assert rows[ids[5]][3] == ["public.mv_a", "public.mv_c"], "downstream: the views it selected"
    assert all(row[1] == "submitted" for row in rows.values())
    assert tick(defs, instance) == [], "claimed once"

    for request in launched:
        assert launch(defs, instance, request).success
    # each run ended its requests itself, without waiting for the sensor's next tick
    assert [row[1:2] + row[4:6] for row in requests(db)] == [("success", True, None)] * 6
    refreshed = db.execute("SELECT view_name, count(*) FROM mat_view_refresh_runs GROUP BY 1 ORDER BY 1").fetchall()
    assert refreshed == [("public.mv_a", 3), ("public.mv_b", 1), ("public.mv_c", 1)], "each view once per run"


def test_a_request_ends_failed_with_the_reason_when_its_view_fails(dsn, db, defs, instance) -> None:
    db.execute("CREATE FUNCTION plan_weight(text) RETURNS int LANGUAGE sql AS 'SELECT length($1)'")
    weighted = MatViewDefinition(name="mv_weighted", sql="SELECT id, plan_weight(plan) AS w FROM users")
    defs = build_definitions([A, B, C, weighted], dsn=dsn)
    MatViewsAdapter(backend="inline", dsn=dsn).bind(defs).enqueue(CreateViewJob, args=["mv_weighted"])
    adapter = queued(dsn, defs)
    good = adapter.enqueue(RefreshViewJob, args=["mv_b"]).request_id
    bad = adapter.enqueue(RefreshViewJob, args=["mv_weighted"]).request_id
    [request] = tick(defs, instance)
    db.execute("CREATE OR REPLACE FUNCTION plan_weight(text) RETURNS int LANGUAGE sql AS 'SELECT 1 / 0'")
    assert not launch(defs, instance, request).success
    rows = {row[0]: row for row in requests(db)}
    assert rows[good][1:2] + rows[good][5:] == ("success", None), "its view refreshed in the same run"
    assert rows[bad][1] == "failed" and rows[bad][4]
    assert rows[bad][5].startswith("public.mv_weighted:") and "division by zero" in rows[bad][5], rows[bad][5]

    # a run that died before its end (no settling of its own): the sensor reads what it did
    db.execute("UPDATE mat_view_run_requests SET status = 'submitted', error = NULL, finished_at = NULL")
    assert tick(defs, instance) == []
    after = {row[0]: row for row in requests(db)}
    assert after[good][1] == "success" and after[bad][1] == "failed"
    assert "division by zero" in after[bad][5] and "run:" in after[bad][5], after[bad][5]


def test_each_code_location_claims_only_its_own_views(dsn, db, defs, instance) -> None:
    only_b = build_definitions([B], dsn=dsn)
    queued(dsn, defs).enqueue(RefreshViewJob, args=["mv_a"])
    queued(dsn, defs).enqueue(RefreshViewJob, args=["mv_b"])
    elsewhere = tick(only_b, instance)
    assert [[k.path[-1] for k in r.asset_selection or []] for r in elsewhere] == [["mv_b"]]
    assert [row[1] for row in requests(db)] == ["pending", "submitted"], "mv_a is left to its own location"
    assert [[k.path[-1] for k in r.asset_selection or []] for r in tick(defs, instance)] == [["mv_a"]]


def test_run_keys_do_not_repeat_when_the_queue_table_is_recreated(dsn, db, defs, instance) -> None:
    first = queued(dsn, defs).enqueue(RefreshViewJob, args=["mv_a"]).request_id
    [before] = tick(defs, instance)
    launch(defs, instance, before)
    db.execute("DROP TABLE mat_view_run_requests")
    db.execute("DELETE FROM mat_view_schema_migrations WHERE version >= 1")  # a restore without the queue
    again = queued(dsn, defs).enqueue(RefreshViewJob, args=["mv_a"]).request_id
    assert again == first == 1
    [after] = tick(defs, instance)
    assert after.run_key != before.run_key
    assert launch(defs, instance, after).success
    tick(defs, instance)
    assert scalar(db, "SELECT status FROM mat_view_run_requests WHERE id = 1") == "success"
    assert scalar(db, "SELECT count(*) FROM mat_view_refresh_runs") == 2


def test_a_claim_whose_tick_died_is_launched_again_under_its_key(dsn, db, defs, instance) -> None:
    queued(dsn, defs).enqueue(RefreshViewJob, args=["mv_a"])
    [lost] = tick(defs, instance)  # the daemon dies before creating the run
    assert tick(defs, instance) == [], "within the relaunch delay another tick leaves it alone"
    db.execute("UPDATE mat_view_run_requests SET submitted_at = submitted_at - interval '1 minute'")
    [relaunched] = tick(defs, instance)
    assert relaunched.run_key == lost.run_key and relaunched.asset_selection == lost.asset_selection
    assert tick(defs, instance) == [], "taken once"
    assert launch(defs, instance, relaunched).success
    tick(defs, instance)
    assert [row[1] for row in requests(db)] == ["success"]


def test_a_request_whose_run_was_deleted_fails(dsn, db, defs, instance) -> None:
    queued(dsn, defs).enqueue(RefreshViewJob, args=["mv_a"])
    [request] = tick(defs, instance)
    run_id = launch(defs, instance, request).run_id
    db.execute("UPDATE mat_view_run_requests SET status = 'submitted'")  # as if the run died before its end
    instance.delete_run(run_id)
    tick(defs, instance)
    status, error = db.execute("SELECT status, error FROM mat_view_run_requests").fetchone()
    assert status == "failed" and "no longer exists" in error


@pytest.mark.parametrize(
    ("view", "message"),
    [
        ("\u0663", "is invalid"),  # ARABIC-INDIC DIGIT THREE is not definition id 3
        ("\u00b2", "is invalid"),  # SUPERSCRIPT TWO
        ("9" * 5000, "out of range"),
        ("x" * 10_000_000, "at most 63 bytes"),
        (2**70, "out of range"),
    ],
)
def test_bad_names_and_ids_are_refused_with_a_short_message(dsn, db, defs, view, message) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        queued(dsn, defs).enqueue(RefreshViewJob, args=[view])
    assert len(str(raised.value)) < 400
    assert scalar(db, "SELECT count(*) FROM mat_view_run_requests") == 0


def test_an_ascii_id_still_names_its_definition(dsn, db, defs) -> None:
    definition_id = scalar(db, "SELECT id FROM mat_view_definitions WHERE name = 'public.mv_b'")
    enqueued = queued(dsn, defs).enqueue(RefreshViewJob, args=[str(definition_id)])
    assert enqueued.view == "public.mv_b"


def test_a_view_no_running_sensor_serves_is_refused_then_failed(dsn, db, defs, instance) -> None:
    only_b = build_definitions([B], dsn=dsn)
    tick(only_b, instance)  # a running sensor that serves mv_b only
    with pytest.raises(ValueError, match=r"no code location serving this queue defines view public\.mv_a"):
        queued(dsn, defs).enqueue(RefreshViewJob, args=["mv_a"])  # the script knows mv_a; no location does
    assert scalar(db, "SELECT count(*) FROM mat_view_run_requests") == 0
    # enqueued before the sensors were known (or the view was removed since): failed, not stuck
    db.execute(
        "INSERT INTO mat_view_run_requests (job, args, queue, view_name, enqueued_at) "
        "VALUES ('refresh_mat_views', '[\"public.mv_a\"]', 'default', 'public.mv_a', now() - interval '1 hour')"
    )
    tick(only_b, instance)
    status, error = db.execute("SELECT status, error FROM mat_view_run_requests").fetchone()
    assert status == "failed" and "no code location served view public.mv_a" in error


def test_matviews_requests_shows_what_became_of_each_request(dsn, db, defs, instance, tmp_path) -> None:
    from test_cli import matviews

    adapter = queued(dsn, defs)
    adapter.enqueue(RefreshViewJob, args=["mv_a"])
    adapter.enqueue(RefreshViewJob, queue="slow", args=["mv_b", "exact"])
    for request in tick(defs, instance):
        if request.tags["matviews/queue"] == "default":
            assert launch(defs, instance, request).success
    tick(defs, instance)
    db.execute("UPDATE mat_view_run_requests SET status = 'failed', error = 'cancelled by hand' WHERE queue = 'slow'")
    listed = matviews(tmp_path, dsn, "requests", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["view_name"], r["status"], r["error"]) for r in rows] == [
        ("public.mv_b", "failed", "cancelled by hand"),
        ("public.mv_a", "success", None),
    ]
    assert rows[1]["dagster_run_id"] and rows[1]["views"] == ["public.mv_a"]
    shown = matviews(tmp_path, dsn, "requests", "--status", "failed")
    assert shown.returncode == 0 and "cancelled by hand" in shown.stdout and "mv_a" not in shown.stdout


WORKER = """
import sys, time
from matviews_dagster.core.store import RunStore
from matviews_dagster.core.store.requests import RunRequestQueue

dsn, run_key, run_id = sys.argv[1:4]
with RunRequestQueue(RunStore(dsn)).serving(run_key, run_id, ["public.mv_a"]):
    print("serving", flush=True)
    time.sleep(120)
"""


def test_the_requests_of_a_run_whose_worker_died_fail_and_dagster_is_told(dsn, db, defs, instance) -> None:
    from dagster._core.test_utils import create_run_for_test

    queued(dsn, defs).enqueue(RefreshViewJob, args=["mv_a"])
    [request] = tick(defs, instance)
    run = create_run_for_test(
        instance, job_name="__ASSET_JOB", status=dg.DagsterRunStatus.STARTED, tags={"matviews/run_key": request.run_key}
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, dsn, request.run_key, run.run_id], stdout=subprocess.PIPE, text=True
    )
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "serving"
        assert tick(defs, instance) == []
        assert [row[1] for row in requests(db)] == ["submitted"], "a live worker's requests wait for it"
    finally:
        worker.kill()  # as kill -9: no cleanup runs, the server drops the session and its lock
        worker.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and requests(db)[0][1] == "submitted":
        tick(defs, instance)
        time.sleep(0.2)
    [(_, status, _, _, _, error)] = requests(db)
    assert status == "failed" and "died before it finished" in error and "enqueue the request again" in error
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE


def test_a_tick_while_the_database_is_unreachable_skips_in_one_line(dsn, db, defs, instance) -> None:
    """A server stopped under a running daemon (``matviews server stop``, a restart): each tick
    is skipped saying why, with no traceback, and the pending request runs on a later tick."""
    queued(dsn, defs).enqueue(RefreshViewJob, args=["mv_b"])
    unreachable = build_definitions([A, B, C], dsn="postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=2")
    with dg.build_sensor_context(instance=instance, resources=unreachable.resources) as context:
        evaluated = list(unreachable.resolve_sensor_def(QUEUE_SENSOR)(context))
    assert len(evaluated) == 1 and isinstance(evaluated[0], dg.SkipReason), evaluated
    assert evaluated[0].skip_message.startswith("the run store's database is unreachable (")
    assert evaluated[0].skip_message.endswith("pending requests wait for the next tick")
    assert [row[1] for row in requests(db)][-1] == "pending"
    (request,) = tick(defs, instance)
    assert launch(defs, instance, request).success
