"""``MatViews``: the one entry point for scripts, the CLI and the Dagster layer.

An operation (the seed's "job") normalizes its arguments, takes the view's lock, records a
``running`` row, runs the service, finalizes the row whatever happens, and returns a concise
dict ``{status, outcome, run_id, kind, view, duration_ms, rows_count, error, hint}``.
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from collections.abc import Callable, Iterable
from typing import Any

import psycopg

from .arguments import UNSET, normalize_flag, normalize_row_count, normalize_strategy
from .catalog import NotAMaterializedView, describe_view, matview_state
from .definition import MatViewDefinition
from .dsn import mask_dsn, resolve_dsn, scrub
from .locks import ViewLockTimeout, lock_holder, view_lock
from .names import QualifiedName
from .runs import RunKind, RunStore
from .services import ServiceResponse, create_view, delete_view, drop_swap_leftovers, refresh_view
from .services.locking import LockPolicy

Work = Callable[[psycopg.Connection], ServiceResponse]


class DatabaseUnavailable(RuntimeError):
    """The view's database could not be reached; nothing was executed."""


class MatViews:
    """Create, refresh and delete materialized views with recorded runs.

    >>> mv = MatViews(dsn="postgresql://localhost/app", definitions=load_definitions("matviews.yaml"))
    >>> mv.refresh("mv_users", "exact")  # doctest: +SKIP
    {'status': 'success', 'outcome': 'updated', 'run_id': 7, 'rows_count': 500, ...}
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
        self._definition_ids: dict[str, int] = {}

    # -- public API -------------------------------------------------------------------

    @property
    def definitions(self) -> list[MatViewDefinition]:
        return list(self._definitions.values())

    def definition(self, view: MatViewDefinition | str | int) -> MatViewDefinition:
        """Resolve a definition, a view name (``view`` or ``schema.view``) or a definition id."""
        if isinstance(view, MatViewDefinition):
            return view
        if isinstance(view, int) and not isinstance(view, bool):
            return self._definition_by_id(view)
        if isinstance(view, str) and view.isdigit():
            return self._definition_by_id(int(view))
        if not isinstance(view, str):
            raise ValueError(f"view must be a name, a definition id or a MatViewDefinition, got {view!r}")
        name = str(QualifiedName.parse(view, "view name"))
        if name not in self._definitions:
            known = ", ".join(sorted(self._definitions)) or "none"
            raise ValueError(f"unknown view {view!r}; defined views: {known}")
        return self._definitions[name]

    def migrate(self) -> int:
        """Create or upgrade the run tables; returns the schema version."""
        return self.runs.migrate()

    def create(
        self, view: MatViewDefinition | str | int, force: Any = None, *, dagster_run_id: str | None = None
    ) -> dict[str, Any]:
        """Create the view and its indexes; ``force`` recreates it (old one kept if that fails)."""
        force_flag = normalize_flag(force, "force")
        definition = self.definition(view)
        options = {"force": force_flag, "sql": definition.sql}
        return self._locked(
            "create",
            definition,
            dagster_run_id,
            lambda session: session.run(
                "create", options, lambda conn: create_view(conn, definition, force=force_flag)
            ),
        )

    def refresh(
        self,
        view: MatViewDefinition | str | int,
        row_count: Any = UNSET,
        *,
        strategy: str | None = None,
        create_if_missing: bool = False,
        dagster_run_id: str | None = None,
        describe: bool = False,
    ) -> dict[str, Any]:
        """Refresh with the view's strategy (``strategy`` overrides once) and count rows.

        ``row_count`` omitted uses the definition's ``row_count_strategy``. With
        ``create_if_missing`` a missing view is created first (recorded as a create run, whose
        result dict is returned under ``created``). With ``describe``, a successful result also
        carries the view's ``description`` (columns, size) and ``database``, read on the same
        connection before the view's lock is released.
        """
        definition = self.definition(view)
        rows = normalize_row_count(row_count, definition.row_count_strategy)
        chosen = normalize_strategy(strategy) or definition.refresh_strategy
        options = {"strategy": chosen, "row_count_strategy": rows, "sql": definition.sql}

        def refresh(conn: psycopg.Connection) -> ServiceResponse:
            return refresh_view(
                conn, definition, strategy=chosen, row_count_strategy=rows, lock_policy=self.lock_policy
            )

        def steps(session: _Session) -> dict[str, Any]:
            if create_if_missing and not _exists(session.conn, definition.qualified):
                created = session.run(
                    "create",
                    {"force": False, "reason": "create_if_missing", "sql": definition.sql},
                    lambda conn: create_view(conn, definition),
                )
                result = session.run("refresh", options, lambda conn: _populated_by_create(conn, created, rows))
                result["created"] = created
            else:
                result = session.run("refresh", options, refresh)
            if describe and result["status"] == "success" and not session.conn.broken:
                with contextlib.suppress(psycopg.Error):  # the run is recorded; a description is a bonus
                    result["description"] = describe_view(session.conn, definition.qualified)
                    result["database"] = session.database
            return result

        return self._locked("refresh", definition, dagster_run_id, steps)

    def delete(
        self, view: MatViewDefinition | str | int, cascade: Any = None, *, dagster_run_id: str | None = None
    ) -> dict[str, Any]:
        """Drop the view; ``cascade`` drops views that depend on it too."""
        cascade_flag = normalize_flag(cascade, "cascade")
        definition = self.definition(view)
        options = {"cascade": cascade_flag}
        return self._locked(
            "delete",
            definition,
            dagster_run_id,
            lambda session: session.run(
                "delete", options, lambda conn: delete_view(conn, definition.qualified, cascade=cascade_flag)
            ),
        )

    def history(self, *, kind: RunKind | None = None, view: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Run rows newest first, each with ``kind``; ``view`` may omit the ``public.`` schema."""
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        name = str(QualifiedName.parse(view, "view name")) if view is not None else None
        return self.runs.history(kind=kind, view=name, limit=limit)

    def close(self) -> None:
        self.runs.close()

    def __enter__(self) -> MatViews:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------

    def _definition_by_id(self, definition_id: int) -> MatViewDefinition:
        definition = self.runs.get_definition(definition_id)
        if definition is None:
            raise ValueError(f"unknown definition id {definition_id}")
        return definition

    def _definition_id(self, definition: MatViewDefinition) -> int:
        key = definition.model_dump_json()
        if key not in self._definition_ids:
            self._definition_ids[key] = self.runs.upsert_definition(definition)
        return self._definition_ids[key]

    def connect(self, purpose: str = "") -> psycopg.Connection:
        """A connection to the views' database, tagged with ``application_name``."""
        app = f"{self.application_name} {purpose}".strip()[:63]
        try:
            conn = psycopg.connect(self.dsn, autocommit=True, application_name=app, connect_timeout=10)
        except psycopg.Error as exc:
            first_line = scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else "", self.dsn)
            raise DatabaseUnavailable(f"cannot connect to {mask_dsn(self.dsn)}: {first_line}") from None
        with contextlib.suppress(psycopg.Error):  # Postgres >= 14: stop our work soon after we die
            conn.execute("SET client_connection_check_interval = '1s'")
        return conn

    def _locked(
        self,
        kind: RunKind,
        definition: MatViewDefinition,
        dagster_run_id: str | None,
        steps: Callable[[_Session], dict[str, Any]],
    ) -> dict[str, Any]:
        name = definition.qualified
        with self.connect(f"{name}") as conn:
            database = conn.info.dbname
            try:
                with view_lock(conn, name, self.lock_wait_timeout) as waited_ms:
                    timeout = definition.statement_timeout or self.statement_timeout
                    if timeout:  # after the lock: a lock wait is bounded by lock_wait_timeout alone
                        conn.execute("SELECT set_config('statement_timeout', %s, false)", (f"{int(timeout * 1000)}ms",))
                    self.runs.mark_abandoned(database_name=database, view_name=str(name))
                    leftovers = drop_swap_leftovers(conn, name)
                    session = _Session(self, conn, definition, database, dagster_run_id, waited_ms, leftovers)
                    return steps(session)
            except ViewLockTimeout as exc:
                return self._lock_timed_out(kind, conn, definition, database, dagster_run_id, exc)

    def _lock_timed_out(
        self,
        kind: RunKind,
        conn: psycopg.Connection,
        definition: MatViewDefinition,
        database: str,
        dagster_run_id: str | None,
        exc: ViewLockTimeout,
    ) -> dict[str, Any]:
        name = str(definition.qualified)
        held_by = [
            f"{row['kind']} run #{row['id']} (started {row['started_at']:%Y-%m-%d %H:%M:%S%z})"
            for row in self.runs.running(database_name=database, view_name=name)
        ]
        holder = lock_holder(conn, definition.qualified)
        error = f"{exc}: {', '.join(held_by) or holder or 'an operation that has since finished'}"
        run_id = self.runs.record_failure(
            kind,
            view_name=name,
            database_name=database,
            definition_id=self._definition_id(definition),
            error=error,
            meta={"lock_wait_ms": exc.waited_ms, "lock_holder": holder},
            dagster_run_id=dagster_run_id,
        )
        return _result(kind, run_id, name, "failed", "error", None, None, error, "retry when it has finished")


class _Session:
    """The view's lock is held: record and run one or more steps."""

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

    def run(self, kind: RunKind, options: dict[str, Any], work: Work) -> dict[str, Any]:
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
        )
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
        return _result(kind, run_id, view, status, response.status, duration_ms, rows_count, error, response.hint)


def _result(
    kind: str,
    run_id: int,
    view: str,
    status: str,
    outcome: str,
    duration_ms: int | None,
    rows_count: int | None,
    error: str | None,
    hint: str | None,
) -> dict[str, Any]:
    return {
        "status": status,
        "outcome": outcome,
        "run_id": run_id,
        "kind": kind,
        "view": view,
        "duration_ms": duration_ms,
        "rows_count": rows_count,
        "error": error,
        "hint": hint,
    }


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _exists(conn: psycopg.Connection, name: QualifiedName) -> bool:
    try:
        return matview_state(conn, name) is not None
    except NotAMaterializedView:
        return True  # let the refresh report what the name really is


def _populated_by_create(conn: psycopg.Connection, created: dict[str, Any], rows: str) -> ServiceResponse:
    """The refresh step right after a create: the data is fresh, so nothing runs twice."""
    if created["status"] != "success":
        return ServiceResponse.failure(
            f"could not create the missing view: {created['error']}", hint=created.get("hint")
        )
    return ServiceResponse(
        "created",
        payload={"rows_count": None if rows == "none" else created["rows_count"]},
        meta={"populated_by_create_run": created["run_id"], "row_count_strategy": rows},
    )
