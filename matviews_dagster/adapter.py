"""``MatViewsAdapter``: one stable call, ``enqueue(job, queue=, args=)``, for scripts and the CLI.

The backend is configuration (``backend=`` or env ``MATVIEWS_ADAPTER``), never detected:

- ``inline``: run the Dagster job now, in this process, and return its outcome;
- ``queue``: insert a row in ``mat_view_run_requests`` and return at once; the
  ``matviews_queue_sensor`` (run by ``dagster-daemon``) turns it into a Dagster run;
- ``graphql``: submit the job to a running Dagster webserver.

>>> adapter = MatViewsAdapter(backend="queue", definitions_path="matviews.yaml")  # doctest: +SKIP
>>> adapter.enqueue(RefreshViewJob, queue="heavy", args=["mv_users", "exact"])      # doctest: +SKIP
"""

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from .assets import refresh_op_name
from .core.arguments import UNSET, normalize_flag, normalize_row_count
from .core.definition import MatViewDefinition, load_definitions
from .core.operations import MatViews
from .core.requests import RunRequestQueue
from .ops import CreateViewJob, DeleteViewJob, RefreshViewJob
from .translator import DagsterMatViewTranslator

BACKENDS = ("inline", "queue", "graphql")
QUEUE_TAG = "matviews/queue"
REQUEST_TAG = "matviews/request_id"
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,63}")


@dataclass(frozen=True)
class JobPlan:
    """What to run in Dagster for one request: job, run config, asset selection."""

    job_name: str
    view: str
    option: dict[str, Any]
    run_config: dict[str, Any]
    asset_selection: list[dg.AssetKey] | None = None

    def tags(self, queue: str, request_id: int | None = None) -> dict[str, str]:
        tags = {QUEUE_TAG: queue, "matviews/view": self.view}
        if request_id is not None:
            tags[REQUEST_TAG] = str(request_id)
        return tags


@dataclass(frozen=True)
class EnqueuedRun:
    """What ``enqueue`` did: ``request_id`` (queue) or ``dagster_run_id`` (inline, graphql)."""

    backend: str
    job: str
    queue: str
    view: str
    request_id: int | None = None
    dagster_run_id: str | None = None
    status: str | None = None
    run_record_ids: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> str:
        target = f"request #{self.request_id}" if self.request_id is not None else f"run {self.dagster_run_id}"
        status = f" ({self.status})" if self.status else ""
        return f"{self.view}: {self.job} {target} on queue {self.queue} via {self.backend}{status}"


def job_name_of(job: object) -> str:
    """``CreateViewJob``/``RefreshViewJob``/``DeleteViewJob``, a job definition, or a job name."""
    name = getattr(job, "name", job)
    if name not in (CreateViewJob, RefreshViewJob, DeleteViewJob):
        raise ValueError(
            f"job {job!r} is not a matviews job; use CreateViewJob, RefreshViewJob or DeleteViewJob "
            f"({CreateViewJob}, {RefreshViewJob}, {DeleteViewJob})"
        )
    return str(name)


def plan_job(job: object, args: Sequence[Any], mv: MatViews) -> JobPlan:
    """Validate ``[view_or_definition_id, option]`` for ``job`` and build its run: raises
    ``ValueError`` for a bad job, an unknown view or a junk option, before anything is queued."""
    name = job_name_of(job)
    if isinstance(args, (str, bytes)) or not isinstance(args, Sequence) or not 1 <= len(args) <= 2:
        raise ValueError(f"args must be [view_or_definition_id] or [view_or_definition_id, option], got {args!r}")
    definition = mv.definition(args[0])
    option = args[1] if len(args) == 2 else UNSET
    if name == RefreshViewJob:
        rows = normalize_row_count(option, definition.row_count_strategy)
        key = DagsterMatViewTranslator().get_asset_key(definition)
        config = {"ops": {refresh_op_name(definition): {"config": {"row_count_strategy": rows}}}}
        return JobPlan(name, definition.name, {"row_count_strategy": rows}, config, [key])
    flag = "force" if name == CreateViewJob else "cascade"
    value = normalize_flag(None if option is UNSET else option, flag)
    op = "create_views" if name == CreateViewJob else "delete_views"
    config = {"ops": {op: {"config": {"views": [definition.name], flag: value}}}}
    return JobPlan(name, definition.name, {flag: value}, config)


def validate_queue(queue: object) -> str:
    if not isinstance(queue, str) or not _QUEUE_NAME.fullmatch(queue):
        raise ValueError(f"queue {queue!r} is invalid: use 1-63 letters, digits, '_', '.' or '-'")
    return queue


class MatViewsAdapter(dg.ConfigurableResource):
    """Enqueue create/refresh/delete runs through the configured backend."""

    backend: str | None = Field(default=None, description="inline, queue or graphql (env MATVIEWS_ADAPTER).")
    default_queue: str | None = Field(default=None, description="Queue when none is given (env MATVIEWS_JOB_QUEUE).")
    dsn: str | None = Field(default=None, description="The views' database (default as everywhere).")
    runs_dsn: str | None = Field(default=None, description="Database of the run tables and the queue.")
    runs_schema: str = Field(default="public", description="Schema of the run tables and the queue.")
    definitions_path: str | None = Field(
        default=None, description="YAML with the views (env MATVIEWS_DEFINITIONS, default matviews.yaml)."
    )
    graphql_url: str | None = Field(
        default=None, description="Dagster webserver for the graphql backend (env MATVIEWS_GRAPHQL_URL)."
    )
    location_name: str | None = Field(default=None, description="Code location, when the webserver has several.")
    _definitions: list[MatViewDefinition] | None = PrivateAttr(default=None)

    def with_definitions(self, definitions: Sequence[MatViewDefinition]) -> "MatViewsAdapter":
        """The same adapter, validating against these definitions instead of a YAML file."""
        adapter = self.model_copy()
        adapter._definitions = list(definitions)
        return adapter

    def resolved_backend(self) -> str:
        backend = self.backend or os.environ.get("MATVIEWS_ADAPTER")
        if not backend:
            raise ValueError(
                "no adapter backend configured: set MATVIEWS_ADAPTER (or backend=) to inline, queue or graphql"
            )
        if backend not in BACKENDS:
            raise ValueError(f"adapter backend {backend!r} is unknown; use one of {', '.join(BACKENDS)}")
        return backend

    def resolved_queue(self, queue: str | None) -> str:
        if queue is None:
            queue = self.default_queue or os.environ.get("MATVIEWS_JOB_QUEUE") or "default"
        return validate_queue(queue)

    def definitions(self) -> list[MatViewDefinition]:
        if self._definitions is not None:
            return self._definitions
        return load_definitions(self.definitions_path or os.environ.get("MATVIEWS_DEFINITIONS") or "matviews.yaml")

    def matviews(self) -> MatViews:
        return MatViews(
            dsn=self.dsn, definitions=self.definitions(), runs_dsn=self.runs_dsn, runs_schema=self.runs_schema
        )

    def enqueue(self, job: object, queue: str | None = None, args: Sequence[Any] = ()) -> EnqueuedRun:
        """Validate everything, then hand the run to the backend."""
        backend = self.resolved_backend()
        queue_name = self.resolved_queue(queue)
        with self.matviews() as mv:
            plan = plan_job(job, args, mv)
            if backend == "queue":
                request_id = RunRequestQueue(mv.runs).enqueue(plan.job_name, [plan.view, plan.option], queue_name)
                return EnqueuedRun(
                    backend, plan.job_name, queue_name, plan.view, request_id=request_id, status="pending"
                )
            if backend == "inline":
                return self._run_inline(plan, queue_name, mv)
            return self._submit_graphql(plan, queue_name)

    def _run_inline(self, plan: JobPlan, queue: str, mv: MatViews) -> EnqueuedRun:
        from .build import build_definitions

        defs = build_definitions(self.definitions(), dsn=mv.dsn, runs_dsn=self.runs_dsn, runs_schema=self.runs_schema)
        result = defs.resolve_job_def(plan.job_name).execute_in_process(
            run_config=plan.run_config,
            asset_selection=plan.asset_selection,
            tags=plan.tags(queue),
            raise_on_error=False,
        )
        rows = mv.runs.for_dagster_run(result.run_id)
        status = "success" if result.success else "failure"
        return EnqueuedRun("inline", plan.job_name, queue, plan.view, None, result.run_id, status, rows)

    def _submit_graphql(self, plan: JobPlan, queue: str) -> EnqueuedRun:
        from urllib.parse import urlsplit

        from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

        url = self.graphql_url or os.environ.get("MATVIEWS_GRAPHQL_URL") or "http://localhost:3000"
        parts = urlsplit(url)
        if not parts.hostname:
            raise ValueError(f"graphql_url {url!r} is invalid; use e.g. http://localhost:3000")
        client = DagsterGraphQLClient(
            parts.hostname,
            port_number=parts.port,
            use_https=parts.scheme == "https",
            path_prefix=parts.path.rstrip("/"),
        )
        try:
            run_id = client.submit_job_execution(
                plan.job_name,
                repository_location_name=self.location_name,
                run_config=plan.run_config,
                tags=plan.tags(queue),
                asset_selection=plan.asset_selection,
            )
        except Exception as exc:
            cause = _connection_error(exc)
            if cause is not None:
                raise RuntimeError(
                    f"cannot reach the Dagster webserver at {url} ({type(cause).__name__}); "
                    "start it (dagster dev or dagster-webserver) or set MATVIEWS_GRAPHQL_URL"
                ) from None
            if not isinstance(exc, DagsterGraphQLClientError):
                raise
            detail = " ".join(str(exc).split())[:300]
            raise RuntimeError(
                f"could not submit {plan.job_name} to the Dagster webserver at {url}: {detail}"
            ) from None
        return EnqueuedRun("graphql", plan.job_name, queue, plan.view, None, run_id, "submitted")


def _connection_error(exc: BaseException) -> BaseException | None:
    """The connection failure (refused, unreachable, timed out) behind ``exc``, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (ConnectionError, TimeoutError)) or "ConnectionError" in type(current).__name__:
            return current
        current = current.__cause__ or current.__context__
    return None
