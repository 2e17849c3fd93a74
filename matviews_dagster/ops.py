"""Create and delete jobs (one op each, attempting every selected view), and how a request for
any of the three jobs becomes a Dagster run (``JobPlan``)."""

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
    CreateViewJob,
    DeleteViewJob,
    RefreshViewJob,
    RunKind,
)
from .events import config_words
from .resources import MatViewsResource

QUEUE_TAG = "matviews/queue"
REQUEST_TAG = "matviews/request_id"
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
        for result in stream:
            results.append(result)
            log = context.log.info if result.ok else context.log.error
            log(
                f"{result.view}: {result.outcome} ({result.duration_ms} ms)"
                + (f": {result.error}" if result.error else "")
            )
            if result.outcome == "created" and result.view in keys:
                yield dg.AssetMaterialization(
                    asset_key=keys[result.view],
                    metadata={
                        "run_record_id": dg.MetadataValue.text(str(result.run_id)),
                        "outcome": "created",
                        "duration_ms": dg.MetadataValue.int(result.duration_ms or 0),
                        **({"dagster/row_count": result.rows_count} if result.rows_count is not None else {}),
                    },
                )
        summary = dg.MetadataValue.md(_summary(results))
        failed = [r for r in results if not r.ok]
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
    """A validated request to run one of the three jobs for one view (a refresh with
    ``downstream`` also selects the views built on it, in ``views``)."""

    job: str
    view: str
    option: dict[str, Any]
    views: tuple[str, ...] = ()


def parse_request(job: object, args: Sequence[Any], mv: MatViews) -> Request:
    """Validate ``[view_or_definition_id, option]`` for ``job``; raises ``ValueError`` for a
    job that is not ours, an unknown view or a junk option, before anything is queued or run.

    A refresh's option is a row count (``"exact"``, ``None`` for none, ...) or a mapping with
    ``row_count_strategy`` and/or ``downstream``; left out, each view's definition decides
    when the run starts. Create and delete take ``force`` / ``cascade``."""
    name = getattr(job, "name", job)
    if name not in JOB_KINDS:
        raise ValueError(
            f"job {job!r} is not a matviews job; use CreateViewJob, RefreshViewJob or DeleteViewJob "
            f"({CreateViewJob}, {RefreshViewJob}, {DeleteViewJob})"
        )
    if isinstance(args, (str, bytes)) or not isinstance(args, Sequence) or not 1 <= len(args) <= 2:
        raise ValueError(f"args must be [view_or_definition_id] or [view_or_definition_id, option], got {args!r}")
    definition = mv.definition(args[0])
    option = args[1] if len(args) == 2 else UNSET
    kind = JOB_KINDS[str(name)]
    if kind == "refresh":
        return _refresh_request(str(name), definition, option, mv)
    flag = FLAG_OF[kind]
    return Request(str(name), definition.name, {flag: normalize_flag(None if option is UNSET else option, flag)})


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
    """What to run in Dagster for one request: job, run config, asset selection."""

    job_name: str
    view: str
    run_config: dict[str, Any]
    asset_selection: list[dg.AssetKey] | None = None

    def tags(self, queue: str, request_id: int | None = None) -> dict[str, str]:
        tags = {QUEUE_TAG: queue, "matviews/view": self.view}
        if request_id is not None:
            tags[REQUEST_TAG] = str(request_id)
        return tags


def plan_run(request: Request, targets: ViewTargets) -> JobPlan:
    """The Dagster run for ``request`` in the code location whose views are ``targets``:
    a refresh selects the view's asset (its translated key) and configures its step."""
    kind = JOB_KINDS[request.job]
    if kind == "refresh":
        missing = [view for view in request.views or (request.view,) if view not in targets]
        if missing:
            raise ValueError(f"view {', '.join(missing)} is not an asset of this code location")
        keys = [targets[view][0] for view in request.views or (request.view,)]
        ops = {targets[view][1] for view in request.views or (request.view,)}
        config = {k: v for k, v in request.option.items() if k != "downstream"}
        run_config = {"ops": {op: {"config": config} for op in sorted(ops)}} if config else {}
        return JobPlan(request.job, request.view, run_config, keys)
    config = {"views": [request.view], **request.option}
    return JobPlan(request.job, request.view, {"ops": {OP_NAMES[kind]: {"config": config}}})
