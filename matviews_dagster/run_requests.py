"""How a request for one of the three jobs (from the adapter, or queued) is checked and becomes a
Dagster run (``JobPlan``)."""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from .core.arguments import UNSET, normalize_flag, normalize_row_count
from .core.definition import MatViewDefinition
from .core.matviews import MatViews
from .core.messages import counted, shown
from .core.vocabulary import FLAG_OF, JOB_KINDS, OP_NAMES, RUN_KEY_TAG, CreateViewJob, DeleteViewJob, RefreshViewJob

QUEUE_TAG = "matviews/queue"
ViewTargets = Mapping[str, tuple[dg.AssetKey, str]]
"""``{view name: (asset key, op name)}``: where each view lives in a code location."""


@dataclass(frozen=True)
class Request:
    """A validated request to run one of the three jobs: ``view`` as named, its normalized
    ``option`` and the ``views`` the run selects (a refresh with ``downstream`` adds the views
    built on ``view``)."""

    job: str
    view: str
    option: dict[str, Any]
    views: tuple[str, ...] = ()

    def run_options(self) -> str:
        """What must be equal for requests to share one run: the job and its options (the
        selection aside), as canonical JSON."""
        options = {k: v for k, v in self.option.items() if k != "downstream"}
        return json.dumps([self.job, options], sort_keys=True)


def coalesce(requests: Sequence[Request]) -> Request:
    """One request serving ``requests`` (same ``run_options``): the union of their views,
    each once, in the order first requested."""
    first = requests[0]
    if any(r.run_options() != first.run_options() for r in requests):
        raise ValueError("only requests with the same job and options share a run")
    views = tuple(dict.fromkeys(v for r in requests for v in r.views or (r.view,)))
    option = {k: v for k, v in first.option.items() if k != "downstream"}
    return Request(first.job, views[0] if len(views) == 1 else counted(len(views), "view"), option, views)


def parse_request(job: object, args: Sequence[Any], mv: MatViews) -> Request:
    """Validate ``[view_or_definition_id, option]`` for ``job``; raises ``ValueError`` for a
    job that is not ours, an unknown view or a junk option, before anything is queued or run.
    Only ASCII digits (or an ``int``) name a definition id; messages quote at most a short
    prefix of a bad value.

    A refresh's option is a row count (``"exact"``, ``None`` for none, ...) or a mapping with
    ``row_count_strategy`` and/or ``downstream``; left out, each view's definition decides
    when the run starts. Create and delete take ``force`` / ``cascade``."""
    name = getattr(job, "name", job)
    if not isinstance(name, str) or name not in JOB_KINDS:
        raise ValueError(
            f"job {shown(job)} is not a matviews job; use CreateViewJob, RefreshViewJob or DeleteViewJob "
            f"({CreateViewJob}, {RefreshViewJob}, {DeleteViewJob})"
        )
    if isinstance(args, (str, bytes)) or not isinstance(args, Sequence) or not 1 <= len(args) <= 2:
        raise ValueError(f"args must be [view_or_definition_id] or [view_or_definition_id, option], got {shown(args)}")
    definition = mv.definition(args[0])
    option = args[1] if len(args) == 2 else UNSET
    kind = JOB_KINDS[name]
    if kind == "refresh":
        return _refresh_request(name, definition, option, mv)
    flag = FLAG_OF[kind]
    parsed = {flag: normalize_flag(None if option is UNSET else option, flag)}
    return Request(name, definition.name, parsed, (definition.name,))


def _refresh_request(job: str, definition: MatViewDefinition, option: Any, mv: MatViews) -> Request:
    downstream = False
    if isinstance(option, Mapping) and set(option) <= {"row_count_strategy", "downstream"}:
        downstream = normalize_flag(option.get("downstream"), "downstream")
        option = {"row_count_strategy": option["row_count_strategy"]} if "row_count_strategy" in option else UNSET
    parsed: dict[str, Any] = {}
    if option is not UNSET:
        parsed["row_count_strategy"] = normalize_row_count(option, definition.row_count_strategy)
    views = (definition.name,)
    if downstream:
        parsed["downstream"] = True
        views = tuple(d.name for d in mv.graph.order(mv.graph.with_downstream([definition.name])))
    return Request(job, definition.name, parsed, views)


@dataclass(frozen=True)
class JobPlan:
    """What to run in Dagster for one request (or several coalesced): job, run config, asset
    selection, and the views it runs."""

    job_name: str
    view: str
    run_config: dict[str, Any]
    asset_selection: list[dg.AssetKey] | None = None
    views: tuple[str, ...] = ()

    def tags(self, queue: str, run_key: str | None = None, requests: int | None = None) -> dict[str, str]:
        """``matviews/queue``, ``matviews/view`` (one view) or ``matviews/views`` (how many),
        and for a queued run its ``matviews/run_key`` and how many requests it serves."""
        tags = {QUEUE_TAG: queue}
        if len(self.views) > 1:
            tags["matviews/views"] = str(len(self.views))
        else:
            tags["matviews/view"] = self.view
        if run_key is not None:
            tags[RUN_KEY_TAG] = run_key
            tags["matviews/requests"] = str(requests or 1)
        return tags


def plan_run(request: Request, targets: ViewTargets) -> JobPlan:
    """The Dagster run for ``request`` in the code location whose views are ``targets``:
    a refresh selects the views' assets (their translated keys) and configures their step;
    create and delete configure their op with the views."""
    kind = JOB_KINDS[request.job]
    views = request.views or (request.view,)
    missing = [view for view in views if view not in targets]
    if missing:
        raise ValueError(f"view {', '.join(missing)} is not an asset of this code location")
    if kind == "refresh":
        keys = [targets[view][0] for view in views]
        ops = {targets[view][1] for view in views}
        config = {k: v for k, v in request.option.items() if k != "downstream"}
        run_config = {"ops": {op: {"config": config} for op in sorted(ops)}} if config else {}
        return JobPlan(request.job, request.view, run_config, keys, views)
    config = {"views": list(views), **request.option}
    return JobPlan(request.job, request.view, {"ops": {OP_NAMES[kind]: {"config": config}}}, None, views)
