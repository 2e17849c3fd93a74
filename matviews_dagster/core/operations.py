"""``MatViews``: the one entry point for scripts, the CLI and the Dagster layer.

An operation normalizes its arguments, takes the view's lock, records a ``running`` row (and
marks rows of dead processes abandoned), runs the service, finalizes the row whatever happens,
and returns an ``OperationResult``. ``refresh_many``, ``create_many`` and ``delete_many`` run
one operation per view over the dependency graph, several views at once.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from .arguments import UNSET, normalize_flag, normalize_row_count, normalize_strategy
from .catalog import NotAMaterializedView, describe_view, matview_state
from .connection import DatabaseUnavailable, connect
from .definition import MatViewDefinition
from .dsn import resolve_dsn, scrub
from .graph import ViewGraph
from .locks import ViewLockTimeout, view_lock
from .names import QualifiedName
from .result import OperationResult
from .runs import RunStore
from .scheduler import run_in_dependency_order
from .services import ServiceResponse, create_view, delete_view, drop_swap_leftovers, refresh_view
from .services.locking import LockPolicy
from .services.response import describe_db_error
from .vocabulary import DEFAULT_MAX_PARALLEL, RunKind

if TYPE_CHECKING:
    from .checks import CheckOutcome

Work = Callable[[psycopg.Connection], ServiceResponse]
ViewRef = MatViewDefinition | str | int


class MatViews:
    """Create, refresh and delete materialized views with recorded runs.

    >>> mv = MatViews(dsn="postgresql://localhost/app", definitions=load_definitions("matviews.yaml"))
    >>> mv.refresh("mv_users", "exact").rows_count                      # doctest: +SKIP
    500
    >>> [r.view for r in mv.refresh_many(max_parallel=4)]              # doctest: +SKIP
    ['public.mv_users', 'public.mv_user_accounts']

    ``lock_wait_timeout`` (seconds) bounds the wait for another operation on the same view;
    ``lock_timeout`` (seconds) and ``lock_retries`` bound each wait for a table lock readers
    queue behind; ``statement_timeout`` (seconds, None: the server's) applies to the work.
    Raises ``ValueError`` when a view is defined twice or views read each other in a cycle.
    """

    def __init__(
        self,
        dsn: str | None = None,
        definitions: Iterable[MatViewDefinition] = (),
        *,
        runs_dsn: str | None = None,
        runs_schema: str = "public",
        lock_wait_timeout: float = 60.0,
        lock_timeout: float = 2.0,
        lock_retries: int = 5,
        statement_timeout: float | None = None,
        application_name: str = "matviews",
    ) -> None:
        self._definitions: dict[str, MatViewDefinition] = {}
        for definition in definitions:
            if definition.name in self._definitions:
                raise ValueError(f"view {definition.name} is defined twice; names must be unique")
            self._definitions[definition.name] = definition
        self.dsn = resolve_dsn(dsn)
        self.runs = RunStore(runs_dsn or self.dsn, runs_schema)
        self.lock_wait_timeout = lock_wait_timeout
        self.lock_policy = LockPolicy(timeout_ms=int(lock_timeout * 1000), attempts=lock_retries)
        self.statement_timeout = statement_timeout
        self.application_name = application_name
        self._upserted: dict[str, tuple[MatViewDefinition, int]] = {}
        self._pending: list[Future[None]] = []
        self._pending_lock = threading.Lock()
        self._timeouts: weakref.WeakKeyDictionary[psycopg.Connection, float | None] = weakref.WeakKeyDictionary()

    # -- definitions ------------------------------------------------------------------

    @property
    def definitions(self) -> list[MatViewDefinition]:
        return list(self._definitions.values())

    @cached_property
    def graph(self) -> ViewGraph:
        """The views' dependency graph (built on first use: it analyses every query)."""
        return ViewGraph(self._definitions.values())

    def definition(self, view: ViewRef) -> MatViewDefinition:
        """Resolve a definition, a view name (``view`` or ``schema.view``) or a definition id."""
        if isinstance(view, MatViewDefinition):
            return view
        if isinstance(view, int) and not isinstance(view, bool):
            return self._definition_by_id(view)
        if isinstance(view, str) and view.isdigit():
            return self._definition_by_id(int(view))
        if not isinstance(view, str):
            raise ValueError(f"view must be a name, a definition id or a MatViewDefinition, got {view!r}")
        definition = self._known(view)
        if definition is None:
            known = ", ".join(sorted(self._definitions)) or "none"
            raise ValueError(f"unknown view {view!r}; defined views: {known}")
        return definition

    def migrate(self) -> int:
        """Create or upgrade the run tables; returns the schema version."""
        return self.runs.migrate()

    # -- one view ---------------------------------------------------------------------

    def create(self, view: ViewRef, force: Any = None, *, dagster_run_id: str | None = None) -> OperationResult:
        """Create the view and its indexes; ``force`` recreates it (old one kept if that fails)."""
        return self._create(self.definition(view), normalize_flag(force, "force"), dagster_run_id)

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
        return self._refresh(
            definition, rows, normalize_strategy(strategy), create_if_missing, dagster_run_id, describe
        )

    def delete(self, view: ViewRef, cascade: Any = None, *, dagster_run_id: str | None = None) -> OperationResult:
        """Drop the view; ``cascade`` drops views that depend on it too."""
        return self._delete(self.definition(view), normalize_flag(cascade, "cascade"), dagster_run_id)

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
    ) -> Iterator[OperationResult]:
        """Refresh ``views`` (default: all) upstream first, up to ``max_parallel`` at once.

        Each view is still one operation (its lock, its run row, its row count), on one of
        ``max_parallel`` connections. Results come as each view finishes. A view whose
        upstream view in the batch failed is not refreshed: its result is ``skipped`` and
        names that view; independent views go on. ``checks`` (``{view name: [check names]}``,
        see ``core.checks``) run on the view's connection right after a successful refresh.
        Arguments are validated before anything runs (``ValueError``); the other arguments
        are those of ``refresh``.
        """
        selected = self.select(views)
        chosen = normalize_strategy(strategy)
        rows = {d.name: normalize_row_count(row_count, d.row_count_strategy) for d in selected}
        wanted = dict(checks or {})

        def one(definition: MatViewDefinition, conn: psycopg.Connection) -> OperationResult:
            result = self._refresh(
                definition, rows[definition.name], chosen, create_if_missing, dagster_run_id, describe, conn
            )
            if result.ok and wanted.get(definition.name):
                result = replace(result, checks=tuple(_checked(conn, definition, wanted[definition.name])))
            return result

        return self._many("refresh", selected, one, max_parallel=max_parallel, dagster_run_id=dagster_run_id)

    def check_many(
        self, checks: Mapping[str, Sequence[str]], *, max_parallel: int = DEFAULT_MAX_PARALLEL
    ) -> Iterator[tuple[MatViewDefinition, list[CheckOutcome]]]:
        """Run health checks without refreshing: ``{view name: [check names]}``, up to
        ``max_parallel`` views at once; yields each view's outcomes as they come."""
        by_name: dict[str, MatViewDefinition] = {}
        wanted: dict[str, Sequence[str]] = {}
        for view, names in checks.items():
            definition = self.definition(view)
            by_name[definition.name] = definition
            wanted[definition.name] = names
        _check_parallel(max_parallel)
        return self._check_batch(by_name, wanted, max_parallel)

    def _check_batch(
        self, by_name: dict[str, MatViewDefinition], checks: dict[str, Sequence[str]], max_parallel: int
    ) -> Iterator[tuple[MatViewDefinition, list[CheckOutcome]]]:
        connections = _WorkerConnections(lambda: self.connect("checks"))
        try:
            yield from run_in_dependency_order(
                list(by_name),
                lambda name: (),
                lambda name: (by_name[name], _checked(connections.get(), by_name[name], checks[name])),
                succeeded=lambda outcome: True,
                skip=lambda name, failed: (by_name[name], []),
                max_parallel=max_parallel,
                interrupt=connections.cancel,
            )
        finally:
            connections.close()

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
        flag = normalize_flag(force, "force")
        selected = self.select(views)
        return self._many(
            "create",
            selected,
            lambda d, conn: self._create(d, flag, dagster_run_id, conn),
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
        flag = normalize_flag(cascade, "cascade")
        selected = self.select(views)
        return self._many(
            "delete",
            selected,
            lambda d, conn: self._delete(d, flag, dagster_run_id, conn),
            max_parallel=max_parallel,
            dagster_run_id=dagster_run_id,
            reverse=True,
        )

    # -- history and lifecycle --------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        """Every defined view as ``matviews list`` shows it: ``name``, ``strategy``, ``exists``,
        ``populated``, ``rows_estimate`` (``pg_class.reltuples``; where Postgres has no
        estimate, the count of the last refresh that counted), ``size_bytes`` and ``last_run``
        (``{kind, status, finished_at, duration_ms}`` of the newest run of any kind, or None)."""
        with self.connect("list") as conn:
            described = [(d, describe_view(conn, d.qualified)) for d in self.definitions]
            database = conn.info.dbname
        names = [d.name for d in self.definitions]
        latest = self.runs.latest(database_name=database, view_names=names)
        counted = self.runs.last_row_counts(database_name=database, view_names=names)
        rows = []
        for definition, description in described:
            last = latest.get(definition.name)
            estimate = description.rows_estimate
            if estimate is None and description.exists:
                estimate = counted.get(definition.name)
            rows.append(
                {
                    "name": definition.name,
                    "strategy": definition.refresh_strategy,
                    "exists": description.exists,
                    "populated": description.populated,
                    "rows_estimate": estimate,
                    "size_bytes": description.size_bytes,
                    "last_run": None
                    if last is None
                    else {k: last[k] for k in ("kind", "status", "finished_at", "duration_ms")},
                }
            )
        return rows

    def history(self, *, kind: RunKind | None = None, view: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Run rows newest first, each with ``kind``; ``view`` may omit the ``public.`` schema."""
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        name = None
        if view is not None:
            known = self._known(view)
            name = known.name if known is not None else str(QualifiedName.parse(view, "view name"))
        return self.runs.history(kind=kind, view=name, limit=limit)

    def connect(self, purpose: str = "") -> psycopg.Connection:
        """An autocommit connection to the views' database, tagged with ``application_name``.

        Raises ``DatabaseUnavailable`` (password masked) when the server cannot be reached.
        """
        conn = connect(self.dsn, f"{self.application_name} {purpose}".strip())
        with contextlib.suppress(psycopg.Error):  # Postgres >= 14: stop our work soon after we die
            conn.execute("SET client_connection_check_interval = '1s'")
        return conn

    def close(self) -> None:
        self.runs.close()

    def __enter__(self) -> MatViews:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the operations ---------------------------------------------------------------

    def _create(
        self,
        definition: MatViewDefinition,
        force: bool,
        dagster_run_id: str | None,
        conn: psycopg.Connection | None = None,
    ) -> OperationResult:
        options = {"force": force, "sql": definition.sql}
        with self._session("create", definition, dagster_run_id, conn) as session:
            if isinstance(session, OperationResult):
                return session
            expected, upstream = self._expected_reads(definition), self._upstream(definition)
            return session.record(
                "create",
                options,
                lambda c: create_view(c, definition, force=force, expected_reads=expected, upstream=upstream),
            )

    def _refresh(
        self,
        definition: MatViewDefinition,
        rows: str,
        strategy: str | None,
        create_if_missing: bool,
        dagster_run_id: str | None,
        describe: bool,
        conn: psycopg.Connection | None = None,
    ) -> OperationResult:
        chosen = strategy or definition.refresh_strategy
        options = {"strategy": chosen, "row_count_strategy": rows, "sql": definition.sql}
        with self._session("refresh", definition, dagster_run_id, conn) as session:
            if isinstance(session, OperationResult):
                return session
            created = None
            if create_if_missing and not _exists(session.conn, definition.qualified):
                expected, upstream = self._expected_reads(definition), self._upstream(definition)
                created = session.record(
                    "create",
                    {"force": False, "reason": "create_if_missing", "sql": definition.sql},
                    lambda c: create_view(c, definition, expected_reads=expected, upstream=upstream),
                )
                result = session.record("refresh", options, lambda c: _populated_by_create(created, rows))
            else:
                result = session.record(
                    "refresh",
                    options,
                    lambda c: refresh_view(
                        c, definition, strategy=chosen, row_count_strategy=rows, lock_policy=self.lock_policy
                    ),
                )
            extra: dict[str, Any] = {"created": created}
            if describe and result.ok and not session.conn.broken:
                with contextlib.suppress(psycopg.Error):  # the run is recorded; a description is a bonus
                    extra["description"] = describe_view(session.conn, definition.qualified)
                    extra["database"] = session.database
            return _replace(result, **extra)

    def _delete(
        self,
        definition: MatViewDefinition,
        cascade: bool,
        dagster_run_id: str | None,
        conn: psycopg.Connection | None = None,
    ) -> OperationResult:
        options = {"cascade": cascade}
        with self._session("delete", definition, dagster_run_id, conn) as session:
            if isinstance(session, OperationResult):
                return session
            result = session.record("delete", options, lambda c: delete_view(c, definition.qualified, cascade=cascade))
            if result.dropped:
                self._record_cascade(result, session.database, dagster_run_id)
            return result

    def _record_cascade(self, result: OperationResult, database: str, dagster_run_id: str | None) -> None:
        """A delete row for every defined view that ``DROP ... CASCADE`` dropped with ``result``'s."""
        for dropped in result.dropped:
            name = dropped.split(" (")[0]
            if name in self._definitions:
                self.runs.record_finished(
                    "delete",
                    status="success",
                    view_name=name,
                    database_name=database,
                    definition_id=self._definition_id(self._definitions[name]),
                    meta={"outcome": "deleted", "dropped_by": result.view, "cascade_of_run": result.run_id},
                    dagster_run_id=dagster_run_id,
                )

    # -- the steps every operation takes ----------------------------------------------

    @contextlib.contextmanager
    def _session(
        self, kind: RunKind, definition: MatViewDefinition, dagster_run_id: str | None, conn: psycopg.Connection | None
    ) -> Iterator[_Session | OperationResult]:
        """Connect (unless a batch lends its connection), take the view's lock, apply the
        statement timeout and drop an interrupted swap's leftovers; yields the session that
        records runs, or the ``failed`` result when the lock wait timed out."""
        with contextlib.ExitStack() as stack:
            if conn is None:
                conn = stack.enter_context(self.connect(str(definition.qualified)))
            database = conn.info.dbname
            try:
                waited_ms = stack.enter_context(view_lock(conn, definition.qualified, self.lock_wait_timeout))
            except ViewLockTimeout as exc:
                yield self._lock_timed_out(kind, definition, database, dagster_run_id, exc)
                return
            self._apply_statement_timeout(conn, definition.statement_timeout or self.statement_timeout)
            leftovers = drop_swap_leftovers(conn, definition.qualified)
            yield _Session(self, conn, definition, database, dagster_run_id, waited_ms, leftovers)

    def _apply_statement_timeout(self, conn: psycopg.Connection, seconds: float | None) -> None:
        """Set the session's ``statement_timeout`` (after the lock: a lock wait is bounded by
        ``lock_wait_timeout`` alone); a reused connection is reset to the server's default."""
        if self._timeouts.get(conn) == seconds:
            return
        if seconds:
            conn.execute("SELECT set_config('statement_timeout', %s, false)", (f"{int(seconds * 1000)}ms",))
        elif conn in self._timeouts:
            conn.execute("RESET statement_timeout")
        self._timeouts[conn] = seconds

    def _lock_timed_out(
        self,
        kind: RunKind,
        definition: MatViewDefinition,
        database: str,
        dagster_run_id: str | None,
        exc: ViewLockTimeout,
    ) -> OperationResult:
        name = str(definition.qualified)
        held_by = [
            f"{row['kind']} run #{row['id']} (started {row['started_at']:%Y-%m-%d %H:%M:%S%z})"
            for row in self.runs.running(database_name=database, view_name=name)
        ]
        error = f"{exc}: {', '.join(held_by) or exc.holder or 'an operation that has since finished'}"
        hint = "retry when it has finished"
        run_id = self.runs.record_finished(
            kind,
            status="failed",
            view_name=name,
            database_name=database,
            definition_id=self._definition_id(definition),
            error=error,
            meta={"lock_wait_ms": exc.waited_ms, "lock_holder": exc.holder},
            dagster_run_id=dagster_run_id,
        )
        return OperationResult(kind, name, "failed", "error", run_id, None, None, error, hint)

    def _not_started(
        self, kind: RunKind, definition: MatViewDefinition, error: str, dagster_run_id: str | None
    ) -> OperationResult:
        """A ``failed`` row for a view whose work could not start (no connection to be had)."""
        hint = "lower max_parallel (--parallel) or raise the server's max_connections"
        run_id = self.runs.record_finished(
            kind,
            status="failed",
            view_name=definition.name,
            database_name=_database_of(self.dsn),
            definition_id=self._definition_id(definition),
            error=error,
            meta={"hint": hint},
            dagster_run_id=dagster_run_id,
        )
        return OperationResult(kind, definition.name, "failed", "error", run_id, None, None, error, hint)

    # -- internals --------------------------------------------------------------------

    def select(self, views: Iterable[ViewRef] | None) -> list[MatViewDefinition]:
        """The named views (each once, in the order given), or all for ``None``. Every name is
        checked first: one ``ValueError`` names every unknown view."""
        if views is None:
            return self.definitions
        chosen: dict[str, MatViewDefinition] = {}
        unknown: list[str] = []
        for view in views:
            if isinstance(view, str) and not view.isdigit() and self._known(view) is None:
                unknown.append(view)
                continue
            definition = self.definition(view)
            chosen.setdefault(definition.name, definition)
        if unknown:
            known = ", ".join(sorted(self._definitions)) or "none"
            names = ", ".join(repr(name) for name in unknown)
            raise ValueError(f"unknown view{'s' if len(unknown) > 1 else ''} {names}; defined views: {known}")
        return list(chosen.values())

    def _known(self, view: str) -> MatViewDefinition | None:
        """The definition a name refers to, ``None`` when none; ``ValueError`` for a bad name.

        An unqualified name is ``public``'s view, else the one defined view of that name in
        any schema (two or more: ``ValueError`` listing them, write ``schema.view``)."""
        qualified = QualifiedName.parse(view, "view name")
        found = self._definitions.get(str(qualified))
        if found is not None or "." in view:
            return found
        matches = [d for d in self._definitions.values() if d.qualified.name == view]
        if len(matches) > 1:
            raise ValueError(f"view {view!r} is ambiguous: {', '.join(d.name for d in matches)}; write schema.view")
        return matches[0] if matches else None

    def _many(
        self,
        kind: RunKind,
        selected: list[MatViewDefinition],
        one: Callable[[MatViewDefinition, psycopg.Connection], OperationResult],
        *,
        max_parallel: int,
        dagster_run_id: str | None,
        reverse: bool = False,
    ) -> Iterator[OperationResult]:
        """Run ``one`` on every view over the dependency graph, ``max_parallel`` connections."""
        _check_parallel(max_parallel)
        by_name = {d.name: d for d in selected}
        graph = self.graph if all(self._definitions.get(n) is d for n, d in by_name.items()) else ViewGraph(selected)
        order = [d.name for d in graph.order(by_name)]
        related = graph.downstream if reverse else graph.upstream
        if reverse:
            order.reverse()
        return self._run_batch(kind, by_name, order, related, one, max_parallel, dagster_run_id)

    def _run_batch(
        self,
        kind: RunKind,
        by_name: dict[str, MatViewDefinition],
        order: list[str],
        related: Callable[[str], Iterable[str]],
        one: Callable[[MatViewDefinition, psycopg.Connection], OperationResult],
        max_parallel: int,
        dagster_run_id: str | None,
    ) -> Iterator[OperationResult]:
        if not order:
            return
        pool = ThreadPoolExecutor(1, thread_name_prefix="matviews-mirror")  # runs while the workers connect
        mirror = pool.submit(self._mirror, [by_name[n] for n in order])
        pool.shutdown(wait=False)
        with self._pending_lock:
            self._pending.append(mirror)
        connections = _WorkerConnections(lambda: self.connect(f"{kind} batch"))

        def work(name: str) -> OperationResult:
            try:
                conn = connections.get()
            except DatabaseUnavailable as exc:
                if not connections.opened_any:  # an unreachable server: nothing ran, say so once
                    raise
                # e.g. max_connections reached: this view fails, the others go on
                return self._not_started(kind, by_name[name], str(exc), dagster_run_id)
            return one(by_name[name], conn)

        try:
            yield from run_in_dependency_order(
                order,
                related,
                work,
                succeeded=lambda result: result.ok,
                skip=lambda name, failed: OperationResult.skipped(kind, name, failed),
                max_parallel=max_parallel,
                interrupt=connections.cancel,
            )
        finally:
            connections.close()

    def _definition_by_id(self, definition_id: int) -> MatViewDefinition:
        definition = self.runs.get_definition(definition_id)
        if definition is None:
            raise ValueError(f"unknown definition id {definition_id}")
        return definition

    def _expected_reads(self, definition: MatViewDefinition) -> tuple[QualifiedName, ...] | None:
        """What the dependency graph says the view reads (None for a definition not registered)."""
        return self.graph.reads(definition.name) if self._definitions.get(definition.name) is definition else None

    def _upstream(self, definition: MatViewDefinition) -> tuple[QualifiedName, ...]:
        """The defined views the view reads."""
        if self._definitions.get(definition.name) is not definition:
            return ()
        return tuple(QualifiedName.parse(name) for name in self.graph.upstream(definition.name))

    def _mirror(self, definitions: list[MatViewDefinition]) -> None:
        ids = self.runs.upsert_definitions(definitions)
        self._upserted.update({d.name: (d, ids[d.name]) for d in definitions})

    def _definition_id(self, definition: MatViewDefinition) -> int:
        """The definition's id in ``mat_view_definitions``, upserted once per definition object
        (a batch mirrors its definitions in the background; the first run row waits for it)."""
        with self._pending_lock:
            pending, self._pending = self._pending, []
        for mirror in pending:
            mirror.result()
        cached = self._upserted.get(definition.name)
        if cached is None or cached[0] is not definition:
            cached = (definition, self.runs.upsert_definition(definition))
            self._upserted[definition.name] = cached
        return cached[1]


class _Session:
    """The view's lock is held: record and run one or more steps, each with its run row."""

    def __init__(
        self,
        owner: MatViews,
        conn: psycopg.Connection,
        definition: MatViewDefinition,
        database: str,
        dagster_run_id: str | None,
        lock_wait_ms: int,
        leftovers: list[str],
    ) -> None:
        self.owner = owner
        self.conn = conn
        self.definition = definition
        self.database = database
        self.dagster_run_id = dagster_run_id
        self.lock_wait_ms = lock_wait_ms
        self.leftovers = leftovers
        self.reconciled = False

    def record(self, kind: RunKind, options: dict[str, Any], work: Work) -> OperationResult:
        """Insert the ``running`` row, run ``work`` on the session's connection, finalize the
        row whatever happens (an interrupt too), and return the result."""
        store = self.owner.runs
        view = str(self.definition.qualified)
        meta: dict[str, Any] = {
            "options": options,
            "lock_wait_ms": self.lock_wait_ms,
            "pid": os.getpid(),
            "backend_pid": self.conn.info.backend_pid,
        }
        if self.leftovers:
            meta["dropped_swap_leftovers"] = self.leftovers
        run_id = store.start(
            kind,
            view_name=view,
            database_name=self.database,
            definition_id=self.owner._definition_id(self.definition),
            meta=meta,
            dagster_run_id=self.dagster_run_id,
            reconcile=not self.reconciled,
        )
        self.reconciled = True
        started = time.monotonic()
        try:
            response = work(self.conn)
        except Exception as exc:
            response = ServiceResponse.failure(f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=8))
        except BaseException as exc:
            store.finish(
                kind,
                run_id,
                status="failed",
                duration_ms=_elapsed_ms(started),
                meta={},
                error=f"interrupted ({type(exc).__name__})",
            )
            raise
        duration_ms = _elapsed_ms(started)
        status = "success" if response.ok else "failed"
        error = scrub(response.error, self.owner.dsn) if response.error else None
        rows_count = response.payload.get("rows_count")
        final_meta = {**response.meta, "outcome": response.status, "payload": response.payload}
        if response.hint:
            final_meta["hint"] = response.hint
        store.finish(
            kind,
            run_id,
            status=status,
            duration_ms=duration_ms,
            meta=final_meta,
            error=error,
            rows_count=rows_count if kind == "refresh" else None,
        )
        return OperationResult(
            kind=kind,
            view=view,
            status=status,
            outcome=response.status,
            run_id=run_id,
            duration_ms=duration_ms,
            rows_count=rows_count,
            error=error,
            hint=response.hint,
            warnings=tuple(response.meta.get("warnings", ())),
            dropped=tuple(f"{name} ({kind})" for name, kind in response.payload.get("dropped_dependents", ())),
        )


class _WorkerConnections:
    """One work connection per worker thread of a batch, reused for its views; a broken one
    is replaced. ``cancel`` stops the statements in flight (an interrupted batch)."""

    def __init__(self, connect: Callable[[], psycopg.Connection]) -> None:
        self._connect = connect
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: list[psycopg.Connection] = []

    @property
    def opened_any(self) -> bool:
        return bool(self._opened)

    def get(self) -> psycopg.Connection:
        conn: psycopg.Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._opened.append(conn)
        return conn

    def cancel(self) -> None:
        with self._lock:
            for conn in self._opened:
                if not conn.closed:
                    conn.cancel_safe(timeout=5)

    def close(self) -> None:
        with self._lock:
            for conn in self._opened:
                conn.close()
            self._opened.clear()


def _replace(result: OperationResult, **changes: Any) -> OperationResult:
    return replace(result, **{k: v for k, v in changes.items() if v is not None})


def _checked(conn: psycopg.Connection, definition: MatViewDefinition, names: Sequence[str]) -> list[CheckOutcome]:
    """The checks' outcomes; a database error fails every check with its message."""
    from .checks import CheckOutcome, run_checks  # only when checks run (not on the CLI's path)

    try:
        return run_checks(conn, definition, list(names))
    except psycopg.Error as exc:
        message = f"the check could not run: {describe_db_error(exc)}"
        return [CheckOutcome(name, False, message) for name in names]


def _check_parallel(max_parallel: object) -> None:
    if not isinstance(max_parallel, int) or isinstance(max_parallel, bool) or max_parallel < 1:
        raise ValueError(f"max_parallel must be a positive integer, got {max_parallel!r}")


def _database_of(dsn: str) -> str:
    try:
        return str(conninfo_to_dict(dsn).get("dbname") or "?")
    except psycopg.Error:
        return "?"


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _exists(conn: psycopg.Connection, name: QualifiedName) -> bool:
    try:
        return matview_state(conn, name) is not None
    except NotAMaterializedView:
        return True  # let the refresh report what the name really is


def _populated_by_create(created: OperationResult, rows: str) -> ServiceResponse:
    """The refresh step right after a create: the data is fresh, so nothing runs twice."""
    if not created.ok:
        return ServiceResponse.failure(f"could not create the missing view: {created.error}", hint=created.hint)
    return ServiceResponse(
        "created",
        payload={"rows_count": None if rows == "none" else created.rows_count},
        meta={"populated_by_create_run": created.run_id, "row_count_strategy": rows},
    )
