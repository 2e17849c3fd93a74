"""``matviews_queue_sensor``: the adapter's queued requests, coalesced into Dagster runs and
followed to their end."""

import hashlib
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Any

import dagster as dg

from .core.connection import DatabaseUnavailable
from .core.definition import MatViewDefinition
from .core.matviews import MatViews
from .core.messages import counted
from .core.store.requests import Claim, RunRequestQueue, RunRequestRow, outcome_of
from .core.vocabulary import JOB_KINDS, RUN_KEY_TAG
from .resources import MatViewsResource
from .run_liveness import fail_if_worker_died
from .run_requests import Request, ViewTargets, coalesce, parse_request, plan_run

QUEUE_SENSOR = "matviews_queue_sensor"
RELAUNCH_AFTER_SECONDS = 10.0
"""A claim still without a Dagster run this long after it was made is launched again (the
tick that made it died before its run was created); its run key stays, so Dagster never
creates a second run for it."""
UNSERVED_AFTER_SECONDS = 300.0
"""A pending request for a view no code location's sensor has served for this long fails."""


def build_queue_sensor(
    definitions: Sequence[MatViewDefinition],
    targets: ViewTargets,
    jobs: Sequence[Any],
    *,
    minimum_interval_seconds: int = 10,
    batch_size: int = 1000,
    tenants: Mapping[str, MatViewDefinition] | None = None,
    partitions: Mapping[str, str] | None = None,
) -> dg.SensorDefinition:
    """``matviews_queue_sensor``: turns ``pending`` rows of ``mat_view_run_requests`` for this
    code location's views into as few Dagster runs as their options allow, and settles each
    request when its run has finished.

    Each tick (``minimum_interval_seconds`` apart, under ``dagster-daemon``):

    1. records the Dagster run of each claim made earlier, and when that run has finished
       marks each of its requests ``success`` or ``failed`` (with the reason) from the run
       rows it wrote for the request's views;
    2. launches again, under the same run key, a claim still without a run
       ``RELAUNCH_AFTER_SECONDS`` after it was made (its tick died);
    3. claims up to ``batch_size`` pending requests for ``targets`` (``{view: (asset key, op
       name)}``, the location's views as translated) and coalesces them: requests with the
       same job, queue and options become one ``RunRequest`` selecting the union of their
       views, each view once, with a new random run key (``matviews-<24 hex digits>``) and
       the tags ``matviews/queue`` and ``matviews/run_key``;
    4. fails pending requests for views no code location has served for
       ``UNSERVED_AFTER_SECONDS``.

    A request that cannot become a run is marked ``failed`` with the reason.
    """
    views = sorted(targets)
    known = dict(tenants or {})
    dynamic = dict(partitions or {})  # {view with a tenant pattern: its dynamic partitions' name}
    consumer = hashlib.sha256("\n".join(views).encode()).hexdigest()[:12]

    @dg.sensor(
        name=QUEUE_SENSOR,
        jobs=list(jobs),
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Runs the requests enqueued with the adapter's queue backend, coalesced.",
    )
    def matviews_queue_sensor(
        context: dg.SensorEvaluationContext, matviews: MatViewsResource
    ) -> Iterator[dg.RunRequest | dg.SkipReason]:
        try:
            yield from _tick(context, matviews)
        except DatabaseUnavailable as exc:  # a server stopped or restarting: one line a tick, no traceback
            reason = f"the run store's database is unreachable ({exc}); pending requests wait for the next tick"
            context.log.warning(reason)
            yield dg.SkipReason(reason)

    def _tick(context: dg.SensorEvaluationContext, matviews: MatViewsResource) -> Iterator[dg.RunRequest]:
        with matviews.matviews(definitions) as mv:
            queue = RunRequestQueue(mv.runs)
            queue.register_consumer(f"{_location(context)}#{consumer}", views)
            for claim in queue.awaiting_outcome(views):
                _follow(context.instance, queue, claim, mv)
            for claim in queue.unlaunched(views, RELAUNCH_AFTER_SECONDS):
                yield from _launch(context, queue, claim, mv, targets, known, dynamic)
            assignments = {row.id: _assignment(row, mv, targets, known) for row in queue.pending(views, batch_size)}
            for claim in queue.claim(assignments):
                yield from _launch(context, queue, claim, mv, targets, known, dynamic)
            for request_id, reason in assignments.items():
                if isinstance(reason, str):
                    context.log.warning(f"request #{request_id} failed: {reason}")
            _fail_unserved(queue)

    return matviews_queue_sensor


def _location(context: dg.SensorEvaluationContext) -> str:
    origin = context.code_location_origin
    return getattr(origin, "location_name", None) or context.repository_name or "location"


def _request(row: RunRequestRow, mv: MatViews, tenants: Mapping[str, MatViewDefinition]) -> Request:
    return parse_request(row.job, row.args, mv, tenants)


def _assignment(
    row: RunRequestRow, mv: MatViews, targets: ViewTargets, tenants: Mapping[str, MatViewDefinition]
) -> tuple[Hashable, list[str]] | str:
    """How a pending request joins a run: ``(queue and options, views)``, or why it cannot."""
    try:
        request = _request(row, mv, tenants)
        plan_run(request, targets)
    except ValueError as exc:
        return str(exc)
    return (row.queue, request.run_options()), list(request.views)


def _launch(
    context: dg.SensorEvaluationContext,
    queue: RunRequestQueue,
    claim: Claim,
    mv: MatViews,
    targets: ViewTargets,
    tenants: Mapping[str, MatViewDefinition],
    dynamic: Mapping[str, str],
) -> Iterator[dg.RunRequest]:
    """The one run serving ``claim``'s requests (or, when they no longer plan, their failure).
    A tenant of a pattern (checked in the catalog) gets its partition first, if the tenants
    sensor has not added it yet."""
    try:
        request = coalesce([_request(row, mv, tenants) for row in claim.requests])
        plan = plan_run(request, targets)
    except ValueError as exc:
        queue.settle({row.id: str(exc) for row in claim.requests})
        context.log.warning(f"requests {_ids(claim)} failed: {exc}")
        return
    partitions = dynamic.get(request.view)
    if partitions and plan.partition_key and not context.instance.has_dynamic_partition(partitions, plan.partition_key):
        context.instance.add_dynamic_partitions(partitions, [plan.partition_key])
    views = counted(len(plan.views), "view")
    context.log.info(f"requests {_ids(claim)}: one {plan.job_name} run of {views}, {claim.run_key}")
    yield dg.RunRequest(
        run_key=claim.run_key,
        job_name=plan.job_name,
        run_config=plan.run_config,
        asset_selection=plan.asset_selection,
        partition_key=plan.partition_key,
        tags=plan.tags(claim.requests[0].queue, claim.run_key, len(claim.requests)),
    )


def _follow(instance: dg.DagsterInstance, queue: RunRequestQueue, claim: Claim, mv: MatViews) -> None:
    """Record the run serving ``claim`` and, once it has finished, settle its requests."""
    run_id = claim.requests[0].dagster_run_id
    if run_id is None:
        found = instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: claim.run_key}), limit=1)
        if not found:
            return  # not created yet, or its tick died: unlaunched() takes it again
        run_id = found[0].run_id
        queue.attach_run(claim.run_key, run_id)
    run = instance.get_run_by_id(run_id)
    if run is None:
        queue.settle(
            {row.id: f"Dagster run {run_id} no longer exists (deleted); enqueue again" for row in claim.requests}
        )
        return
    if not run.is_finished:
        fail_if_worker_died(instance, queue, claim, run)
        return
    rows = mv.runs.for_dagster_run(run_id)
    queue.settle({row.id: _outcome(row, run, rows, instance) for row in claim.requests})


def _outcome(
    request: RunRequestRow, run: dg.DagsterRun, rows: list[dict[str, Any]], instance: dg.DagsterInstance
) -> str | None:
    """``None`` when the run did the request's job on each of its views, else why not."""
    kind = JOB_KINDS.get(request.job)
    done = {
        row["view_name"]: None if row["status"] == "success" else row["error"] or row["status"]
        for row in rows
        if row["kind"] == kind
    }
    problem = outcome_of(request, done, f"no {kind} by Dagster run {run.run_id} ({run.status.value.lower()})")
    if problem and run.status != dg.DagsterRunStatus.SUCCESS:
        reason = _failure_message(instance, run.run_id)
        if reason:
            problem += f"; run: {reason}"
    return problem


def _failure_message(instance: dg.DagsterInstance, run_id: str) -> str | None:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_FAILURE, limit=1).records
    return " ".join(records[0].event_log_entry.message.split())[:300] if records else None


def _fail_unserved(queue: RunRequestQueue) -> None:
    served = {view for views in queue.consumers(UNSERVED_AFTER_SECONDS).values() for view in views}
    queue.fail_unserved(served, UNSERVED_AFTER_SECONDS)


def _ids(claim: Claim) -> str:
    ids = [row.id for row in claim.requests]
    return f"#{ids[0]}" if len(ids) == 1 else f"#{ids[0]}..#{ids[-1]} ({len(ids)})"
