"""Schedules: one per definition with ``schedule_cron``, and a nightly refresh of everything."""

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from .core.definition import MatViewDefinition
from .core.store.requests import RunRequestQueue
from .ops import REQUEST_TAG, ViewTargets, parse_request, plan_run
from .resources import MatViewsResource


def build_matview_schedules(views: Iterable[tuple[MatViewDefinition, dg.AssetKey]]) -> list[dg.ScheduleDefinition]:
    """A schedule per view with ``schedule_cron``, refreshing that view's asset (its
    translated key), named ``refresh_<key path joined by _>_schedule``."""
    schedules = []
    for definition, key in views:
        if definition.schedule_cron:
            name = "_".join(key.path)
            schedules.append(
                dg.ScheduleDefinition(
                    name=f"refresh_{name}_schedule",
                    cron_schedule=definition.schedule_cron,
                    target=dg.AssetSelection.assets(key),
                    description=f"Refresh {definition.name} on {definition.schedule_cron}",
                )
            )
    return schedules


def nightly_refresh_schedule(
    target: Any,
    cron_schedule: str = "0 3 * * *",
    *,
    timezone: str = "UTC",
) -> dg.ScheduleDefinition:
    """Refresh ``target`` (e.g. the ``refresh_mat_views`` job) once a night, upstreams first.

    >>> nightly_refresh_schedule(defs.get_job_def("refresh_mat_views"))  # doctest: +SKIP
    """
    return dg.ScheduleDefinition(
        name="refresh_mat_views_nightly",
        cron_schedule=cron_schedule,
        target=target,
        execution_timezone=timezone,
    )


QUEUE_SENSOR = "matviews_queue_sensor"
_RESUBMIT_AFTER_SECONDS = 120


def build_queue_sensor(
    definitions: Sequence[MatViewDefinition],
    targets: ViewTargets,
    jobs: Sequence[Any],
    *,
    minimum_interval_seconds: int = 10,
    batch_size: int = 25,
) -> dg.SensorDefinition:
    """``matviews_queue_sensor``: turns ``pending`` rows of ``mat_view_run_requests`` into runs.

    Each tick records the Dagster run id of requests submitted earlier, then claims pending
    requests (``FOR UPDATE SKIP LOCKED``) and yields one ``RunRequest`` each, with
    ``run_key`` = request id (Dagster never launches a run key twice) and the tag
    ``matviews/queue``. ``targets`` (``{view: (asset key, op name)}``) are the code
    location's views as translated. A request that cannot become a run is marked ``failed``
    with the reason.
    """

    @dg.sensor(
        name=QUEUE_SENSOR,
        jobs=list(jobs),
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Runs the requests enqueued with the adapter's queue backend.",
    )
    def matviews_queue_sensor(
        context: dg.SensorEvaluationContext, matviews: MatViewsResource
    ) -> Iterator[dg.RunRequest]:
        with matviews.matviews(definitions) as mv:
            queue = RunRequestQueue(mv.runs)
            now = datetime.now(UTC)
            resubmit = []
            for request in queue.awaiting_run_id():
                runs = context.instance.get_runs(filters=dg.RunsFilter(tags={REQUEST_TAG: str(request.id)}), limit=1)
                if runs:
                    queue.attach_run(request.id, runs[0].run_id)
                elif request.submitted_at and (now - request.submitted_at).total_seconds() > _RESUBMIT_AFTER_SECONDS:
                    resubmit.append(request)  # claimed but never launched (the tick died): same run key again
            for request in [*resubmit, *queue.claim(batch_size)]:
                try:
                    plan = plan_run(parse_request(request.job, request.args, mv), targets)
                except ValueError as exc:
                    queue.fail(request.id, str(exc))
                    context.log.warning(f"request #{request.id} failed: {exc}")
                    continue
                yield dg.RunRequest(
                    run_key=f"matviews-request-{request.id}",
                    job_name=plan.job_name,
                    run_config=plan.run_config,
                    asset_selection=plan.asset_selection,
                    tags=plan.tags(request.queue, request.id),
                )

    return matviews_queue_sensor
