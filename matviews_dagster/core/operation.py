"""One operation on one view, top to bottom: connect, take the view's lock, bound the
statements, drop an interrupted swap's leftovers, then run services as recorded runs.

``Operation.run`` inserts the ``running`` row (the first one of the operation also marks
rows of dead processes abandoned), calls the service on the locked connection, and
finalizes the row whatever happens. ``view_operations`` holds what runs inside it for each kind.
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import psycopg

from .definition import MatViewDefinition
from .dsn import scrub
from .locks import HeldLock, ViewLockTimeout, view_lock
from .result import OperationResult
from .services.response import ServiceError, ServiceResponse
from .services.swap import drop_swap_leftovers
from .timing import elapsed_ms, seconds_to_ms
from .vocabulary import RunKind

_SETTING_SOURCES = {
    "client": "the client set (PGOPTIONS, or options in the DSN)",
    "database": "set on the database (ALTER DATABASE ... SET)",
    "user": "set on the role (ALTER ROLE ... SET)",
    "database user": "set on the role in this database (ALTER ROLE ... IN DATABASE ... SET)",
    "configuration file": "set in the server's configuration file",
    "session": "set in the session",
}
"""Where a setting's value came from (``pg_settings.source``), in words."""

TIMED_OUT = "57014"
"""SQLSTATE query_canceled: a statement timeout, or a cancel request."""

if TYPE_CHECKING:
    from .database import Database


class Operation:
    """The view's lock is held on ``conn`` (unless ``not_started`` holds the recorded failure)."""

    def __init__(self, db: Database, conn: psycopg.Connection, definition: MatViewDefinition, run_id: str | None):
        self.db = db
        self.conn = conn
        self.definition = definition
        self.dagster_run_id = run_id
        self.database = db.name_of(conn)
        self.lock_wait_ms = 0
        self.lock: HeldLock | None = None
        self.leftovers: list[str] = []
        self.recorded: dict[str, Any] = {}
        """More for the run row's ``meta`` (e.g. ``source_versions``), set before ``run``."""
        self.not_started: OperationResult | None = None
        self.warnings: list[str] = []  # added to the next run's warnings
        self.payload: dict[str, Any] = {}  # the last run's service payload
        self._reconciled = False

    def run(
        self, kind: RunKind, options: dict[str, Any], service: Callable[..., ServiceResponse], *args: Any, **kwargs: Any
    ) -> OperationResult:
        """``service(conn, *args, **kwargs)`` as one recorded run; an interrupt finalizes the
        row ``failed`` and goes on, an unexpected error becomes the run's error."""
        store, view = self.db.runs, self.definition.name
        meta: dict[str, Any] = {
            "options": options,
            "lock_wait_ms": self.lock_wait_ms,
            "pid": os.getpid(),
            "backend_pid": self.conn.info.backend_pid,
        }
        if self.leftovers:
            meta["dropped_swap_leftovers"] = self.leftovers
        meta.update(self.recorded)
        run_id = store.start(
            kind,
            view_name=view,
            database_name=self.database,
            definition_id=self.db.runs.definition_id(self.definition),
            meta=meta,
            dagster_run_id=self.dagster_run_id,
            reconcile=not self._reconciled,
        )
        self._reconciled = True
        started = time.monotonic()
        try:
            response = service(self.conn, *args, **kwargs)
        except Exception as exc:
            response = ServiceResponse.failure(f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=8))
        except BaseException as exc:
            error = f"interrupted ({type(exc).__name__})"
            store.finish(kind, run_id, status="failed", duration_ms=elapsed_ms(started), meta={}, error=error)
            raise
        table_wait_ms = int(response.meta.get("table_lock_wait_ms") or 0)
        duration_ms = max(elapsed_ms(started) - table_wait_ms, 0)  # the work, not the waits
        self.payload = response.payload
        status = "success" if response.ok else "failed"
        if response.meta.get("sqlstate") == TIMED_OUT and "statement timeout" in (response.error or ""):
            response.error, response.hint = self._timed_out(response.error or "")
        error = scrub(response.error, self.db.dsn) if response.error else None
        rows_count = response.payload.get("rows_count")
        if self.warnings:
            response.meta["warnings"] = [*self.warnings, *response.meta.get("warnings", ())]
            self.warnings = []
        lock_wait_ms = self.lock_wait_ms + table_wait_ms
        final_meta = {
            **response.meta,
            "outcome": response.status,
            "payload": response.payload,
            "lock_wait_ms": lock_wait_ms,
            "view_lock_wait_ms": self.lock_wait_ms,
        }
        if response.hint:
            final_meta["hint"] = response.hint
        store.finish(kind, run_id, status=status, duration_ms=duration_ms, meta=final_meta, error=error)
        dropped = response.payload.get("dropped_dependents", ())
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
            dropped=tuple(f"{name} ({relkind})" for name, relkind in dropped),
            lock_wait_ms=lock_wait_ms,
            reason=response.meta.get("reason") or options.get("reason"),
            costs=response.meta.get("costs") or {},
            readings_source=response.meta.get("readings_source") or {},
        )

    def _timed_out(self, error: str) -> tuple[str, str]:
        """A statement cancelled by ``statement_timeout``: say whose limit it was, and how long."""
        own, given = self.definition.statement_timeout, self.db.statement_timeout
        if own:
            whose = f"the view's own statement_timeout of {own:g} s (statement_timeout in its definition)"
            fix = f"raise statement_timeout in the definition of {self.definition.name}, or make its query faster"
        elif given:
            whose = f"the statement_timeout of {given:g} s this operation was given (MatViews statement_timeout)"
            fix = "raise statement_timeout, or set one for this view in its definition"
        else:
            try:
                row = self.conn.execute(
                    "SELECT current_setting('statement_timeout'), source FROM pg_settings "
                    "WHERE name = 'statement_timeout'"
                ).fetchone()
            except psycopg.Error:
                row = None
            setting, source = row if row else ("?", "")
            whose = f"the statement_timeout of {setting} {_SETTING_SOURCES.get(source, 'set on the server')}"
            fix = f"set statement_timeout in the definition of {self.definition.name} to allow it more time"
        return f"{error}: the limit was {whose}", fix


@contextlib.contextmanager
def operation(
    db: Database,
    kind: RunKind,
    definition: MatViewDefinition,
    dagster_run_id: str | None,
    conn: psycopg.Connection | None = None,
) -> Iterator[Operation]:
    """Connect (unless a batch lends its connection), take the view's lock, apply the statement
    timeout, drop an interrupted swap's leftovers; release the lock at the end. When the work
    cannot begin (the lock wait timed out, a leftover cannot be dropped), a ``failed`` run is
    recorded and returned in ``not_started``."""
    with contextlib.ExitStack() as stack:
        if conn is None:
            conn = stack.enter_context(db.connect(definition.name))
        op = Operation(db, conn, definition, dagster_run_id)
        try:
            op.lock = stack.enter_context(view_lock(conn, definition.qualified, db.lock_wait_timeout))
            op.lock_wait_ms = op.lock.waited_ms
        except ViewLockTimeout as exc:
            op.not_started = _lock_timed_out(op, kind, exc)
            yield op
            return
        _statement_timeout(conn, definition.statement_timeout or db.statement_timeout)
        try:
            op.leftovers = drop_swap_leftovers(conn, definition.qualified)
        except ServiceError as exc:
            op.not_started = failed_before_start(
                db,
                kind,
                definition,
                database=op.database,
                error=str(exc),
                hint=exc.hint or "",
                meta={},
                dagster_run_id=dagster_run_id,
            )
        yield op


def _lock_timed_out(op: Operation, kind: RunKind, exc: ViewLockTimeout) -> OperationResult:
    held_by = [
        f"{row['kind']} run #{row['id']} (started {row['started_at']:%Y-%m-%d %H:%M:%S%z})"
        for row in op.db.runs.running(database_name=op.database, view_name=op.definition.name)
    ]
    return failed_before_start(
        op.db,
        kind,
        op.definition,
        database=op.database,
        error=f"{exc}: {', '.join(held_by) or exc.holder or 'an operation that has since finished'}",
        hint="retry when it has finished",
        meta={"lock_wait_ms": exc.waited_ms, "lock_holder": exc.holder},
        dagster_run_id=op.dagster_run_id,
    )


def failed_before_start(
    db: Database,
    kind: RunKind,
    definition: MatViewDefinition,
    *,
    database: str,
    error: str,
    hint: str,
    meta: dict[str, Any],
    dagster_run_id: str | None,
) -> OperationResult:
    """An operation whose work could not begin (its lock or a connection could not be had),
    recorded as a finished ``failed`` run row."""
    run_id = db.runs.record_finished(
        kind,
        status="failed",
        view_name=definition.name,
        database_name=database,
        definition_id=db.runs.definition_id(definition),
        error=error,
        meta=meta,
        dagster_run_id=dagster_run_id,
    )
    return OperationResult(kind, definition.name, "failed", "error", run_id=run_id, error=error, hint=hint)


_TIMEOUTS: weakref.WeakKeyDictionary[psycopg.Connection, float | None] = weakref.WeakKeyDictionary()


def _statement_timeout(conn: psycopg.Connection, seconds: float | None) -> None:
    """Set the session's ``statement_timeout`` (after the lock: a lock wait is bounded by
    ``lock_wait_timeout`` alone); a connection a batch reuses is reset to the server's default."""
    if _TIMEOUTS.get(conn) == seconds:
        return
    if seconds:
        conn.execute("SELECT set_config('statement_timeout', %s, false)", (f"{seconds_to_ms(seconds)}ms",))
    elif conn in _TIMEOUTS:
        conn.execute("RESET statement_timeout")
    _TIMEOUTS[conn] = seconds
