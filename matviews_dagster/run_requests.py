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
from .core.names import validate_identifier
from .core.tenants import for_tenant, read_tenant_schemas
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

    @property
    def tenant(self) -> str | None:
        """The tenant (partition) a refresh of a view with tenants is for."""
        return self.option.get("tenant")

    def run_options(self) -> str:
        """What must be equal for requests to share one run: the job and its options (the
        selection aside), as canonical JSON."""
        options = {k: v for k, v in self.option.items() if k != "downstream"}
        if self.tenant is not None:  # a partition of one view with tenants: a run of its own
            options["view"] = self.view
        return json.dumps([self.job, options], sort_keys=True)


def coalesce(requests: Sequence[Request]) -> Request:
    """One request serving ``requests`` (same ``run_options``): the union of their views,
    each once, in the order first requested."""
    first = requests[0]
    if any(r.run_options() != first.run_options() for r in requests):
        raise ValueError("only requests with the same job and options share a run")
    views = tuple(dict.fromkeys(v for r in requests for v in r.views or (r.view,)))
    option = {k: v for k, v in first.option.items() if k != "downstream"}
    if first.tenant is not None:  # one view with tenants, one tenant (run_options says so)
        return Request(first.job, first.view, option, views)
    return Request(first.job, views[0] if len(views) == 1 else counted(len(views), "view"), option, views)


def split_views(
    definitions: Sequence[MatViewDefinition],
) -> tuple[list[MatViewDefinition], dict[str, MatViewDefinition]]:
    """The views requests may name: those of the default connection, and the views with
    tenant schemas by their unqualified name (``mv_usage``, as a queued request keeps it:
    ``public.mv_usage``); a request for one names its tenant."""
    plain = [d for d in definitions if d.database is None and d.tenants is None]
    templates = [d for d in definitions if d.tenants is not None and d.tenants.by_schema]
    tenants = {name: d for d in templates for name in (d.qualified.name, d.name)}
    return plain, tenants


def parse_request(
    job: object, args: Sequence[Any], mv: MatViews, tenants: Mapping[str, MatViewDefinition] | None = None
) -> Request:
    """Validate ``[view_or_definition_id, option]`` for ``job``; raises ``ValueError`` for a
    job that is not ours, an unknown view or a junk option, before anything is queued or run.
    Only ASCII digits (or an ``int``) name a definition id; messages quote at most a short
    prefix of a bad value.

    A refresh's option is a row count (``"exact"``, ``None`` for none, ...) or a mapping with
    ``row_count_strategy`` and/or ``downstream``; left out, each view's definition decides
    when the run starts. Create and delete take ``force`` / ``cascade``. A view with tenant
    schemas (``tenants``, by unqualified name) is refreshed for one tenant:
    ``["mv_usage", {"tenant": "acme"}]``, a run of that partition."""
    name = getattr(job, "name", job)
    if not isinstance(name, str) or name not in JOB_KINDS:
        raise ValueError(
            f"job {shown(job)} is not a matviews job; use CreateViewJob, RefreshViewJob or DeleteViewJob "
            f"({CreateViewJob}, {RefreshViewJob}, {DeleteViewJob})"
        )
    if isinstance(args, (str, bytes)) or not isinstance(args, Sequence) or not 1 <= len(args) <= 2:
        raise ValueError(f"args must be [view_or_definition_id] or [view_or_definition_id, option], got {shown(args)}")
    option = args[1] if len(args) == 2 else UNSET
    kind = JOB_KINDS[name]
    template = (tenants or {}).get(args[0]) if isinstance(args[0], str) else None
    if template is not None:
        return _tenant_request(name, kind, template, option, mv)
    definition = mv.definition(args[0])
    if kind == "refresh":
        return _refresh_request(name, definition, option, mv)
    flag = FLAG_OF[kind]
    parsed = {flag: normalize_flag(None if option is UNSET else option, flag)}
    return Request(name, definition.name, parsed, (definition.name,))


def _tenant_request(job: str, kind: str, template: MatViewDefinition, option: Any, mv: MatViews) -> Request:
    """A refresh of ``template``'s copy in one tenant: ``{"tenant": T}`` and, optionally,
    ``row_count_strategy``; a tenant of a pattern is checked in the catalog now."""
    name = template.qualified.name
    if kind != "refresh":
        raise ValueError(
            f"{name} has tenants: a tenant's view is created by its first refresh "
            f'(enqueue(RefreshViewJob, args=["{name}", {{"tenant": "acme"}}])); delete one with '
            "MatViews over the estate or the matviews CLI"
        )
    if not isinstance(option, Mapping) or not isinstance(option.get("tenant"), str):
        raise ValueError(f'{name} has tenants: name one, args=["{name}", {{"tenant": "acme"}}]')
    unknown = sorted(set(option) - {"tenant", "row_count_strategy"})
    if unknown:
        raise ValueError(f"a refresh of a tenant's view takes tenant and row_count_strategy, not {', '.join(unknown)}")
    tenant = validate_identifier(option["tenant"], "tenant")
    listed = template.tenants.listed if template.tenants else []
    if listed and tenant not in listed:
        raise ValueError(f"{name} has no tenant {shown(tenant)}; its tenants: {', '.join(listed)}")
    if template.tenants is not None and template.tenants.dynamic:
        with mv.connect("tenants") as conn:
            found = read_tenant_schemas(conn, [template]).by_template[template.name]
        if tenant not in found:
            raise ValueError(
                f"{name} has no tenant {shown(tenant)}: no such schema matches its tenants "
                f"({template.tenants.describe()}); its tenants now: {', '.join(found[:10]) or 'none'}"
            )
    parsed: dict[str, Any] = {"tenant": tenant}
    if "row_count_strategy" in option:
        parsed["row_count_strategy"] = normalize_row_count(option["row_count_strategy"], template.row_count_strategy)
    return Request(job, template.name, parsed, (for_tenant(template, tenant).name,))


def _refresh_request(job: str, definition: MatViewDefinition, option: Any, mv: MatViews) -> Request:
    if isinstance(option, Mapping) and "tenant" in option:
        raise ValueError(f"{definition.name} has no tenants; leave tenant out of its option")
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
    partition_key: str | None = None

    def tags(self, queue: str, run_key: str | None = None, requests: int | None = None) -> dict[str, str]:
        """``matviews/queue``, ``matviews/view`` (one view) or ``matviews/views`` (how many),
        ``dagster/partition`` and ``matviews/tenant`` for a tenant's refresh, and for a queued
        run its ``matviews/run_key`` and how many requests it serves."""
        tags = {QUEUE_TAG: queue}
        if len(self.views) > 1:
            tags["matviews/views"] = str(len(self.views))
        else:
            tags["matviews/view"] = self.views[0] if self.views else self.view
        if self.partition_key is not None:
            tags["dagster/partition"] = tags["matviews/tenant"] = self.partition_key
        if run_key is not None:
            tags[RUN_KEY_TAG] = run_key
            tags["matviews/requests"] = str(requests or 1)
        return tags


def plan_run(request: Request, targets: ViewTargets) -> JobPlan:
    """The Dagster run for ``request`` in the code location whose views are ``targets``:
    a refresh selects the views' assets (their translated keys) and configures their step;
    create and delete configure their op with the views."""
    kind = JOB_KINDS[request.job]
    if request.tenant is not None:  # a partition of a view with tenants: that step's job
        if request.view not in targets:
            raise ValueError(f"view {request.view} is not an asset of this code location")
        key, op = targets[request.view]
        config = {k: v for k, v in request.option.items() if k != "tenant"}
        run_config = {"ops": {op: {"config": config}}} if config else {}
        return JobPlan(tenant_job_name(op), request.view, run_config, [key], request.views, request.tenant)
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


def tenant_job_name(op: str) -> str:
    """The job refreshing the partitioned step ``op`` (views with tenants), one partition a run."""
    return f"refresh_{op}"
