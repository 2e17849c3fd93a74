"""Reading the run history: newest first, per view, per Dagster run, still running."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import sql

from ..messages import happened, shown
from ..vocabulary import RUN_KINDS, RunKind
from .migrations import COST_COLUMNS, RESULT_COLUMNS, RUN_TABLES, Migrations


class RunHistory(Migrations):
    """Reading the run tables, all kinds at once (``UNION ALL``) or one."""

    def _all_kinds(self, columns: str, where: str, kinds: tuple[RunKind, ...] = RUN_KINDS) -> sql.Composed:
        """``SELECT <kind> AS kind, <columns> FROM <runs table> WHERE <where>`` for each kind,
        joined with UNION ALL; ``{results}`` in ``columns`` is every ``RESULT_COLUMNS`` column,
        read from ``meta`` where a kind's table has no such column."""
        return sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT {kind} AS kind, " + columns + " FROM {table} WHERE " + where).format(
                kind=sql.Literal(kind),
                table=self.table(RUN_TABLES[kind]),
                results=sql.SQL(", ").join(column.select(kind) for column in RESULT_COLUMNS),
            )
            for kind in kinds
        )

    def running(self, *, database_name: str, view_name: str) -> list[dict[str, Any]]:
        """The rows still marked ``running`` for one view, oldest first, across all kinds."""
        self.ensure_migrated()
        query = self._all_kinds(
            "id, started_at, dagster_run_id", "database_name = %(db)s AND view_name = %(view)s AND status = 'running'"
        ) + sql.SQL(" ORDER BY started_at")
        params = {"db": database_name, "view": view_name}
        return self.run(lambda conn: conn.execute(query, params).fetchall())

    def refreshed_since(self, *, database_name: str, view_name: str, since: datetime, sql_text: str) -> int | None:
        """The id of the run that last changed the view (of every kind: its create, a rebuild,
        a refresh, a delete) when that run is a successful refresh of the same query that
        started after ``since`` (its run row is inserted once it holds the view's lock, before
        its statement runs, so its data is at least as new as ``since``); else None."""
        self.ensure_migrated()
        changed = self._all_kinds(
            "id, started_at, meta",
            "database_name = %(db)s AND view_name = %(view)s AND status = 'success' "
            "AND meta ->> 'outcome' IN ('created', 'updated', 'deleted')",
        )
        query = sql.SQL(
            """SELECT id FROM (SELECT * FROM ({changed}) runs ORDER BY started_at DESC, id DESC LIMIT 1) last
               WHERE kind = 'refresh' AND started_at > %(since)s AND meta -> 'options' ->> 'sql' = %(sql)s"""
        ).format(changed=changed)
        params = {"db": database_name, "view": view_name, "since": since, "sql": sql_text}
        row = self.run(lambda conn: conn.execute(query, params).fetchone())
        return int(row["id"]) if row else None

    def latest(self, *, database_name: str, view_names: list[str]) -> dict[str, dict[str, Any]]:
        """The newest run of each view (any kind): ``{view_name: {kind, run_id, status, finished_at, ...}}``."""
        self.ensure_migrated()
        union = self._all_kinds(
            "id AS run_id, view_name, status, started_at, finished_at, duration_ms",
            "database_name = %(db)s AND view_name = ANY(%(views)s)",
        )
        query = sql.SQL("SELECT DISTINCT ON (view_name) * FROM ({}) runs ORDER BY view_name, started_at DESC")
        query = query.format(union)
        params = {"db": database_name, "views": view_names}
        rows = self.run(lambda conn: conn.execute(query, params).fetchall())
        return {row["view_name"]: row for row in rows}

    def last_row_counts(self, *, database_name: str, view_names: list[str]) -> dict[str, int]:
        """The row count of each view's newest successful refresh that counted rows."""
        self.ensure_migrated()
        query = sql.SQL(
            """SELECT DISTINCT ON (view_name) view_name, rows_count FROM {}
               WHERE database_name = %s AND view_name = ANY(%s) AND status = 'success' AND rows_count IS NOT NULL
               ORDER BY view_name, started_at DESC"""
        ).format(self.table(RUN_TABLES["refresh"]))
        rows = self.run(lambda conn: conn.execute(query, (database_name, view_names)).fetchall())
        return {row["view_name"]: int(row["rows_count"]) for row in rows}

    def last_source_versions(self, *, database_name: str, view_names: list[str]) -> dict[str, Any]:
        """The source versions (``core.source_versions``) each view's newest successful refresh
        that recorded them read before it ran."""
        self.ensure_migrated()
        query = sql.SQL(
            """SELECT DISTINCT ON (view_name) view_name, meta -> 'source_versions' AS versions FROM {}
               WHERE database_name = %s AND view_name = ANY(%s) AND status = 'success'
                 AND meta ? 'source_versions' ORDER BY view_name, started_at DESC"""
        ).format(self.table(RUN_TABLES["refresh"]))
        rows = self.run(lambda conn: conn.execute(query, (database_name, view_names)).fetchall())
        return {row["view_name"]: row["versions"] for row in rows}

    def recent_refreshes(
        self, *, database_name: str, view_names: list[str], per_view: int = 20
    ) -> dict[str, list[dict[str, Any]]]:
        """Each view's newest ``per_view`` successful refreshes, newest first, in one query:
        ``{view_name: [{id, started_at, duration_ms, rows_count, <cost columns>, strategy,
        costs, source_versions}]}`` (what ``core.advisor`` reads)."""
        self.ensure_migrated()
        query = sql.SQL(  # per view, the newest rows by the (database_name, view_name, started_at) index
            """SELECT r.* FROM unnest(%s::text[]) AS v(name) CROSS JOIN LATERAL (
                 SELECT id, view_name, started_at, duration_ms, rows_count, {costs},
                        meta ->> 'strategy' AS strategy, meta -> 'costs' AS costs,
                        meta -> 'source_versions' AS source_versions
                 FROM {table} WHERE database_name = %s AND view_name = v.name AND status = 'success'
                   AND meta ->> 'outcome' = 'updated'
                 ORDER BY started_at DESC, id DESC LIMIT %s) r"""
        ).format(
            costs=sql.SQL(", ").join(sql.Identifier(name) for name in COST_COLUMNS),
            table=self.table(RUN_TABLES["refresh"]),
        )
        rows = self.run(lambda conn: conn.execute(query, (view_names, database_name, per_view)).fetchall())
        found: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            found.setdefault(row["view_name"], []).append(row)
        return found

    def views_with_runs(self, *, database_name: str) -> list[str]:
        """Every view name with a run row in ``database_name``, sorted."""
        self.ensure_migrated()
        query = sql.SQL("SELECT DISTINCT view_name FROM ({}) runs ORDER BY 1").format(
            self._all_kinds("view_name", "database_name = %(db)s")
        )
        return [
            row["view_name"] for row in self.run(lambda conn: conn.execute(query, {"db": database_name}).fetchall())
        ]

    def for_dagster_run(self, dagster_run_id: str) -> list[dict[str, Any]]:
        """``{kind, id, view_name, status, error}`` of every run row written by one Dagster run."""
        self.ensure_migrated()
        query = self._all_kinds("id, view_name, status, error", "dagster_run_id = %(run)s") + sql.SQL(" ORDER BY id")
        return self.run(lambda conn: conn.execute(query, {"run": dagster_run_id}).fetchall())

    def history(
        self, *, kind: RunKind | None = None, view: str | None = None, limit: int = 20, database: str | None = None
    ) -> list[dict[str, Any]]:
        """Run rows newest first, each with its ``kind`` and ``what_happened`` (``result.happened``:
        ``refreshed``, ``rebuilt (definition changed)``, ``populated by create run #4``, ...,
        ``running`` while it runs); filter by kind, view and ``database_name``."""
        self.ensure_migrated()
        kinds = RUN_KINDS if kind is None else (kind,)
        if any(k not in RUN_KINDS for k in kinds):
            raise ValueError(f"kind must be one of {', '.join(RUN_KINDS)}, got {shown(kind)}")
        columns = (
            "id, mat_view_definition_id, view_name, database_name, status, started_at, finished_at, "
            "duration_ms, {results}, error, meta, dagster_run_id"
        )
        where = " AND ".join(
            [*(["view_name = %(view)s"] if view else []), *(["database_name = %(db)s"] if database else [])]
        )
        query = self._all_kinds(columns, where or "true", kinds)
        query += sql.SQL(" ORDER BY started_at DESC, id DESC LIMIT %(limit)s")
        params = {"view": view, "limit": limit, "db": database}
        rows = self.run(lambda conn: conn.execute(query, params).fetchall())
        return [{**row, "what_happened": _what_happened(row)} for row in rows]


def _what_happened(row: dict[str, Any]) -> str:
    meta = row["meta"] or {}
    outcome = meta.get("outcome")
    if outcome is None:  # running, or finalized without a service outcome (interrupted, abandoned)
        return str(row["status"])
    reason = meta.get("reason") or (meta.get("options") or {}).get("reason")
    return happened(row["kind"], outcome, reason, meta.get("populated_by_create_run"))
