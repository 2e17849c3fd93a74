"""The words every layer shares: refresh strategies, row-count modes, run kinds, job and op names.

The core, the CLI's choices and the Dagster config enums all read these, so a new strategy or
job name is added here once.
"""

from __future__ import annotations

from typing import Literal, get_args

RefreshStrategy = Literal["regular", "concurrent", "swap"]
RowCountStrategy = Literal["estimated", "exact", "none"]
RunKind = Literal["create", "refresh", "delete"]
DefinitionChangePolicy = Literal["apply", "warn", "fail"]
"""What a refresh does when the deployed view no longer matches its definition (as dbt's
``on_configuration_change``): rebuild it to match, refresh the deployed query and warn, or fail."""

REFRESH_STRATEGIES: tuple[str, ...] = get_args(RefreshStrategy)
ROW_COUNT_STRATEGIES: tuple[str, ...] = get_args(RowCountStrategy)
RUN_KINDS: tuple[RunKind, ...] = get_args(RunKind)
DEFINITION_CHANGE_POLICIES: tuple[str, ...] = get_args(DefinitionChangePolicy)

CreateViewJob = "create_mat_views"
"""Dagster job that creates views (op ``create_views``; config ``views``, ``force``)."""
RefreshViewJob = "refresh_mat_views"
"""Dagster asset job that refreshes every view asset."""
DeleteViewJob = "delete_mat_views"
"""Dagster job that drops views (op ``delete_views``; config ``views``, ``cascade``)."""

JOB_KINDS: dict[str, RunKind] = {CreateViewJob: "create", RefreshViewJob: "refresh", DeleteViewJob: "delete"}
OP_NAMES: dict[RunKind, str] = {"create": "create_views", "delete": "delete_views"}
FLAG_OF: dict[RunKind, str] = {"create": "force", "delete": "cascade"}
"""The boolean option of each job that takes one."""

DEFAULT_MAX_PARALLEL = 4
"""Views in flight at once (one connection each). Four keeps two cores busy while round trips
wait on the network; raise it when the database has cores to spare."""

REQUEST_STATUSES = ("pending", "submitted", "success", "failed")
"""States of a queued request in ``mat_view_run_requests``: waiting, claimed by a code
location's sensor (run key given), and the end of the run that served it."""
RUN_KEY_TAG = "matviews/run_key"
"""The Dagster run tag naming the run key that the queued requests a run serves share."""
SOURCES_UNCHANGED = "skipped (sources unchanged)"
"""The outcome of a view ``refresh --if-changed`` did not refresh: its sources are as its last
refresh read them (``core.source_versions``)."""
REFRESHED_MEANWHILE = "refreshed by run #{run_id}, which started after this request"
"""Why a refresh that waited for the view's lock did nothing: another refresh of the same query
started after it was asked for and succeeded (its outcome is ``skipped (<this>)``)."""
