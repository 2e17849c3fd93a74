"""``MatViews``: the one entry point for scripts, the CLI and the Dagster layer.

Each call normalizes its arguments, checks every view name, and runs one operation per view
(``operation``: lock, run row, service, result), for many views over the dependency graph
(``batch``), and returns ``OperationResult``s.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import psycopg

from . import batch
from .arguments import UNSET, normalize_flag, normalize_row_count, normalize_strategy
from .connection import connect
from .definition import MatViewDefinition
from .dsn import resolve_dsn
from .flows import apply_one, create_one, delete_one, refresh_one
from .inventory import view_status
from .names import QualifiedName
from .planning import plan_views
from .registry import DefinedViews, ViewRef
from .result import OperationResult
from .services.locking import LockPolicy
from .settings import DEFAULTS
from .source_versions import SourceGate
from .store import RunStore
from .vocabulary import DEFAULT_MAX_PARALLEL, REQUEST_STATUSES, SOURCES_UNCHANGED, RunKind
from .wording import shown

if TYPE_CHECKING:
    from .checks import CheckOutcome
    from .drift import ViewPlan
    from .store.requests import RunRequestRow


class MatViews(DefinedViews):
    """Create, refresh and delete materialized views with recorded runs.

    >>> mv = MatViews(dsn="postgresql://localhost/app", definitions=load_definitions("matviews.yaml"))
    >>> mv.refresh("mv_users", "exact").rows_count                      # doctest: +SKIP
    500
    >>> [r.view for r in mv.refresh_many(max_parallel=4)]              # doctest: +SKIP
    ['public.mv_users', 'public.mv_user_accounts']

    ``lock_wait_timeout`` (seconds) bounds the wait for another operation on the same view;
    ``lock_timeout`` (seconds) and ``lock_retries`` bound each wait for a table lock readers
    queue behind; ``statement_timeout`` (seconds, None: the server's) applies to the work.
    Raises ``ValueError`` when a view is defined twice.
    """

    def __init__(
        self,
        dsn: str | None = None,
        definitions: Iterable[MatViewDefinition] = (),
        *,
        runs_dsn: str | None = None,
        runs_schema: str = DEFAULTS.runs_schema,
        lock_wait_timeout: float = DEFAULTS.lock_wait_timeout,
        lock_timeout: float = DEFAULTS.lock_timeout,
        lock_retries: int = DEFAULTS.lock_retries,
        statement_timeout: float | None = DEFAULTS.statement_timeout,
        application_name: str = DEFAULTS.application_name,
    ) -> None:
        super().__init__(definitions)
        self.dsn = resolve_dsn(dsn)
        self.runs = RunStore(runs_dsn or self.dsn, runs_schema)
        self.lock_wait_timeout = lock_wait_timeout
        self.lock_policy = LockPolicy(timeout_ms=int(lock_timeout * 1000), attempts=lock_retries)
        self.statement_timeout = statement_timeout
        self.application_name = application_name

    def migrate(self) -> int:
        """Create or upgrade the run tables; returns the schema version."""
        return self.runs.migrate()

    # -- one view ---------------------------------------------------------------------

    def create(self, view: ViewRef, force: Any = None, *, dagster_run_id: str | None = None) -> OperationResult:
        """Create the view and its indexes; ``force`` recreates it (old one kept if that fails)."""
        flag = normalize_flag(force, "force")
        return create_one(self, self.definition(view), force=flag, dagster_run_id=dagster_run_id, conn=None)

    def refresh(
        self,
        view: ViewRef,
        row_count: Any = UNSET,
        *,
        strategy: str | None = None,
        create_if_missing: bool = False,
        dagster_run_id: str | None = None,
        describe: bool = False,
    ) -> OperationResult:
        """Refresh with the view's strategy (``strategy`` overrides once) and count rows.

        ``row_count`` omitted uses the definition's ``row_count_strategy``. With
        ``create_if_missing`` a missing view is created first (recorded as a create run,
        returned as ``created``). With ``describe``, a successful result also carries the
        view's ``description`` (columns, size) and ``database``, read on the same connection
        before the view's lock is released.
        """
        definition = self.definition(view)
        rows = normalize_row_count(row_count, definition.row_count_strategy)
        chosen = normalize_strategy(strategy)
        return refresh_one(
            self,
            definition,
            rows=rows,
            strategy=chosen,
            create_if_missing=create_if_missing,
            dagster_run_id=dagster_run_id,
            describe=describe,
            conn=None,
        )

    def delete(self, view: ViewRef, cascade: Any = None, *, dagster_run_id: str | None = None) -> OperationResult:
        """Drop the view; ``cascade`` drops views that depend on it too (each defined one
        gets its own delete run)."""
        flag = normalize_flag(cascade, "cascade")
        return delete_one(self, self.definition(view), cascade=flag, dagster_run_id=dagster_run_id, conn=None)

    # -- many views -------------------------------------------------------------------

    def refresh_many(
        self,
        views: Iterable[ViewRef] | None = None,
        row_count: Any = UNSET,
        *,
        strategy: str | None = None,
        max_parallel: int = DEFAULT_MAX_PARALLEL,
        create_if_missing: bool = False,
        dagster_run_id: str | None = None,
        describe: bool = False,
        checks: Mapping[str, Sequence[str]] | None = None,
        if_changed: bool = False,
    ) -> Iterator[OperationResult]:
        """Refresh ``views`` (default: all) upstream first, up to ``max_parallel`` at once.

        Each view is still one operation (its lock, its run row, its row count), on one of
        ``max_parallel`` connections. Results come as each view finishes. A view whose
        upstream view in the batch failed is not refreshed: its result is ``skipped`` and
        names that view; independent views go on. ``checks`` (``{view name: [check names]}``,
        see ``core.checks``) run on the view's connection right after a successful refresh.
        With ``if_changed``, a view whose sources are as its last refresh read them is not
        refreshed (``core.source_versions.SourceGate``; any doubt counts as changed): ``success``,
        outcome ``skipped (sources unchanged)``, no run row. Arguments are validated before
        anything runs (``ValueError``); the other arguments are those of ``refresh``.
        """
        selected = self.select(views)
        chosen = normalize_strategy(strategy)
        rows = {d.name: normalize_row_count(row_count, d.row_count_strategy) for d in selected}
        wanted = dict(checks or {})

        gate = SourceGate(self.runs, self.graph_of(selected), [d.name for d in selected]) if if_changed else None

        def one(definition: MatViewDefinition, conn: psycopg.Connection) -> OperationResult:
            if gate is not None and gate.unchanged(definition, conn):
                return OperationResult("refresh", definition.name, "success", SOURCES_UNCHANGED)
            result = refresh_one(
                self,
                definition,
                rows=rows[definition.name],
                strategy=chosen,
                create_if_missing=create_if_missing,
                dagster_run_id=dagster_run_id,
                describe=describe,
                conn=conn,
            )
            if result.ok and wanted.get(definition.name):
                result = replace(result, checks=tuple(batch.checked(self, conn, definition, wanted[definition.name])))
            return result

        return batch.run_batch(self, "refresh", selected, one, max_parallel=max_parallel, dagster_run_id=dagster_run_id)

    def create_many(
        self,
        views: Iterable[ViewRef] | None = None,
        force: Any = None,
        *,
        max_parallel: int = DEFAULT_MAX_PARALLEL,
        dagster_run_id: str | None = None,
    ) -> Iterator[OperationResult]:
        """Create ``views`` (default: all) upstream first, up to ``max_parallel`` at once; a
        view whose upstream view failed to be created is ``skipped``."""
        flag, selected = normalize_flag(force, "force"), self.select(views)
        return batch.run_batch(
            self,
            "create",
            selected,
            lambda definition, conn: create_one(self, definition, force=flag, dagster_run_id=dagster_run_id, conn=conn),
            max_parallel=max_parallel,
            dagster_run_id=dagster_run_id,
        )

    def delete_many(
        self,
        views: Iterable[ViewRef] | None = None,
        cascade: Any = None,
        *,
        max_parallel: int = DEFAULT_MAX_PARALLEL,
        dagster_run_id: str | None = None,
    ) -> Iterator[OperationResult]:
        """Drop ``views`` (default: all), the views built on others first; a view a failed
        delete still depends on is ``skipped``."""
        flag, selected = normalize_flag(cascade, "cascade"), self.select(views)
        return batch.run_batch(
            self,
            "delete",
            selected,
            lambda definition, conn: delete_one(
                self, definition, cascade=flag, dagster_run_id=dagster_run_id, conn=conn
            ),
            max_parallel=max_parallel,
            dagster_run_id=dagster_run_id,
            reverse=True,
        )

    def apply_many(
        self,
        views: Iterable[ViewRef] | None = None,
        *,
        max_parallel: int = DEFAULT_MAX_PARALLEL,
        dagster_run_id: str | None = None,
    ) -> Iterator[OperationResult]:
        """Make ``views`` (default: all) match their definitions, upstream first: create the
        missing, rebuild those whose query changed (keeping owner, grants, comments, other
        indexes and the views built on them), alter indexes and comments in place; each is a
        create run (``skipped`` when unchanged) whose ``meta.change`` holds the plan."""
        selected = self.select(views)
        return batch.run_batch(
            self,
            "create",
            selected,
            lambda definition, conn: apply_one(self, definition, dagster_run_id=dagster_run_id, conn=conn),
            max_parallel=max_parallel,
            dagster_run_id=dagster_run_id,
        )

    def plan(self, views: Iterable[ViewRef] | None = None) -> list[ViewPlan]:
        """What ``apply_many`` would do to each view (``drift.ViewPlan``: ``create``,
        ``unchanged`` or ``change`` with the query diff and index changes), in dependency
        order; for all views, also each ``orphan``. Reads only."""
        chosen = self.select(views)
        return plan_views(self, self.graph_of(chosen).order(d.name for d in chosen), orphans=views is None)

    def check_many(
        self, checks: Mapping[str, Sequence[str]], *, max_parallel: int = DEFAULT_MAX_PARALLEL
    ) -> Iterator[tuple[MatViewDefinition, list[CheckOutcome]]]:
        """Run health checks without refreshing: ``{view name: [check names]}``, up to
        ``max_parallel`` views at once; yields each view's outcomes as they come."""
        wanted = [(self.definition(view), names) for view, names in checks.items()]
        return batch.check_batch(self, wanted, max_parallel)

    # -- what is there ----------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        """Every defined view's state in the catalog and its last run (``inventory.view_status``)."""
        return view_status(self)

    def history(self, *, kind: RunKind | None = None, view: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Run rows newest first, each with ``kind``; ``view`` may omit the ``public.`` schema."""
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(f"limit must be a positive integer, got {shown(limit)}")
        name = None
        if view is not None:
            known = self._known(view)
            name = known.name if known is not None else str(QualifiedName.parse(view, "view name"))
        return self.runs.history(kind=kind, view=name, limit=limit)

    def requests(self, *, status: str | None = None, limit: int = 20) -> list[RunRequestRow]:
        """The adapter's queued requests newest first (``pending``, ``submitted``, ``success``
        or ``failed``), each with the Dagster run that served it and why it failed."""
        from .store.requests import RunRequestQueue

        if status is not None and status not in REQUEST_STATUSES:
            raise ValueError(f"status must be one of {', '.join(REQUEST_STATUSES)}, got {shown(status)}")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(f"limit must be a positive integer, got {shown(limit)}")
        return RunRequestQueue(self.runs).recent(status=status, limit=limit)

    # -- what operations share ----------------------------------------------------------

    def connect(self, purpose: str = "") -> psycopg.Connection:
        """An autocommit connection to the views' database, tagged with ``application_name``,
        that stops its statement soon after this process dies (PostgreSQL 14+). Raises
        ``DatabaseUnavailable`` (password masked) when the server cannot be reached."""
        return connect(self.dsn, f"{self.application_name} {purpose}".strip(), check_client=True)

    def close(self) -> None:
        self.runs.close()

    def __enter__(self) -> MatViews:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
