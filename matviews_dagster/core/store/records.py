"""Run records: insert a ``running`` row before the work, finalize it after, whatever happens."""

from __future__ import annotations

from typing import Any, Literal

from psycopg import sql
from psycopg.types.json import Jsonb

from ..vocabulary import RUN_KINDS, RunKind
from .migrations import RESULT_COLUMNS, RUN_TABLES, Migrations


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
        self.ensure_migrated()
        insert = sql.SQL(
            """INSERT INTO {} (mat_view_definition_id, view_name, database_name, status, meta, dagster_run_id)
               VALUES (%(definition_id)s, %(view)s, %(db)s, 'running', %(meta)s, %(dagster_run_id)s) RETURNING id"""
        ).format(self.table(RUN_TABLES[kind]))
        query = sql.SQL("WITH {} {}").format(self._abandon(), insert) if reconcile else insert
        params = {
            "definition_id": definition_id,
            "view": view_name,
            "db": database_name,
            "meta": Jsonb(meta),
            "dagster_run_id": dagster_run_id,
        }
        row = self.run(lambda conn: conn.execute(query, params).fetchone())
        assert row is not None
        return int(row["id"])

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
        self.ensure_migrated()
        results = _results(kind, meta)
        query = sql.SQL(
            """INSERT INTO {table} (mat_view_definition_id, view_name, database_name, status, finished_at,
                               duration_ms, error, meta, dagster_run_id{columns})
               VALUES (%(definition_id)s, %(view)s, %(db)s, %(status)s, now(), 0, %(error)s, %(meta)s,
                       %(dagster_run_id)s{values}) RETURNING id"""
        ).format(
            table=self.table(RUN_TABLES[kind]),
            columns=sql.SQL("").join(sql.SQL(", {}").format(sql.Identifier(name)) for name in results),
            values=sql.SQL("").join(sql.SQL(", {}").format(sql.Placeholder(f"result_{name}")) for name in results),
        )
        params = {
            "definition_id": definition_id,
            "view": view_name,
            "db": database_name,
            "status": status,
            "error": error,
            "meta": Jsonb(meta),
            "dagster_run_id": dagster_run_id,
            **{f"result_{name}": value for name, value in results.items()},
        }
        row = self.run(lambda conn: conn.execute(query, params).fetchone())
        assert row is not None
        return int(row["id"])

    def _abandon(self) -> sql.Composed:
        """CTEs marking the ``running`` rows of view ``%(view)s`` in ``%(db)s`` failed, one per
        kind, each returning a row per row marked."""
        return sql.SQL(", ").join(
            sql.SQL(
                """{alias} AS (UPDATE {table} SET status = 'failed', finished_at = now(),
                     error = 'abandoned: the process running this operation died before finishing'
                   WHERE database_name = %(db)s AND view_name = %(view)s AND status = 'running' RETURNING 1)"""
            ).format(alias=sql.Identifier(f"abandoned_{kind}"), table=self.table(RUN_TABLES[kind]))
            for kind in RUN_KINDS
        )


def _results(kind: RunKind, meta: dict[str, Any]) -> dict[str, Any]:
    """``{column: value}`` of the kind's ``RESULT_COLUMNS``, read from the run's ``meta``."""
    return {column.name: column.value(meta) for column in RESULT_COLUMNS if kind in column.kinds}
