"""``mat_view_run_requests``: the durable queue behind the adapter's ``queue`` backend.

A request's life: ``pending`` (inserted by ``enqueue``) -> ``submitted`` (claimed by a code
location's sensor, which gives it a run key; the requests one run serves share the key) ->
``success`` or ``failed`` (when that run has finished, from what it did to the request's
views). A request that cannot become a run is ``failed`` at once, with the reason.

Claims take rows ``FOR UPDATE SKIP LOCKED``, so two ticks, two daemons or two code locations
never claim one request twice; each location claims only requests for its own views and
records which views it serves in ``mat_view_queue_consumers``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from ..connection import connect
from ..locks import LOCK_ARGS, LOCK_NAMESPACE

if TYPE_CHECKING:
    from . import RunStore

TABLE = "mat_view_run_requests"
CONSUMERS = "mat_view_queue_consumers"
MAX_ERROR_CHARACTERS = 2000
"""A request's ``error`` is cut to this length (several views' errors joined can be long)."""

T = TypeVar("T")


@dataclass(frozen=True)
class RunRequestRow:
    id: int
    job: str
    args: list[Any]
    queue: str
    status: str
    enqueued_at: datetime
    submitted_at: datetime | None
    dagster_run_id: str | None
    error: str | None
    view_name: str | None = None
    views: list[str] | None = None
    run_key: str | None = None
    finished_at: datetime | None = None
    running_since: datetime | None = None

    @property
    def selected(self) -> list[str]:
        """The views the request's run selects (its view alone before it was claimed)."""
        return self.views or [self.view_name or "?"]


@dataclass(frozen=True)
class Claim:
    """Requests one run will serve: the run key they share and the views it selects."""

    run_key: str
    requests: tuple[RunRequestRow, ...]


def new_run_key() -> str:
    """A run key no other claim has had, in any queue table: ``matviews-`` and 24 random hex
    digits (a request id alone repeats when the table is recreated or restored)."""
    return f"matviews-{secrets.token_hex(12)}"


class RunRequestQueue:
    """Enqueue, claim and settle run requests in the run store's database."""

    def __init__(self, store: RunStore) -> None:
        self.store = store

    def _table(self) -> sql.Composable:
        return self.store.table(TABLE)

    def _run(self, work: Callable[[psycopg.Connection], T]) -> T:
        self.store.ensure_migrated()
        return self.store.run(work)

    def enqueue(self, job: str, args: list[Any], queue: str, view: str) -> int:
        """Insert a ``pending`` request for ``view``, committed at once; returns its id."""
        query = sql.SQL("INSERT INTO {} (job, args, queue, view_name) VALUES (%s, %s, %s, %s) RETURNING id").format(
            self._table()
        )
        row = self._run(lambda conn: conn.execute(query, (job, Jsonb(args), queue, view)).fetchone())
        assert row is not None
        return int(row["id"])

    def recent(self, *, status: str | None = None, limit: int = 20) -> list[RunRequestRow]:
        """Requests newest first, optionally of one status."""
        where = sql.SQL("WHERE status = %(status)s") if status else sql.SQL("")
        query = sql.SQL("SELECT * FROM {} {} ORDER BY id DESC LIMIT %(limit)s").format(self._table(), where)
        rows = self._run(lambda conn: conn.execute(query, {"status": status, "limit": limit}).fetchall())
        return [RunRequestRow(**row) for row in rows]

    def register_consumer(self, consumer: str, views: Sequence[str]) -> None:
        """Record that ``consumer`` (a code location's sensor) serves ``views``, now."""
        query = sql.SQL(
            "INSERT INTO {} (consumer, views, seen_at) VALUES (%s, %s, now()) "
            "ON CONFLICT (consumer) DO UPDATE SET views = excluded.views, seen_at = now()"
        ).format(self.store.table(CONSUMERS))
        self._run(lambda conn: conn.execute(query, (consumer, list(views))))

    def consumers(self, within_seconds: float) -> dict[str, list[str]]:
        """``{consumer: views}`` of the sensors seen in the last ``within_seconds``."""
        query = sql.SQL("SELECT consumer, views FROM {} WHERE seen_at > now() - make_interval(secs => %s)").format(
            self.store.table(CONSUMERS)
        )
        rows = self._run(lambda conn: conn.execute(query, (within_seconds,)).fetchall())
        return {row["consumer"]: list(row["views"]) for row in rows}

    def pending(self, views: Sequence[str], limit: int = 1000) -> list[RunRequestRow]:
        """Up to ``limit`` pending requests for ``views``, oldest first (not yet claimed)."""
        query = sql.SQL(
            "SELECT * FROM {} WHERE status = 'pending' AND view_name = ANY(%s) ORDER BY id LIMIT %s"
        ).format(self._table())
        return [RunRequestRow(**row) for row in self._run(lambda conn: conn.execute(query, (list(views), limit)))]

    def claim(self, assignments: Mapping[int, tuple[Hashable, Sequence[str]] | str]) -> list[Claim]:
        """Claim pending requests as planned: ``{id: (group, views selected)}`` or ``{id:
        reason}`` for one that cannot run. Requests still pending are locked (``FOR UPDATE SKIP
        LOCKED``: one another sensor holds, or has taken, are left to it); those of one group
        share a new run key and become ``submitted``, the others ``failed`` with the reason, in
        one transaction. Returns the claims made."""
        lock = sql.SQL("SELECT * FROM {} WHERE id = ANY(%s) AND status = 'pending' FOR UPDATE SKIP LOCKED").format(
            self._table()
        )
        submit = sql.SQL(
            "UPDATE {} SET status = 'submitted', submitted_at = now(), run_key = %s, views = %s WHERE id = %s"
        ).format(self._table())
        fail = sql.SQL("UPDATE {} SET status = 'failed', finished_at = now(), error = %s WHERE id = %s").format(
            self._table()
        )

        def work(conn: psycopg.Connection) -> list[Claim]:
            groups: dict[Hashable, tuple[str, list[RunRequestRow]]] = {}
            submitted: list[tuple[str, list[str], int]] = []
            failed: list[tuple[str, int]] = []
            with conn.transaction():
                for row in (RunRequestRow(**r) for r in conn.execute(lock, (list(assignments),)).fetchall()):
                    plan = assignments[row.id]
                    if isinstance(plan, str):
                        failed.append((plan[:MAX_ERROR_CHARACTERS], row.id))
                        continue
                    run_key, members = groups.setdefault(plan[0], (new_run_key(), []))
                    members.append(row)
                    submitted.append((run_key, list(plan[1]), row.id))
                with conn.cursor() as cur:
                    if submitted:
                        cur.executemany(submit, submitted)
                    if failed:
                        cur.executemany(fail, failed)
            return [Claim(run_key, tuple(members)) for run_key, members in groups.values()]

        return self._run(work)

    def unlaunched(self, views: Sequence[str], older_than_seconds: float) -> list[Claim]:
        """Claims for ``views`` still without a Dagster run ``older_than_seconds`` after they
        were made (the tick that made them died before the run was created), taken again:
        their ``submitted_at`` moves to now in the same statement, so of two sensors looking
        at once only one gets each claim back."""
        query = sql.SQL(
            """UPDATE {table} SET submitted_at = now()
               WHERE id IN (SELECT id FROM {table}
                            WHERE status = 'submitted' AND dagster_run_id IS NULL AND view_name = ANY(%s)
                              AND submitted_at < now() - make_interval(secs => %s)
                            FOR UPDATE SKIP LOCKED)
               RETURNING *"""
        ).format(table=self._table())

        def work(conn: psycopg.Connection) -> list[Claim]:
            with conn.transaction():
                rows = [RunRequestRow(**row) for row in conn.execute(query, (list(views), older_than_seconds))]
            return _by_run_key(rows)

        return self._run(work)

    def awaiting_outcome(self, views: Sequence[str]) -> list[Claim]:
        """Submitted requests for ``views``, by run key (with or without a run id yet)."""
        query = sql.SQL("SELECT * FROM {} WHERE status = 'submitted' AND view_name = ANY(%s) ORDER BY id").format(
            self._table()
        )
        return _by_run_key([RunRequestRow(**row) for row in self._run(lambda c: c.execute(query, (list(views),)))])

    def attach_run(self, run_key: str, dagster_run_id: str) -> None:
        """Record the Dagster run that serves every request of ``run_key``."""
        query = sql.SQL(
            "UPDATE {} SET dagster_run_id = %s WHERE run_key = %s AND status = 'submitted' AND dagster_run_id IS NULL"
        ).format(self._table())
        self._run(lambda conn: conn.execute(query, (dagster_run_id, run_key)))

    def settle(self, outcomes: Mapping[int, str | None]) -> int:
        """End requests: ``{id: None}`` succeeded, ``{id: reason}`` failed. Only ``submitted``
        (or ``pending``) requests change, so a request is settled once; returns how many did."""
        query = sql.SQL(
            "UPDATE {} SET status = CASE WHEN %(error)s::text IS NULL THEN 'success' ELSE 'failed' END, "
            "error = %(error)s, finished_at = now() WHERE id = %(id)s AND status IN ('pending', 'submitted')"
        ).format(self._table())
        params = [
            {"id": request_id, "error": None if error is None else error[:MAX_ERROR_CHARACTERS]}
            for request_id, error in outcomes.items()
        ]
        if not params:
            return 0

        def work(conn: psycopg.Connection) -> int:
            with conn.cursor() as cur:
                cur.executemany(query, params)
                return cur.rowcount

        return self._run(work)

    @contextmanager
    def serving(self, run_key: str, dagster_run_id: str, views: Iterable[str]) -> Iterator[None]:
        """Held by the run that serves ``run_key`` while it works on ``views``: a shared
        advisory lock on a connection of its own (so it ends with the worker's process, however
        that ends), and ``running_since`` on the requests whose views all lie in ``views``.
        ``worker_alive`` tells a sensor whether such a lock is still held."""
        mark = sql.SQL(
            "UPDATE {} SET running_since = now(), dagster_run_id = %s WHERE run_key = %s AND status = 'submitted' "
            "AND coalesce(views, ARRAY[view_name]) <@ %s::text[]"
        ).format(self._table())
        self.store.ensure_migrated()
        with connect(self.store.dsn, "matviews-queue-run") as conn:
            conn.execute(f"SELECT pg_advisory_lock_shared({LOCK_ARGS})", (LOCK_NAMESPACE, f"queue:{run_key}"))
            conn.execute(mark, (dagster_run_id, run_key, list(views)))
            yield

    def worker_alive(self, run_key: str) -> bool:
        """Whether a run still holds ``serving(run_key)``: its worker is alive (or its
        connection has not yet been seen to drop by the server)."""

        query = (
            f"SELECT CASE WHEN pg_try_advisory_lock({LOCK_ARGS}) THEN NOT pg_advisory_unlock({LOCK_ARGS}) "
            "ELSE true END AS alive"
        )
        key = f"queue:{run_key}"
        row = self._run(lambda conn: conn.execute(query, (LOCK_NAMESPACE, key, LOCK_NAMESPACE, key)).fetchone())
        return bool(row and row["alive"])

    def settle_run(
        self, run_key: str, dagster_run_id: str, done: Mapping[str, str | None], scope: Iterable[str]
    ) -> int:
        """Settle, from inside the run that serves them, the requests of ``run_key`` whose
        views all lie in ``scope`` (the views this step ran): ``done`` is ``{view: None}`` for a
        view the run did, ``{view: reason}`` for one it did not. Records the run on every
        request of the key; returns how many requests were settled."""
        query = sql.SQL("SELECT * FROM {} WHERE run_key = %s AND status = 'submitted'").format(self._table())
        rows = [RunRequestRow(**row) for row in self._run(lambda conn: conn.execute(query, (run_key,)).fetchall())]
        self.attach_run(run_key, dagster_run_id)
        covered = set(scope)
        outcomes = {
            row.id: outcome_of(row, done, "not run by this run") for row in rows if set(row.selected) <= covered
        }
        self.settle(outcomes)
        return len(outcomes)

    def fail_unserved(self, served: Iterable[str], older_than_seconds: float) -> None:
        """Fail pending requests older than ``older_than_seconds`` whose view is not in
        ``served`` (the views of every sensor seen that recently)."""
        query = sql.SQL(
            "UPDATE {} SET status = 'failed', finished_at = now(), "
            "error = 'no code location served view ' || view_name || ' for ' || %s::text || ' s: "
            "add it to the definitions of a code location whose queue sensor is running, or enqueue a view one has' "
            "WHERE status = 'pending' AND NOT (view_name = ANY(%s)) "
            "AND enqueued_at < now() - make_interval(secs => %s)"
        ).format(self._table())
        self._run(lambda conn: conn.execute(query, (int(older_than_seconds), list(served), older_than_seconds)))


def outcome_of(request: RunRequestRow, done: Mapping[str, str | None], missing: str) -> str | None:
    """``None`` when the run did the request's job on each of its views, else why not: each
    view's reason from ``done`` (``{view: None | reason}``), ``missing`` for a view it lacks."""
    problems = []
    for view in request.selected:
        if view not in done:
            problems.append(f"{view}: {missing}")
        elif done[view] is not None:
            problems.append(f"{view}: {done[view]}")
    return "; ".join(problems) or None


def _by_run_key(rows: Iterable[RunRequestRow]) -> list[Claim]:
    groups: dict[str, list[RunRequestRow]] = {}
    for row in rows:
        groups.setdefault(row.run_key or f"request-{row.id}", []).append(row)
    return [Claim(key, tuple(members)) for key, members in groups.items()]
