"""The adapter: validation before anything is enqueued, the inline and queue backends, the sensor."""

from __future__ import annotations

import dagster as dg
import pytest
from conftest import scalar

from matviews_dagster import CreateViewJob, DeleteViewJob, MatViewDefinition, MatViewsAdapter, RefreshViewJob
from matviews_dagster.build import build_definitions
from matviews_dagster.queue_sensor import QUEUE_SENSOR
from matviews_dagster.run_requests import parse_request, plan_run

USERS = MatViewDefinition(name="mv_users", sql="SELECT id, plan FROM users", unique_index_columns=["id"])


@pytest.fixture
def adapter(dsn: str, users) -> MatViewsAdapter:
    return MatViewsAdapter(dsn=dsn).bind(build_definitions([USERS], dsn=dsn))


def test_no_backend_says_how_to_configure_one(adapter, monkeypatch) -> None:
    monkeypatch.delenv("MATVIEWS_ADAPTER", raising=False)
    with pytest.raises(ValueError, match=r"set MATVIEWS_ADAPTER .* to inline, queue or graphql"):
        adapter.enqueue(RefreshViewJob, args=["mv_users"])
    monkeypatch.setenv("MATVIEWS_ADAPTER", "sidekiq")
    with pytest.raises(ValueError, match="'sidekiq' is unknown"):
        adapter.enqueue(RefreshViewJob, args=["mv_users"])


@pytest.mark.parametrize(
    ("job", "args", "message"),
    [
        ("vacuum_views", ["mv_users"], "not a matviews job"),
        (RefreshViewJob, ["mv_nope"], "unknown view 'mv_nope'"),
        (RefreshViewJob, ["mv_users", "approximately"], "accepted: 'estimated'"),
        (CreateViewJob, ["mv_users", {"force": "maybe"}], "accepted: True/False"),
        (DeleteViewJob, ["mv_users", {"force": True}], "accepted: True/False"),
        (RefreshViewJob, [], "args must be"),
        (RefreshViewJob, "mv_users", "args must be"),
        (RefreshViewJob, ["mv_users", "exact", "extra"], "args must be"),
    ],
)
def test_bad_requests_fail_before_anything_is_enqueued(adapter, db, job, args, message) -> None:
    queued = adapter.model_copy(update={"backend": "queue"})
    with pytest.raises(ValueError, match=message):
        queued.enqueue(job, args=args)
    with pytest.raises(ValueError, match="queue 'bad queue!'"):
        queued.enqueue(RefreshViewJob, queue="bad queue!", args=["mv_users"])
    assert (
        scalar(db, "SELECT to_regclass('public.mat_view_run_requests')") is None
        or scalar(db, "SELECT count(*) FROM mat_view_run_requests") == 0
    )


def test_inline_runs_the_dagster_job_now(adapter, db) -> None:
    inline = adapter.model_copy(update={"backend": "inline"})
    created = inline.enqueue(CreateViewJob, args=["mv_users", True])
    assert created.status == "success" and created.dagster_run_id
    assert [r["kind"] for r in created.run_record_ids] == ["create"]
    refreshed = inline.enqueue(
        RefreshViewJob, queue="nightly", args=["public.mv_users", {"row_count_strategy": "exact"}]
    )
    assert refreshed.status == "success"
    row = db.execute(
        "SELECT id, rows_count, dagster_run_id FROM mat_view_refresh_runs ORDER BY id DESC LIMIT 1"
    ).fetchone()
    assert row == (refreshed.run_record_ids[0]["id"], 10, refreshed.dagster_run_id)
    definition_id = scalar(db, "SELECT id FROM mat_view_definitions")
    deleted = inline.enqueue(DeleteViewJob, args=[definition_id, {"cascade": False}])
    assert deleted.status == "success" and scalar(db, "SELECT count(*) FROM pg_matviews") == 0


def test_queue_backend_inserts_a_pending_request(adapter, db, monkeypatch) -> None:
    monkeypatch.setenv("MATVIEWS_ADAPTER", "queue")
    monkeypatch.setenv("MATVIEWS_JOB_QUEUE", "reports")
    enqueued = adapter.enqueue(RefreshViewJob, args=["mv_users", "exact"])
    assert enqueued.backend == "queue" and enqueued.queue == "reports" and enqueued.request_id
    row = db.execute("SELECT job, args, queue, status FROM mat_view_run_requests").fetchone()
    assert row == ("refresh_mat_views", ["public.mv_users", {"row_count_strategy": "exact"}], "reports", "pending")
    assert adapter.enqueue(RefreshViewJob, queue="heavy", args=["mv_users"]).queue == "heavy"


def test_sensor_claims_once_and_fails_unrunnable_requests(adapter, dsn, db) -> None:
    queued = adapter.model_copy(update={"backend": "queue"})
    good = queued.enqueue(RefreshViewJob, queue="heavy", args=["mv_users", "exact"]).request_id
    db.execute(  # written by hand, past the adapter's checks
        "INSERT INTO mat_view_run_requests (job, args, queue, view_name) "
        "VALUES ('refresh_mat_views', '[\"public.mv_users\", \"sometimes\"]', 'q', 'public.mv_users')"
    )
    defs = build_definitions([USERS], dsn=dsn)
    sensor = defs.resolve_sensor_def(QUEUE_SENSOR)
    with dg.instance_for_test() as instance:
        with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
            requests = list(sensor(context))
        with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
            again = list(sensor(context))
    key = scalar(db, "SELECT run_key FROM mat_view_run_requests WHERE id = %s", (good,))
    assert [r.run_key for r in requests] == [key]
    assert requests[0].tags["matviews/queue"] == "heavy" and requests[0].job_name == RefreshViewJob
    assert requests[0].tags["matviews/run_key"] == key
    assert requests[0].asset_selection == [dg.AssetKey(["public", "mv_users"])]
    assert again == []
    statuses = db.execute("SELECT status, error FROM mat_view_run_requests ORDER BY id").fetchall()
    assert statuses[0] == ("submitted", None)
    assert statuses[1][0] == "failed" and "row count option 'sometimes' is invalid" in statuses[1][1]


def test_plan_for_each_job(adapter) -> None:
    targets = {"public.mv_users": (dg.AssetKey(["public", "mv_users"]), "matviews")}
    with adapter.matviews() as mv:
        refresh = plan_run(parse_request(RefreshViewJob, ["mv_users", None], mv), targets)
        default = plan_run(parse_request(RefreshViewJob, ["mv_users"], mv), targets)
        create = plan_run(parse_request(CreateViewJob, ["mv_users", "yes"], mv), targets)
        with pytest.raises(ValueError, match="downstream option 'perhaps' is invalid"):
            parse_request(RefreshViewJob, ["mv_users", {"downstream": "perhaps"}], mv)
    assert refresh.run_config == {"ops": {"matviews": {"config": {"row_count_strategy": "none"}}}}
    assert refresh.asset_selection == [dg.AssetKey(["public", "mv_users"])]
    assert default.run_config == {}, "left out, the definition decides when the run starts"
    assert create.run_config == {"ops": {"create_views": {"config": {"views": ["public.mv_users"], "force": True}}}}


def test_a_refresh_request_with_its_downstream_views(dsn, users) -> None:
    base = MatViewDefinition(name="mv_base", sql="SELECT id, plan FROM users")
    top = MatViewDefinition(name="mv_top", sql="SELECT id FROM mv_base")
    defs = build_definitions([top, base], dsn=dsn)
    adapter = MatViewsAdapter(backend="inline", dsn=dsn).bind(defs)
    enqueued = adapter.enqueue(RefreshViewJob, args=["mv_base", {"downstream": True, "row_count_strategy": "exact"}])
    assert enqueued.status == "success"
    assert [(r["kind"], r["view_name"]) for r in enqueued.run_record_ids if r["kind"] == "refresh"] == [
        ("refresh", "public.mv_base"),
        ("refresh", "public.mv_top"),
    ]
