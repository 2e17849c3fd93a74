"""``mat_view_run_requests``: the durable queue behind the adapter's ``queue`` backend.

Requests are inserted ``pending``; a sensor claims them (``FOR UPDATE SKIP LOCKED``, so two
ticks or processes never claim one request twice), marks them ``submitted`` and later records
the Dagster run id, or marks them ``failed`` with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

if TYPE_CHECKING:
    from . import RunStore

TABLE = "mat_view_run_requests"


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


class RunRequestQueue:
    """Enqueue, claim and settle run requests in the run store's database."""

    def __init__(self, store: RunStore) -> None:
        self.store = store

    def _select(self, where: str) -> sql.Composed:
        return sql.SQL("SELECT * FROM {} WHERE " + where + " ORDER BY id").format(self.store.table(TABLE))

    def enqueue(self, job: str, args: list[Any], queue: str) -> int:
        """Insert a ``pending`` request, committed at once; returns its id."""
        self.store.ensure_migrated()
        query = sql.SQL("INSERT INTO {} (job, args, queue) VALUES (%s, %s, %s) RETURNING id").format(
            self.store.table(TABLE)
        )
        row = self.store.run(lambda conn: conn.execute(query, (job, Jsonb(args), queue)).fetchone())
        assert row is not None
        return int(row["id"])

    def claim(self, limit: int = 25) -> list[RunRequestRow]:
        """Take up to ``limit`` pending requests and mark them ``submitted``, atomically."""
        self.store.ensure_migrated()
        query = sql.SQL(
            """UPDATE {table} SET status = 'submitted', submitted_at = now()
               WHERE id IN (SELECT id FROM {table} WHERE status = 'pending' ORDER BY id
                            LIMIT %s FOR UPDATE SKIP LOCKED)
               RETURNING *"""
        ).format(table=self.store.table(TABLE))

        def work(conn: psycopg.Connection) -> list[RunRequestRow]:
            with conn.transaction():
                rows = conn.execute(query, (limit,)).fetchall()
            return sorted((RunRequestRow(**row) for row in rows), key=lambda r: r.id)

        return self.store.run(work)

    def awaiting_run_id(self) -> list[RunRequestRow]:
        """Submitted requests whose Dagster run id is not recorded yet."""
        self.store.ensure_migrated()
        query = self._select("status = 'submitted' AND dagster_run_id IS NULL")
        return [RunRequestRow(**row) for row in self.store.run(lambda conn: conn.execute(query).fetchall())]

    def attach_run(self, request_id: int, dagster_run_id: str) -> None:
        query = sql.SQL("UPDATE {} SET dagster_run_id = %s WHERE id = %s").format(self.store.table(TABLE))
        self.store.run(lambda conn: conn.execute(query, (dagster_run_id, request_id)))

    def fail(self, request_id: int, error: str) -> None:
        query = sql.SQL("UPDATE {} SET status = 'failed', error = %s WHERE id = %s").format(self.store.table(TABLE))
        self.store.run(lambda conn: conn.execute(query, (error, request_id)))
