"""Schedules from schedule_cron, the nightly helper, and library registration."""

from __future__ import annotations

import dagster as dg
from dagster._core.libraries import DagsterLibraryRegistry

from matviews_dagster import MatViewDefinition, RefreshViewJob, build_definitions, nightly_refresh_schedule

HOURLY = MatViewDefinition(name="reports.mv_hourly", sql="SELECT 1 AS x", schedule_cron="0 * * * *")
UNSCHEDULED = MatViewDefinition(name="mv_adhoc", sql="SELECT 2 AS x")


def test_one_schedule_per_cron_targeting_its_view(dsn) -> None:
    defs = build_definitions([HOURLY, UNSCHEDULED], dsn=dsn)
    schedules = list(defs.schedules or [])
    assert [s.name for s in schedules] == ["refresh_reports_mv_hourly_schedule"]
    schedule = defs.resolve_schedule_def("refresh_reports_mv_hourly_schedule")
    assert schedule.cron_schedule == "0 * * * *"
    job = defs.resolve_job_def(schedule.job_name)
    assert job.asset_layer.selected_asset_keys == {dg.AssetKey(["reports", "mv_hourly"])}


def test_nightly_schedule_refreshes_every_view(dsn) -> None:
    defs = build_definitions([HOURLY, UNSCHEDULED], dsn=dsn, nightly_cron="30 2 * * *")
    nightly = defs.resolve_schedule_def("refresh_mat_views_nightly")
    assert nightly.cron_schedule == "30 2 * * *" and nightly.job_name == RefreshViewJob
    job = defs.resolve_job_def(RefreshViewJob)
    assert job.asset_layer.selected_asset_keys == {
        dg.AssetKey(["reports", "mv_hourly"]),
        dg.AssetKey(["public", "mv_adhoc"]),
    }
    assert nightly_refresh_schedule(dg.AssetSelection.all(), "0 4 * * *").cron_schedule == "0 4 * * *"


def test_library_is_registered_as_a_third_party_package() -> None:
    import matviews_dagster.resources  # noqa: F401

    assert "matviews-dagster" in DagsterLibraryRegistry.get()
