"""The words every layer shares: refresh strategies, row-count modes, run kinds, job and op names.

The core, the CLI's choices and the Dagster config enums all read these, so a new strategy or
job name is added here once.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, get_args


class Strategy(StrEnum):
    """How a view is refreshed: ``REFRESH``, ``REFRESH ... CONCURRENTLY``, or a copy built beside
    it and renamed into place (``docs/strategies.md``). A ``str``: ``Strategy.swap == "swap"``;
    members are named as their values, which is what Dagster's run config shows and takes."""

    regular = "regular"
    concurrent = "concurrent"
    swap = "swap"


class RowCountStrategy(StrEnum):
    """How a refresh counts the view's rows: ``pg_class.reltuples``, ``count(*)``, or not at all
    (members named as their values, as ``Strategy``'s)."""

    estimated = "estimated"
    exact = "exact"
    none = "none"


RunKind = Literal["create", "refresh", "delete"]
DefinitionChangePolicy = Literal["apply", "warn", "fail"]
"""What a refresh does when the deployed view no longer matches its definition (as dbt's
``on_configuration_change``): rebuild it to match, refresh the deployed query and warn, or fail."""

REFRESH_STRATEGIES: tuple[str, ...] = tuple(Strategy)
ROW_COUNT_STRATEGIES: tuple[str, ...] = tuple(RowCountStrategy)
RUN_KINDS: tuple[RunKind, ...] = get_args(RunKind)
DEFINITION_CHANGE_POLICIES: tuple[str, ...] = get_args(DefinitionChangePolicy)

JOB_NAMES: dict[RunKind, str] = {
    "create": "create_mat_views",
    "refresh": "refresh_mat_views",
    "delete": "delete_mat_views",
}
"""The Dagster job of each kind: create (op ``create_views``; config ``views``, ``force``), the asset job
refreshing every view asset, delete (op ``delete_views``; config ``views``, ``cascade``)."""
CreateViewJob = JOB_NAMES["create"]
RefreshViewJob = JOB_NAMES["refresh"]
DeleteViewJob = JOB_NAMES["delete"]
"""The job names as exported (the adapter's ``enqueue(RefreshViewJob, ...)``)."""

JOB_KINDS: dict[str, RunKind] = {name: kind for kind, name in JOB_NAMES.items()}
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
REFRESH_CONFIG_TAG = "matviews/refresh_config"
"""Op tag of a refresh step whose run config is ``RefreshConfig``; a step whose body declares a
``config`` of its own has the user's, which the invocation never reads."""
SOURCES_UNCHANGED = "skipped (sources unchanged)"
"""The outcome of a view ``refresh --if-changed`` did not refresh: its sources are as its last
refresh read them (``core.source_versions``)."""
REFRESHED_MEANWHILE = "refreshed by run #{run_id}, which started after this request"
"""Why a refresh that waited for the view's lock did nothing: another refresh of the same query
started after it was asked for and succeeded (its outcome is ``skipped (<this>)``)."""
