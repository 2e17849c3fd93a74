"""Many views at once: one connection per worker, reused for its views, over the dependency
graph (``scheduler``); a view whose connection cannot be had fails on its own."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict

from .arguments import positive_integer
from .connection import DatabaseUnavailable
from .definition import MatViewDefinition
from .operation import failed_before_start
from .result import OperationResult
from .scheduler import run_in_dependency_order
from .vocabulary import RunKind

if TYPE_CHECKING:
    from .database import Database
    from .graph import ViewGraph
    from .health_checks import CheckOutcome

One = Callable[[MatViewDefinition, psycopg.Connection], OperationResult]
R = TypeVar("R")


class BatchStopped(RuntimeError):
    """A batch stopped on an unexpected error after work on its views had begun: the views that
    finished were reported and recorded, the others were not started. Not bad input: something
    may have changed (the CLI exits 1, never 2)."""


def run_batch(
    db: Database,
    graph: ViewGraph,
    kind: RunKind,
    definitions: Sequence[MatViewDefinition],
    one: One,
    *,
    max_parallel: int,
    dagster_run_id: str | None,
    reverse: bool = False,
) -> Iterator[OperationResult]:
    """``one`` on every view of ``definitions`` (ordered by ``graph``), upstream first
    (``reverse``: the views built on others first), ``max_parallel`` at once; results as they
    finish, those blocked by a failure ``skipped``. ``max_parallel`` is checked now
    (``ValueError``), the work starts on the first ``next``."""
    positive_integer(max_parallel, "max_parallel")

    def results() -> Iterator[OperationResult]:
        if not definitions:
            return
        by_name = {d.name: d for d in definitions}
        order = [d.name for d in graph.order(by_name)]
        related = graph.downstream if reverse else graph.upstream
        if reverse:
            order.reverse()
        db.runs.mirror(list(definitions))  # in the background, while the workers connect
        began = threading.Event()
        finished = 0

        def work(name: str, connections: WorkerConnections) -> OperationResult:
            try:
                conn = connections.get()
            except DatabaseUnavailable as exc:
                if not exc.limit_reached and not connections.opened_any:  # unreachable: nothing ran, say so once
                    raise
                return _not_started(db, kind, by_name[name], str(exc), dagster_run_id)  # e.g. max_connections
            began.set()
            return one(by_name[name], conn)

        try:
            for result in _on_workers(
                db,
                f"{kind} batch",
                order,
                related,
                work,
                succeeded=lambda result: result.ok,
                skip=lambda name, failed: OperationResult.skipped(kind, name, failed),
                max_parallel=max_parallel,
            ):
                finished += 1
                yield result
        except Exception as exc:
            if not began.is_set():
                raise  # nothing began: the error says why (an unreachable server, bad input)
            cause = " ".join(str(exc).split()) or type(exc).__name__
            raise BatchStopped(
                f"the {kind} batch stopped after {finished} of {len(order)} views ({type(exc).__name__}: {cause}); "
                "the run rows record what each finished view did, the others were not started"
            ) from exc

    return results()


def check_batch(
    db: Database, checks: list[tuple[MatViewDefinition, Sequence[str]]], max_parallel: int
) -> Iterator[tuple[MatViewDefinition, list[CheckOutcome]]]:
    """Health checks without refreshing, ``max_parallel`` views at once (checked now)."""
    positive_integer(max_parallel, "max_parallel")
    from .health_checks import run_checks_safely  # only when checks run (not on the CLI's path)

    by_name = {d.name: (d, names) for d, names in checks}
    return _on_workers(
        db,
        "checks",
        list(by_name),
        lambda name: (),
        lambda name, connections: (
            by_name[name][0],
            run_checks_safely(db, connections.get(), *by_name[name]),
        ),
        succeeded=lambda outcome: True,
        skip=lambda name, failed: (by_name[name][0], []),
        max_parallel=max_parallel,
    )


def _on_workers(
    db: Database,
    purpose: str,
    order: Sequence[str],
    related: Callable[[str], Iterable[str]],
    work: Callable[[str, WorkerConnections], R],
    *,
    succeeded: Callable[[R], bool],
    skip: Callable[[str, tuple[str, ...]], R],
    max_parallel: int,
) -> Iterator[R]:
    """``work(name, connections)`` for every name over the dependency graph, on up to
    ``max_parallel`` worker connections (opened on first use, cancelled when the batch is
    interrupted, closed after)."""
    connections = WorkerConnections(lambda: db.connect(purpose))
    try:
        yield from run_in_dependency_order(
            order,
            related,
            lambda name: work(name, connections),
            succeeded=succeeded,
            skip=skip,
            max_parallel=max_parallel,
            interrupt=connections.cancel,
        )
    finally:
        connections.close()


class WorkerConnections:
    """One work connection per worker thread of a batch, reused for its views; a broken one
    is replaced. ``cancel`` stops the statements in flight (an interrupted batch)."""

    def __init__(self, connect: Callable[[], psycopg.Connection]) -> None:
        self._connect = connect
        self._local = threading.local()
        self._lock = threading.Condition()
        self._opened: list[psycopg.Connection] = []
        self._connecting = 0

    @property
    def opened_any(self) -> bool:
        """Whether any worker got a connection, once the attempts still under way have ended
        (a worker that failed first must not call the server unreachable while another is
        about to succeed)."""
        with self._lock:
            self._lock.wait_for(lambda: self._connecting == 0)
            return bool(self._opened)

    def get(self) -> psycopg.Connection:
        conn: psycopg.Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            with self._lock:
                self._connecting += 1
            try:
                conn = self._connect()
                self._local.conn = conn
                with self._lock:
                    self._opened.append(conn)
            finally:
                with self._lock:
                    self._connecting -= 1
                    self._lock.notify_all()
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


def _not_started(
    db: Database, kind: RunKind, definition: MatViewDefinition, error: str, dagster_run_id: str | None
) -> OperationResult:
    """A ``failed`` row for a view whose work could not start (no connection to be had)."""
    hint = "lower max_parallel (--parallel) or raise the server's max_connections"
    database = db.name or _database_of(db.dsn)
    meta = {"hint": hint}
    return failed_before_start(
        db, kind, definition, database=database, error=error, hint=hint, meta=meta, dagster_run_id=dagster_run_id
    )


def _database_of(dsn: str) -> str:
    try:
        return str(conninfo_to_dict(dsn).get("dbname") or "?")
    except psycopg.Error:
        return "?"
