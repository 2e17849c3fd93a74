"""Schedules: one per definition with ``schedule_cron``, and a nightly refresh of everything."""

from collections.abc import Iterable
from typing import Any

import dagster as dg

from .core.definition import MatViewDefinition
from .translator import valid_cron


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
                    cron_schedule=valid_cron(definition.schedule_cron, definition, "schedule_cron"),
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
