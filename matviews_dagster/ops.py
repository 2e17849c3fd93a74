"""Create and delete jobs (one op each, attempting every selected view), and how a request for
any of the three jobs becomes a Dagster run (``JobPlan``)."""

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
from pydantic import Field

from .core.arguments import UNSET, normalize_flag, normalize_row_count
from .core.definition import MatViewDefinition
from .core.matviews import MatViews
from .core.result import OperationResult
from .core.vocabulary import (
    FLAG_OF,
    JOB_KINDS,
    OP_NAMES,
    RUN_KEY_TAG,
    CreateViewJob,
    DeleteViewJob,
    RefreshViewJob,
    RunKind,
)
from .core.wording import shown
from .events import config_words, failure_reason, serving_requests
from .resources import MatViewsResource

QUEUE_TAG = "matviews/queue"

_SUMMARY_COLUMNS = ("view", "status", "outcome", "duration_ms", "run_id", "error")
ViewTargets = Mapping[str, tuple[dg.AssetKey, str]]
"""``{view name: (asset key, op name)}``: where each view lives in a code location."""


class CreateViewsConfig(dg.Config):
    views: list[str] = Field(default_factory=list, description="Views to create; empty: all.")
    force: bool = Field(default=False, description="Drop and recreate views that exist.")


class DeleteViewsConfig(dg.Config):
    views: list[str] = Field(default_factory=list, description="Views to delete; empty: all.")
    cascade: bool = Field(default=False, description="Also drop views that depend on them.")


def _summary(results: list[OperationResult]) -> str:
    rows = [
        "| " + " | ".join("" if (v := getattr(r, column)) is None else str(v) for column in _SUMMARY_COLUMNS) + " |"
        for r in results
    ]
    return "\n".join(["| view | status | outcome | ms | run | error |", "|---|---|---|---|---|---|", *rows])


def _names(mv: MatViews, views: Sequence[str]) -> list[str]:
    return [definition.name for definition in mv.select(list(views) or None)]


def _created(key: dg.AssetKey, result: OperationResult) -> dg.AssetMaterialization:
    """A view the create job made, as a materialization of its asset."""
    return dg.AssetMaterialization(
        asset_key=key,
        metadata={
            "run_record_id": dg.MetadataValue.text(str(result.run_id)),
            "outcome": "created",
            "duration_ms": dg.MetadataValue.int(result.duration_ms or 0),
            **({"dagster/row_count": result.rows_count} if result.rows_count is not None else {}),
        },
    )


def _build_job(
    definitions: Sequence[MatViewDefinition], kind: RunKind, description: str, keys: Mapping[str, dg.AssetKey]
) -> dg.JobDefinition:
    """One op that runs ``kind`` on each selected view (dependency order, ``max_parallel`` at
    once), reports a summary, then fails naming each view that failed or was skipped. A view
    created by the op is reported as a materialization of its asset."""
    config_class = CreateViewsConfig if kind == "create" else DeleteViewsConfig
    flag = FLAG_OF[kind]

    @dg.op(name=OP_NAMES[kind], out=dg.Out(list, io_manager_key="io_manager"))
    def views_op(
        context: dg.OpExecutionContext,
        config: config_class,  # type: ignore[valid-type]
        matviews: MatViewsResource,
    ) -> Iterator[Any]:
        operation = matviews.create if kind == "create" else matviews.delete
        try:
            stream = operation(
                definitions, config.views, **{flag: getattr(config, flag)}, dagster_run_id=context.run.run_id
            )
        except ValueError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        results = []
        with matviews.matviews(definitions) as mv, serving_requests(context, mv, _names(mv, config.views)) as settle:
            for result in stream:
                results.append(result)
                log = context.log.info if result.ok else context.log.error
                log(
                    f"{result.view}: {result.outcome} ({result.duration_ms} ms)"
                    + (f": {result.error}" if result.error else "")
                )
                if result.outcome == "created" and result.view in keys:
                    yield _created(keys[result.view], result)
            failed = [r for r in results if not r.ok]
            settle({r.view: failure_reason(r) for r in failed})
        summary = dg.MetadataValue.md(_summary(results))
        if failed:
            raise dg.Failure(
                description="; ".join(
                    f"{r.view}: {config_words(r.error or '')}" + (f" Hint: {config_words(r.hint)}." if r.hint else "")
                    for r in failed
                ),
                metadata={"summary": summary, "failed_views": [r.view for r in failed]},
                allow_retries=False,
            )
        yield dg.Output([r.to_dict() for r in results], metadata={"summary": summary, "views": len(results)})

    @dg.job(name=next(job for job, k in JOB_KINDS.items() if k == kind), description=description)
    def views_job() -> None:
        views_op()

    return views_job


def build_create_job(
    definitions: Sequence[MatViewDefinition], keys: Mapping[str, dg.AssetKey] | None = None
) -> dg.JobDefinition:
    """``create_mat_views``: op ``create_views``, config ``views`` (empty: all) and ``force``;
    ``keys`` (``{view name: asset key}``) names the assets its creates materialize."""
    return _build_job(definitions, "create", "Create materialized views (force: recreate).", keys or {})


def build_delete_job(definitions: Sequence[MatViewDefinition]) -> dg.JobDefinition:
    """``delete_mat_views``: op ``delete_views``, config ``views`` (empty: all) and ``cascade``."""
    return _build_job(definitions, "delete", "Delete materialized views (cascade: with dependents).", {})


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
    return Request(first.job, views[0] if len(views) == 1 else f"{len(views)} views", option, views)


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
