"""Schedules: one per definition with ``schedule_cron``, and a nightly refresh of everything."""

from collections.abc import Sequence

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from .core.definition import MatViewDefinition
from .translator import DagsterMatViewTranslator


def build_matview_schedules(
    definitions: Sequence[MatViewDefinition], *, translator: DagsterMatViewTranslator | None = None
) -> list[dg.ScheduleDefinition]:
    """A schedule per view with ``schedule_cron``, refreshing that view's asset."""
    translator = translator or DagsterMatViewTranslator()
    schedules = []
    for definition in definitions:
        if definition.schedule_cron:
            key = translator.get_asset_key(definition)
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
    target: dg.JobDefinition | UnresolvedAssetJobDefinition | dg.AssetSelection,
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
