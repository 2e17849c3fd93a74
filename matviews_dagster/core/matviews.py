"""``MatViews``: the one entry point for scripts, the CLI and the Dagster layer.

Each call normalizes its arguments, checks every view name, and runs one operation per view
(``operation``: lock, run row, service, result), for many views over the dependency graph
(``batch``), and returns ``OperationResult``s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

import psycopg

from . import batch
from .arguments import UNSET, normalize_flag, normalize_row_count, normalize_strategy, positive_integer
from .database import Database
from .defined_views import ViewRef, refuse_other_databases
from .definition import MatViewDefinition
from .planning import plan_views
from .readings import Readings
from .result import OperationResult
from .settings import MatViewsSettings
from .source_versions import SourceGate
from .view_operations import apply_one, create_one, delete_one, refresh_one
from .vocabulary import DEFAULT_MAX_PARALLEL, SOURCES_UNCHANGED, RunKind

if TYPE_CHECKING:
    from .drift import ViewPlan
    from .health_checks import CheckOutcome
    from .strategy_trial import Trial


class MatViews(Readings):
    """Create, refresh and delete materialized views with recorded runs.

    >>> mv = MatViews(dsn="postgresql://localhost/app", definitions=load_definitions("matviews.yaml"))
    >>> mv.refresh("mv_users", "exact").rows_count                      # doctest: +SKIP
    500
    >>> [r.view for r in mv.refresh_many(max_parallel=4)]              # doctest: +SKIP
    ['public.mv_users', 'public.mv_user_accounts']

    The keywords are ``MatViewsSettings``'s (``runs_dsn``, ``runs_schema``, ``lock_wait_timeout``,
    ``lock_timeout``, ``lock_retries``, ``statement_timeout``, ``application_name``; seconds,
    with their defaults and what each bounds there), or ``settings`` whole. Raises
    ``ValueError`` when a view is defined twice, ``TypeError`` for a keyword that is not a
    setting.
    """

    def __init__(
        self,
        dsn: str | None = None,
        definitions: Iterable[MatViewDefinition] = (),
        *,
        settings: MatViewsSettings | None = None,
        **options: Any,
    ) -> None:
        settings = replace(settings, **options) if settings else MatViewsSettings(dsn=dsn, **options)
        self.db = Database(settings if dsn is None or settings.dsn == dsn else replace(settings, dsn=dsn))
        definitions = list(definitions)
        refuse_other_databases(definitions, self.db.name)
        super().__init__(definitions, self.db.runs)

    @property
    def dsn(self) -> str:
        """The views' database, resolved (option, ``MATVIEWS_DSN``, ``DATABASE_URL``, embedded)."""
        return self.db.dsn

    def migrate(self) -> int:
        """Create or upgrade the run tables; returns the schema version."""
        return self.runs.migrate()

    # -- one view ---------------------------------------------------------------------

    def create(self, view: ViewRef, force: Any = None, *, dagster_run_id: str | None = None) -> OperationResult:
        """Create the view and its indexes; ``force`` recreates it (old one kept if that fails)."""
        flag = normalize_flag(force, "force")
        return create_one(self.db, self, self.definition(view), force=flag, dagster_run_id=dagster_run_id, conn=None)

    def refresh(
        self,
        view: ViewRef,
        row_count_strategy: Any = UNSET,
        *,
        strategy: str | None = None,
        create_if_missing: bool = False,
        dagster_run_id: str | None = None,
        describe: bool = False,
    ) -> OperationResult:
        """Refresh with the view's strategy (``strategy`` overrides once) and count rows.

        ``row_count_strategy`` omitted uses the definition's. With ``create_if_missing`` a
        missing view is created first (recorded as a create run, returned as ``created``). With
        ``describe``, a successful result also carries the view's ``description`` (columns,
        size) and ``database``, read on the same connection before the view's lock is released.
        """
        definition = self.definition(view)
        return refresh_one(
            self.db,
            self,
            definition,
            row_count_strategy=normalize_row_count(row_count_strategy, definition.row_count_strategy),
            strategy=normalize_strategy(strategy),
            create_if_missing=create_if_missing,
            dagster_run_id=dagster_run_id,
            describe=describe,
            conn=None,
        )

    def delete(self, view: ViewRef, cascade: Any = None, *, dagster_run_id: str | None = None) -> OperationResult:
        """Drop the view; ``cascade`` drops views that depend on it too (each defined one
        gets its own delete run)."""
        flag = normalize_flag(cascade, "cascade")
        return delete_one(self.db, self, self.definition(view), cascade=flag, dagster_run_id=dagster_run_id, conn=None)

    # -- many views -------------------------------------------------------------------

    def refresh_many(
        self,
        views: Iterable[ViewRef] | None = None,
        row_count_strategy: Any = UNSET,
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
        ``max_parallel`` connections; one view alone runs in the calling thread on a connection
        of its own. Results come as each view finishes. A view whose upstream view in the batch
        failed is not refreshed: its result is ``skipped`` and names that view; independent
        views go on. ``checks`` (``{view name: [check names]}``, see ``core.health_checks``)
        run on the view's connection right after a successful refresh. With ``if_changed``, a
        view whose sources are as its last refresh read them is not refreshed
        (``core.source_versions.SourceGate``; any doubt counts as changed): ``success``, outcome
        ``skipped (sources unchanged)``, no run row. Arguments are validated before anything
        runs (``ValueError``); the other arguments are those of ``refresh``.
        """
        selected = self.select(views)
        positive_integer(max_parallel, "max_parallel")
        chosen, wanted = normalize_strategy(strategy), dict(checks or {})

        def options(definition: MatViewDefinition) -> dict[str, Any]:
            return {
                "row_count_strategy": normalize_row_count(row_count_strategy, definition.row_count_strategy),
                "strategy": chosen,
                "create_if_missing": create_if_missing,
                "dagster_run_id": dagster_run_id,
                "describe": describe,
                "checks": wanted.get(definition.name, ()),
            }

        planned = {definition.name: options(definition) for definition in selected}  # checked before anything runs
        if not if_changed and len(selected) == 1:  # one view alone: in this thread, no batch
            return (refresh_one(self.db, self, d, **planned[d.name]) for d in selected)
        gate = SourceGate(self.db, self.graph_of(selected), list(planned)) if if_changed else None

        def one(definition: MatViewDefinition, conn: psycopg.Connection) -> OperationResult:
            if gate is not None and gate.unchanged(definition, conn):
                return OperationResult("refresh", definition.name, "success", SOURCES_UNCHANGED)
            return refresh_one(self.db, self, definition, conn, **planned[definition.name])

        return self._each("refresh", selected, one, max_parallel, dagster_run_id, alone=False)

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
        one = partial(create_one, self.db, self, force=flag, dagster_run_id=dagster_run_id)
        return self._each("create", selected, one, max_parallel, dagster_run_id)

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
        one = partial(delete_one, self.db, self, cascade=flag, dagster_run_id=dagster_run_id)
        return self._each("delete", selected, one, max_parallel, dagster_run_id, reverse=True)

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
        one = partial(apply_one, self.db, self, dagster_run_id=dagster_run_id)
        return self._each("create", selected, one, max_parallel, dagster_run_id)

    def _each(
        self,
        kind: RunKind,
        selected: list[MatViewDefinition],
        one: Callable[[MatViewDefinition, psycopg.Connection | None], OperationResult],
        max_parallel: int,
        dagster_run_id: str | None,
        *,
        reverse: bool = False,
        alone: bool = True,
    ) -> Iterator[OperationResult]:
        """``one`` on each selected view: one view ``alone`` in the calling thread, its operation
        opening its own connection; more (or one that needs a connection first) through ``batch``
        (worker connections, dependency order). ``max_parallel`` is checked now, the work starts
        on the first ``next``."""
        positive_integer(max_parallel, "max_parallel")
        if alone and len(selected) == 1:
            return (one(definition, None) for definition in selected)
        graph = self.graph_of(selected)
        return batch.run_batch(
            self.db,
            graph,
            kind,
            selected,
            one,
            max_parallel=max_parallel,
            dagster_run_id=dagster_run_id,
            reverse=reverse,
        )

    def plan(self, views: Iterable[ViewRef] | None = None) -> list[ViewPlan]:
        """What ``apply_many`` would do to each view (``drift.ViewPlan``: ``create``,
        ``unchanged`` or ``change`` with the query diff and index changes), in dependency
        order; for all views, also each ``orphan``. Reads only."""
        chosen = self.select(views)
        ordered = self.graph_of(chosen).order(d.name for d in chosen)
        return plan_views(self.db, self, ordered, orphans=views is None)

    def check_many(
        self, checks: Mapping[str, Sequence[str]], *, max_parallel: int = DEFAULT_MAX_PARALLEL
    ) -> Iterator[tuple[MatViewDefinition, list[CheckOutcome]]]:
        """Run health checks without refreshing: ``{view name: [check names]}``, up to
        ``max_parallel`` views at once; yields each view's outcomes as they come."""
        wanted = [(self.definition(view), names) for view, names in checks.items()]
        return batch.check_batch(self.db, wanted, max_parallel)

    # -- what operations share ----------------------------------------------------------

    def try_strategy(self, view: ViewRef, strategy: str) -> Trial:
        """Refresh ``view`` with its own strategy (a recorded run), then measure ``strategy``
        (``swap`` or ``regular``) on a copy of it, dropped after (``core/strategy_trial.py``).
        Raises ``ValueError`` for a strategy that cannot be tried or is the view's own, and
        ``RuntimeError`` when the view's own refresh failed or was not needed (nothing is tried
        then)."""
        from .strategy_trial import check_trial, measure_on_copy

        definition = self.definition(view)
        check_trial(definition, strategy)
        current = self.refresh(definition.name)
        if not current.ok:
            raise RuntimeError(f"the refresh of {definition.name} failed, nothing was tried: {current.error}")
        if current.outcome != "updated":  # refreshed meanwhile by another run: nothing measured to compare
            raise RuntimeError(
                f"the refresh of {definition.name} did not run ({current.what_happened}), so there is nothing to "
                "compare; run advise --try again"
            )
        return measure_on_copy(self.db, definition, strategy, current)

    def connect(self, purpose: str = "") -> psycopg.Connection:
        """``Database.connect``: an autocommit connection to the views' database."""
        return self.db.connect(purpose)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> MatViews:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
