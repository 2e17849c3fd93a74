"""``RunStore``: the run tables (create/refresh/delete history) and their migrations.

Every write commits at once on the store's own connection, separate from the connection that
does the work, so a failed or rolled-back operation never loses its run row. Writes are retried
with backoff when the connection drops, so a row is not left ``running`` by a server restart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from .connection import DatabaseUnavailable, connect
from .definition import MatViewDefinition
from .dsn import scrub
from .locks import LOCK_NAMESPACE
from .names import validate_identifier
from .vocabulary import RUN_KINDS, RunKind

RUN_TABLES: dict[str, str] = {kind: f"mat_view_{kind}_runs" for kind in RUN_KINDS}
T = TypeVar("T")

_RUN_COLUMNS = """
    id bigserial PRIMARY KEY,
    mat_view_definition_id bigint REFERENCES {definitions} (id) ON DELETE SET NULL,
    view_name text NOT NULL,
    database_name text NOT NULL,
    status text NOT NULL CHECK (status IN ('running', 'success', 'failed')),
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    duration_ms bigint,
    error text,
    meta jsonb NOT NULL DEFAULT '{{}}',
    dagster_run_id text
"""

# Each entry migrates the schema from version i to i + 1; append, never edit.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE IF NOT EXISTS {definitions} (
            id bigserial PRIMARY KEY,
            name text UNIQUE NOT NULL,
            sql text NOT NULL,
            refresh_strategy text NOT NULL,
            unique_index_columns jsonb NOT NULL DEFAULT '[]',
            indexes jsonb NOT NULL DEFAULT '[]',
            row_count_strategy text NOT NULL DEFAULT 'estimated',
            dependencies jsonb NOT NULL DEFAULT '[]',
            schedule_cron text,
            attributes jsonb NOT NULL DEFAULT '{{}}',
            sql_sha256 text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            last_refreshed_at timestamptz
        )""",
        "CREATE TABLE IF NOT EXISTS {create_runs} (" + _RUN_COLUMNS + ")",
        "CREATE TABLE IF NOT EXISTS {refresh_runs} (" + _RUN_COLUMNS + ", rows_count bigint)",
        "CREATE TABLE IF NOT EXISTS {delete_runs} (" + _RUN_COLUMNS + ")",
        *(
            f"CREATE INDEX IF NOT EXISTS {{{kind}_runs_view_idx}} ON {{{kind}_runs}} "
            "(database_name, view_name, started_at DESC)"
            for kind in RUN_KINDS
        ),
        *(
            f"CREATE INDEX IF NOT EXISTS {{{kind}_runs_running_idx}} ON {{{kind}_runs}} "
            "(database_name, view_name) WHERE status = 'running'"
            for kind in RUN_KINDS
        ),
        """CREATE TABLE IF NOT EXISTS {run_requests} (
            id bigserial PRIMARY KEY,
            job text NOT NULL,
            args jsonb NOT NULL DEFAULT '[]',
            queue text NOT NULL DEFAULT 'default',
            status text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'submitted', 'failed')),
            enqueued_at timestamptz NOT NULL DEFAULT now(),
            submitted_at timestamptz,
            dagster_run_id text,
            error text
        )""",
        "CREATE INDEX IF NOT EXISTS {run_requests_pending_idx} ON {run_requests} (queue, id) WHERE status = 'pending'",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)


class RunStore:
    """Persists runs in the run tables of ``schema`` (created on first use).

    >>> store = RunStore("postgresql://localhost/app", schema="public")  # doctest: +SKIP
    >>> store.history(kind="refresh", view="public.mv_users", limit=5)    # doctest: +SKIP
    """

    def __init__(
        self,
        dsn: str,
        schema: str = "public",
        *,
        retry_seconds: float = 30.0,
        application_name: str = "matviews-runs",
    ) -> None:
        self.dsn = dsn
        self.schema = validate_identifier(schema, "runs schema")
        self.retry_seconds = retry_seconds
        self.application_name = application_name
        self._conn: psycopg.Connection | None = None
        self._lock = threading.RLock()
        self._migrated = False
        self._connected_once = False

    # -- connection -------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = connect(self.dsn, self.application_name, row_factory=dict_row)
            except DatabaseUnavailable as exc:
                if not self._connected_once:
                    raise  # a wrong DSN or a server that is down: say so now, do not wait
                raise psycopg.OperationalError(str(exc)) from None  # a restart: retried by run()
            self._connected_once = True
        return self._conn

    def run(self, work: Callable[[psycopg.Connection], T]) -> T:
        """Run ``work``; reconnect and retry with backoff while the connection is broken (a
        server restart), for up to ``retry_seconds``. The first connection is not retried:
        ``DatabaseUnavailable`` at once."""
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.1
        with self._lock:
            while True:
                try:
                    return work(self._connection())
                except psycopg.OperationalError as exc:
                    broken = self._conn is None or self._conn.broken or self._conn.closed
                    if self._conn is not None and broken:
                        self._conn.close()
                        self._conn = None
                    if not broken or time.monotonic() + delay > deadline:
                        raise psycopg.OperationalError(scrub(str(exc), self.dsn)) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def table(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)

    # -- migrations -------------------------------------------------------------------

    def _names(self) -> dict[str, sql.Composable]:
        names: dict[str, sql.Composable] = {
            "definitions": self.table("mat_view_definitions"),
            "run_requests": self.table("mat_view_run_requests"),
            "run_requests_pending_idx": sql.Identifier("mat_view_run_requests_pending_idx"),
        }
        for kind in RUN_KINDS:
            names[f"{kind}_runs"] = self.table(RUN_TABLES[kind])
            names[f"{kind}_runs_view_idx"] = sql.Identifier(f"{RUN_TABLES[kind]}_view_idx")
            names[f"{kind}_runs_running_idx"] = sql.Identifier(f"{RUN_TABLES[kind]}_running_idx")
        return names

    def migrate(self) -> int:
        """Create or upgrade the run tables; idempotent and safe to run concurrently."""

        def work(conn: psycopg.Connection) -> int:
            names = self._names()
            versions = self.table("mat_view_schema_migrations")
            if self._current_version(conn) == SCHEMA_VERSION:
                return SCHEMA_VERSION  # up to date: no DDL, so read-write roles without CREATE work
            with conn.transaction():
                conn.execute(
                    "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                    (LOCK_NAMESPACE, f"migrate:{self.schema}"),
                )
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
                conn.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {} (version int PRIMARY KEY, "
                        "applied_at timestamptz NOT NULL DEFAULT now())"
                    ).format(versions)
                )
                row = conn.execute(sql.SQL("SELECT coalesce(max(version), 0) AS v FROM {}").format(versions)).fetchone()
                current = int(row["v"]) if row else 0
                for version in range(current, SCHEMA_VERSION):
                    for statement in MIGRATIONS[version]:
                        conn.execute(sql.SQL(statement).format(**names))
                    conn.execute(
                        sql.SQL("INSERT INTO {} (version) VALUES (%s)").format(versions),
                        (version + 1,),
                    )
            return SCHEMA_VERSION

        version = self.run(work)
        self._migrated = True
        return version

    def _current_version(self, conn: psycopg.Connection) -> int:
        """The schema version, in one round trip; 0 when the tables are missing (or unreadable)."""
        versions = self.table("mat_view_schema_migrations")
        try:
            row = conn.execute(sql.SQL("SELECT coalesce(max(version), 0) AS v FROM {}").format(versions)).fetchone()
        except (psycopg.errors.UndefinedTable, psycopg.errors.InsufficientPrivilege):
            return 0  # migrate creates them, or fails naming the missing privilege
        return int(row["v"]) if row else 0

    def ensure_migrated(self) -> None:
        if not self._migrated:
            self.migrate()

    # -- definitions ------------------------------------------------------------------

    def upsert_definition(self, definition: MatViewDefinition) -> int:
        """Mirror ``definition`` into ``mat_view_definitions`` (by name) and return its id."""
        return self.upsert_definitions([definition])[definition.name]

    def upsert_definitions(self, definitions: list[MatViewDefinition]) -> dict[str, int]:
        """Mirror ``definitions`` into ``mat_view_definitions`` (by name) in one statement;
        returns ``{name: id}``. ``updated_at`` moves only when a field changed."""
        if not definitions:
            return {}
        self.ensure_migrated()
        rows = [_definition_row(definition) for definition in definitions]
        columns = list(rows[0])
        query = sql.SQL(
            """INSERT INTO {table} AS t ({columns}) VALUES {values}
               ON CONFLICT (name) DO UPDATE SET {updates},
                 updated_at = CASE WHEN ({old}) IS DISTINCT FROM ({new}) THEN now() ELSE t.updated_at END
               RETURNING id, name"""
        ).format(
            table=self.table("mat_view_definitions"),
            columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
            values=sql.SQL(", ").join(
                sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() for _ in columns)) for _ in rows
            ),
            updates=sql.SQL(", ").join(sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in columns[1:]),
            old=sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in columns[1:]),
            new=sql.SQL(", ").join(sql.SQL("excluded.{}").format(sql.Identifier(c)) for c in columns[1:]),
        )
        params = [value for row in rows for value in row.values()]
        found = self.run(lambda conn: conn.execute(query, params).fetchall())
        return {row["name"]: int(row["id"]) for row in found}

    def get_definition(self, definition_id: int) -> MatViewDefinition | None:
        """Rebuild a definition from its id alone."""
        self.ensure_migrated()
        query = sql.SQL("SELECT * FROM {} WHERE id = %s").format(self.table("mat_view_definitions"))
        row = self.run(lambda conn: conn.execute(query, (definition_id,)).fetchone())
        if row is None:
            return None
        return MatViewDefinition(
            name=row["name"],
            sql=row["sql"],
            refresh_strategy=row["refresh_strategy"],
            unique_index_columns=row["unique_index_columns"],
            indexes=row["indexes"],
            row_count_strategy=row["row_count_strategy"],
            dependencies=row["dependencies"],
            schedule_cron=row["schedule_cron"],
            **row["attributes"],
        )

    # -- runs -------------------------------------------------------------------------

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
        rows_count: int | None = None,
    ) -> None:
        """Finalize a run row (one statement); a successful refresh also stamps ``last_refreshed_at``."""
        extra = sql.SQL(", rows_count = %(rows_count)s") if kind == "refresh" else sql.SQL("")
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
            "rows_count": rows_count,
            "id": run_id,
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
        query = sql.SQL(
            """INSERT INTO {} (mat_view_definition_id, view_name, database_name, status, finished_at,
                               duration_ms, error, meta, dagster_run_id)
               VALUES (%s, %s, %s, %s, now(), 0, %s, %s, %s) RETURNING id"""
        ).format(self.table(RUN_TABLES[kind]))
        params = (definition_id, view_name, database_name, status, error, Jsonb(meta), dagster_run_id)
        row = self.run(lambda conn: conn.execute(query, params).fetchone())
        assert row is not None
        return int(row["id"])

    def _all_kinds(self, columns: str, where: str, kinds: tuple[RunKind, ...] = RUN_KINDS) -> sql.Composed:
        """``SELECT <kind> AS kind, <columns> FROM <runs table> WHERE <where>`` for each kind,
        joined with UNION ALL; ``{rows_count}`` in ``columns`` is a create's count from its
        ``meta`` (the create runs table has no column for it)."""
        return sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT {kind} AS kind, " + columns + " FROM {table} WHERE " + where).format(
                kind=sql.Literal(kind),
                table=self.table(RUN_TABLES[kind]),
                rows_count=sql.SQL("rows_count" if kind == "refresh" else "(meta->'payload'->>'rows_count')::bigint"),
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

    def mark_abandoned(self, *, database_name: str, view_name: str) -> int:
        """Mark every ``running`` row of the view ``failed`` (abandoned); the caller holds the
        view's lock, so such rows belong to processes that died. Returns how many."""
        self.ensure_migrated()
        counts = sql.SQL(" + ").join(
            sql.SQL("(SELECT count(*) FROM {})").format(sql.Identifier(f"abandoned_{k}")) for k in RUN_KINDS
        )
        query = sql.SQL("WITH {} SELECT {} AS total").format(self._abandon(), counts)
        params = {"db": database_name, "view": view_name}
        row = self.run(lambda conn: conn.execute(query, params).fetchone())
        return int(row["total"]) if row else 0

    def latest(self, *, database_name: str, view_names: list[str]) -> dict[str, dict[str, Any]]:
        """The newest run of each view (any kind): ``{view_name: {kind, status, finished_at, ...}}``."""
        self.ensure_migrated()
        union = self._all_kinds(
            "view_name, status, started_at, finished_at, duration_ms",
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

    def for_dagster_run(self, dagster_run_id: str) -> list[dict[str, Any]]:
        """``{kind, id, view_name, status}`` of every run row written by one Dagster run."""
        self.ensure_migrated()
        query = self._all_kinds("id, view_name, status", "dagster_run_id = %(run)s") + sql.SQL(" ORDER BY id")
        return self.run(lambda conn: conn.execute(query, {"run": dagster_run_id}).fetchall())

    def history(self, *, kind: RunKind | None = None, view: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Run rows newest first, each with its ``kind``; filter by kind and view."""
        self.ensure_migrated()
        kinds = RUN_KINDS if kind is None else (kind,)
        if any(k not in RUN_KINDS for k in kinds):
            raise ValueError(f"kind must be one of {', '.join(RUN_KINDS)}, got {kind!r}")
        columns = (
            "id, mat_view_definition_id, view_name, database_name, status, started_at, finished_at, "
            "duration_ms, {rows_count} AS rows_count, error, meta, dagster_run_id"
        )
        where = "view_name = %(view)s" if view else "true"
        query = self._all_kinds(columns, where, kinds) + sql.SQL(" ORDER BY started_at DESC, id DESC LIMIT %(limit)s")
        params = {"view": view, "limit": limit}
        return self.run(lambda conn: conn.execute(query, params).fetchall())


def _definition_row(definition: MatViewDefinition) -> dict[str, Any]:
    """The ``mat_view_definitions`` columns of one definition (name first)."""
    fields = definition.stored_fields()
    attributes = {
        key: fields[key] for key in ("description", "group_name", "owners", "tags", "statement_timeout", "search_path")
    }
    return {
        "name": definition.name,
        "sql": definition.sql,
        "refresh_strategy": definition.refresh_strategy,
        "unique_index_columns": Jsonb(definition.unique_index_columns),
        "indexes": Jsonb(definition.indexes),
        "row_count_strategy": definition.row_count_strategy,
        "dependencies": Jsonb(definition.dependencies),
        "schedule_cron": definition.schedule_cron,
        "attributes": Jsonb(attributes),
        "sql_sha256": definition.sql_sha256,
    }
