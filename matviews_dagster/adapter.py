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
import runpy
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from .assets import view_keys
from .core.definition import MatViewDefinition
from .core.definitions_file import load_definitions
from .core.matviews import MatViews
from .core.messages import shown
from .core.settings import DEFAULTS, MatViewsSettings
from .core.store.requests import RunRequestQueue
from .core.vocabulary import CreateViewJob
from .resources import config_value
from .run_requests import JobPlan, Request, ViewTargets, parse_request, plan_run, split_views
from .translator import definitions_of

_LOCATIONS: dict[str, dg.Definitions] = {}
"""Code locations built by ``build_definitions`` in this process, by ``location_key``: a run
rebuilds the adapter resource from its config, and finds its ``Definitions`` here."""


def register_location(key: str, defs: dg.Definitions) -> None:
    _LOCATIONS[key] = defs


BACKENDS = ("inline", "queue", "graphql")
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,63}")


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


def validate_queue(queue: object) -> str:
    if not isinstance(queue, str) or not _QUEUE_NAME.fullmatch(queue):
        raise ValueError(f"queue {shown(queue)} is invalid: use 1-63 letters, digits, '_', '.' or '-'")
    return queue


class MatViewsAdapter(dg.ConfigurableResource):
    """Enqueue create/refresh/delete runs through the configured backend.

    ``queue`` needs only the views (``definitions_path`` or the code location); ``inline`` and
    ``graphql`` run the code location's own jobs, so they need its ``Definitions``: bound by
    ``build_definitions``, by ``bind(defs)``, or loaded from ``code_location`` (a Python file
    that defines them; env ``MATVIEWS_CODE_LOCATION``).
    """

    backend: str | None = Field(default=None, description="inline, queue or graphql (env MATVIEWS_ADAPTER).")
    default_queue: str | None = Field(default=None, description="Queue when none is given (env MATVIEWS_JOB_QUEUE).")
    dsn: str | None = Field(default=None, description="The views' database (default as everywhere).")
    runs_dsn: str | None = Field(default=None, description="Database of the run tables and the queue.")
    runs_schema: str = Field(default=DEFAULTS.runs_schema, description="Schema of the run tables and the queue.")
    definitions_path: str | None = Field(
        default=None, description="YAML with the views (env MATVIEWS_DEFINITIONS, default matviews.yaml)."
    )
    code_location: str | None = Field(
        default=None, description="Python file defining the Dagster Definitions (env MATVIEWS_CODE_LOCATION)."
    )
    graphql_url: str | None = Field(
        default=None, description="Dagster webserver for the graphql backend (env MATVIEWS_GRAPHQL_URL)."
    )
    location_name: str | None = Field(default=None, description="Code location, when the webserver has several.")
    location_key: str | None = Field(
        default=None, description="Set by build_definitions: the code location whose jobs this adapter runs."
    )
    _defs: dg.Definitions | None = PrivateAttr(default=None)

    def bind(self, defs: dg.Definitions) -> "MatViewsAdapter":
        """The same adapter, running and validating against this code location's views, jobs
        and asset keys (as its translator made them)."""
        adapter = self.model_copy()
        adapter._defs = defs
        return adapter

    def resolved_backend(self) -> str:
        backend = self.backend or os.environ.get("MATVIEWS_ADAPTER")
        if not backend:
            raise ValueError(
                "no adapter backend configured: set MATVIEWS_ADAPTER (or backend=) to inline, queue or graphql"
            )
        if backend not in BACKENDS:
            raise ValueError(f"adapter backend {shown(backend)} is unknown; use one of {', '.join(BACKENDS)}")
        return backend

    def resolved_queue(self, queue: str | None) -> str:
        if queue is None:
            queue = self.default_queue or os.environ.get("MATVIEWS_JOB_QUEUE") or "default"
        return validate_queue(queue)

    def code_location_definitions(self) -> dg.Definitions | None:
        """The bound ``Definitions``, else the ``build_definitions`` one this adapter belongs to,
        else those ``code_location`` defines, else ``None``."""
        if self._defs is None and self.location_key is not None:
            self._defs = _LOCATIONS.get(self.location_key)
        if self._defs is None:
            path = self.code_location or os.environ.get("MATVIEWS_CODE_LOCATION")
            if path:
                self._defs = _load_code_location(path)
        return self._defs

    def definitions(self) -> list[MatViewDefinition]:
        """The views requests may name: the code location's, else the definitions file's (the
        default connection's, and views with tenant schemas: ``split_views``)."""
        defs = self.code_location_definitions()
        if defs is not None:
            return [d for asset in _matview_assets(defs) for d in definitions_of(asset).values()]
        return load_definitions(self.definitions_path or os.environ.get("MATVIEWS_DEFINITIONS") or "matviews.yaml")

    def matviews(self) -> MatViews:
        settings = MatViewsSettings(
            dsn=config_value(self.dsn), runs_dsn=config_value(self.runs_dsn), runs_schema=self.runs_schema
        )
        return MatViews(definitions=split_views(self.definitions())[0], settings=settings)

    def enqueue(self, job: object, queue: str | None = None, args: Sequence[Any] = ()) -> EnqueuedRun:
        """Validate everything, then hand the run to the backend; raises ``ValueError`` for a
        bad job, view, option or queue before anything is queued or run."""
        backend = self.resolved_backend()
        queue_name = self.resolved_queue(queue)
        with self.matviews() as mv:
            request = parse_request(job, args, mv, split_views(self.definitions())[1])
            if backend == "queue":
                return _enqueue_request(RunRequestQueue(mv.runs), request, queue_name)
            defs = self.code_location_definitions()
            if defs is None:
                raise ValueError(
                    f"the {backend} backend runs your code location's jobs: bind its Definitions "
                    "(adapter.bind(defs)) or set code_location= / MATVIEWS_CODE_LOCATION to the file defining them"
                )
            plan = _runnable(plan_run(request, _targets(defs)), defs)
            if backend == "inline":
                return self._run_inline(defs, plan, queue_name, mv)
            return self._submit_graphql(plan, queue_name)

    def _run_inline(self, defs: dg.Definitions, plan: JobPlan, queue: str, mv: MatViews) -> EnqueuedRun:
        job = defs.resolve_job_def(plan.job_name) if plan.job_name != IMPLICIT_ASSET_JOB else None
        job = job or defs.resolve_implicit_global_asset_job_def()
        instance = dg.DagsterInstance.ephemeral()
        partitions = job.partitions_def
        if plan.partition_key and isinstance(partitions, dg.DynamicPartitionsDefinition) and partitions.name:
            instance.add_dynamic_partitions(partitions.name, [plan.partition_key])  # checked in the catalog
        result = job.execute_in_process(
            run_config=plan.run_config,
            asset_selection=plan.asset_selection,
            tags=plan.tags(queue),
            partition_key=plan.partition_key,
            instance=instance,
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
            raise ValueError(f"graphql_url {shown(url)} is invalid; use e.g. http://localhost:3000")
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


CONSUMERS_SEEN_WITHIN_SECONDS = 600.0
"""A queue sensor seen this recently counts as serving its views when a request is enqueued."""


def _enqueue_request(queue: RunRequestQueue, request: Request, queue_name: str) -> EnqueuedRun:
    """Insert the request (its view and normalized option, nothing else from the caller);
    refused when queue sensors are running and none of them serves the view."""
    consumers = queue.consumers(CONSUMERS_SEEN_WITHIN_SECONDS)
    if consumers and not any(request.view in views for views in consumers.values()):
        locations = ", ".join(sorted(consumer.split("#")[0] for consumer in consumers))
        raise ValueError(
            f"no code location serving this queue defines view {request.view} (running queue sensors: "
            f"{locations}); add the view to a code location's definitions, or enqueue a view one has"
        )
    args = [request.view, request.option] if request.option else [request.view]
    request_id = queue.enqueue(request.job, args, queue_name, request.view)
    return EnqueuedRun("queue", request.job, queue_name, request.view, request_id=request_id, status="pending")


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


IMPLICIT_ASSET_JOB = "__ASSET_JOB"


def _runnable(plan: JobPlan, defs: dg.Definitions) -> JobPlan:
    """The plan as this code location can run it: a refresh without the ``refresh_mat_views``
    job (a hand-written ``@matview_assets`` location) selects the view on the implicit asset
    job; a create or delete needs its job, and the error says how to add it."""
    if defs.get_repository_def().has_job(plan.job_name):
        return plan
    if plan.asset_selection:
        return replace(plan, job_name=IMPLICIT_ASSET_JOB)
    builder = "build_create_job" if plan.job_name == CreateViewJob else "build_delete_job"
    raise ValueError(
        f"the code location has no {plan.job_name} job: add matviews_dagster.{builder}(definitions) "
        "to its Definitions (build_definitions includes it)"
    )


def _matview_assets(defs: dg.Definitions) -> list[dg.AssetsDefinition]:
    return [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition) and definitions_of(a)]


def _targets(defs: dg.Definitions) -> ViewTargets:
    return view_keys(_matview_assets(defs))


def _load_code_location(path: str) -> dg.Definitions:
    """The ``Definitions`` a Python file defines (its ``defs``, or its only ``Definitions``)."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"code location {shown(path)} is not a file; point MATVIEWS_CODE_LOCATION at definitions.py")
    namespace = runpy.run_path(str(file))
    found = [value for value in namespace.values() if isinstance(value, dg.Definitions)]
    if isinstance(namespace.get("defs"), dg.Definitions):
        return namespace["defs"]
    if len(found) == 1:
        return found[0]
    raise ValueError(f"code location {path} defines {len(found)} Definitions objects; name the one to use 'defs'")
