"""Run records: insert a ``running`` row before the work, finalize it after, whatever happens."""

from __future__ import annotations

from typing import Any, Literal

from psycopg import sql
from psycopg.types.json import Jsonb

from ..vocabulary import RUN_KINDS, RunKind
from .migrations import RESULT_COLUMNS, RUN_TABLES, Migrations

_NOW = object()
"""A column value that is the server's ``now()``."""


class RunRecords(Migrations):
    """Writing the run tables (``mat_view_{create,refresh,delete}_runs``): one row per
    operation, committed before the work and finalized after it."""

    def start(
        self,
        kind: RunKind,
        *,
        view_name: str,
        database_name: str,
        definition_id: int | None,
        meta: dict[str, Any],
        dagster_run_id: str | None = None,
        reconcile: bool = False,
    ) -> int:
        """Insert a ``running`` row, committed before the work starts; returns its id.

        With ``reconcile`` (the caller holds the view's lock), the same statement first marks
        the view's other ``running`` rows of every kind ``failed`` (abandoned): they belong to
        processes that died, since no live one can hold the lock.
        """
        values = {"status": "running"}
        prefix = self._abandon() if reconcile else None
        return self._insert(kind, view_name, database_name, definition_id, meta, dagster_run_id, values, prefix)

    def finish(
        self,
        kind: RunKind,
        run_id: int,
        *,
        status: Literal["success", "failed"],
        duration_ms: int,
        meta: dict[str, Any],
        error: str | None = None,
    ) -> None:
        """Finalize a run row (one statement), filling the kind's ``RESULT_COLUMNS`` from
        ``meta``; a successful refresh also stamps ``last_refreshed_at``."""
        results = _results(kind, meta)
        extra = sql.SQL("").join(
            sql.SQL(", {} = {}").format(sql.Identifier(n), sql.Placeholder(f"result_{n}")) for n in results
        )
        update = sql.SQL(
            """UPDATE {table} SET status = %(status)s, finished_at = now(), duration_ms = %(duration_ms)s,
                 error = %(error)s, meta = meta || %(meta)s {extra}
               WHERE id = %(id)s RETURNING mat_view_definition_id"""
        ).format(table=self.table(RUN_TABLES[kind]), extra=extra)
        if kind == "refresh" and status == "success":
            update = sql.SQL(
                "WITH finished AS ({update}) UPDATE {definitions} SET last_refreshed_at = now() "
                "WHERE id = (SELECT mat_view_definition_id FROM finished)"
            ).format(update=update, definitions=self.table("mat_view_definitions"))
        params = {
            "status": status,
            "duration_ms": duration_ms,
            "error": error,
            "meta": Jsonb(meta),
            "id": run_id,
            **{f"result_{name}": value for name, value in results.items()},
        }
        self.run(lambda conn: conn.execute(update, params))

    def record_finished(
        self,
        kind: RunKind,
        *,
        status: Literal["success", "failed"],
        view_name: str,
        database_name: str,
        definition_id: int | None,
        meta: dict[str, Any],
        error: str | None = None,
        dagster_run_id: str | None = None,
    ) -> int:
        """Insert an already finished row in one statement: a run that failed before its work
        began, or a view another operation dropped (``DROP ... CASCADE``)."""
        results = _results(kind, meta)
        values = {"status": status, "finished_at": _NOW, "duration_ms": 0, "error": error, **results}
        return self._insert(kind, view_name, database_name, definition_id, meta, dagster_run_id, values)

    def _insert(
        self,
        kind: RunKind,
        view_name: str,
        database_name: str,
        definition_id: int | None,
        meta: dict[str, Any],
        dagster_run_id: str | None,
        values: dict[str, Any],
        prefix: sql.Composable | None = None,
    ) -> int:
        """Insert one run row (``values`` are its other columns; ``_NOW``: the server's time),
        after ``prefix``'s common table expressions when given; returns its id."""
        self.ensure_migrated()
        columns = {
            "mat_view_definition_id": definition_id,
            "view_name": view_name,
            "database_name": database_name,
            "meta": Jsonb(meta),
            "dagster_run_id": dagster_run_id,
            **values,
        }
        insert = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING id").format(
            self.table(RUN_TABLES[kind]),
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(sql.SQL("now()") if v is _NOW else sql.Placeholder(k) for k, v in columns.items()),
        )
        query = sql.SQL("WITH {} {}").format(prefix, insert) if prefix is not None else insert
        params = {k: v for k, v in columns.items() if v is not _NOW}
        row = self.run(lambda conn: conn.execute(query, params).fetchone())
        assert row is not None
        return int(row["id"])

    def _abandon(self) -> sql.Composed:
        """CTEs marking the ``running`` rows of view ``%(view_name)s`` in ``%(database_name)s`` failed, one per
        kind, each returning a row per row marked."""
        return sql.SQL(", ").join(
            sql.SQL(
                """{alias} AS (UPDATE {table} SET status = 'failed', finished_at = now(),
                     error = 'abandoned: the process running this operation died before finishing'
                   WHERE database_name = %(database_name)s AND view_name = %(view_name)s AND status = 'running'
                   RETURNING 1)"""
            ).format(alias=sql.Identifier(f"abandoned_{kind}"), table=self.table(RUN_TABLES[kind]))
            for kind in RUN_KINDS
        )


def _results(kind: RunKind, meta: dict[str, Any]) -> dict[str, Any]:
    """``{column: value}`` of the kind's ``RESULT_COLUMNS``, read from the run's ``meta``."""
    return {column.name: column.value(meta) for column in RESULT_COLUMNS if kind in column.kinds}
