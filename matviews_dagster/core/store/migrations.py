"""The run tables' schema, versioned: each migration moves it one version up, never edited."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from ..costs import COST_FIELDS
from ..locks import LOCK_NAMESPACE
from ..vocabulary import RUN_KINDS, RunKind
from .connection import StoreConnection

RUN_TABLES: dict[str, str] = {kind: f"mat_view_{kind}_runs" for kind in RUN_KINDS}

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


@dataclass(frozen=True)
class ResultColumn:
    """A run-table column filled when the run finishes, from the run's ``meta`` at ``path``
    (the keys leading to the value). The history shows it for every kind: from the column in
    the ``kinds`` whose table has it, from ``meta`` in the others."""

    name: str
    sql_type: str
    path: tuple[str, ...]
    kinds: tuple[RunKind, ...]

    def value(self, meta: dict[str, Any]) -> Any:
        found: Any = meta
        for key in self.path:
            found = found.get(key) if isinstance(found, dict) else None
        return found

    def select(self, kind: RunKind) -> sql.Composable:
        """The column's value in ``kind``'s run table, as ``name``."""
        if kind in self.kinds:
            return sql.Identifier(self.name)
        return sql.SQL("(meta #>> {})::{} AS {}").format(
            sql.Literal("{" + ",".join(self.path) + "}"), sql.SQL(self.sql_type), sql.Identifier(self.name)
        )


COST_COLUMNS = (*COST_FIELDS, "readers_blocked", "reader_wait_ms")
"""What a refresh cost and whom it blocked (``core/costs.py``, ``core/reader_waits.py``)."""

RESULT_COLUMNS: tuple[ResultColumn, ...] = (
    ResultColumn("rows_count", "bigint", ("payload", "rows_count"), ("refresh",)),
    *(ResultColumn(name, "bigint", ("costs", name), ("refresh",)) for name in COST_COLUMNS),
)
"""Columns a migration added for a value services report in ``meta``: declare one here and the
run records write it and the history reads it."""

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
    [  # per database: the fingerprint of the definition last created or applied, and its declared indexes
        "ALTER TABLE {definitions} ADD COLUMN IF NOT EXISTS applied jsonb NOT NULL DEFAULT '{{}}'",
    ],
    [  # the queue: a request's view (each code location claims its own), the run key shared by the
        # requests one run serves, the views it selected, and the outcome of that run
        "ALTER TABLE {run_requests} ADD COLUMN IF NOT EXISTS view_name text",
        "ALTER TABLE {run_requests} ADD COLUMN IF NOT EXISTS views text[]",
        "ALTER TABLE {run_requests} ADD COLUMN IF NOT EXISTS run_key text",
        "ALTER TABLE {run_requests} ADD COLUMN IF NOT EXISTS finished_at timestamptz",
        "ALTER TABLE {run_requests} ADD COLUMN IF NOT EXISTS running_since timestamptz",
        "UPDATE {run_requests} SET view_name = args ->> 0 WHERE view_name IS NULL",
        "ALTER TABLE {run_requests} DROP CONSTRAINT IF EXISTS mat_view_run_requests_status_check",
        "ALTER TABLE {run_requests} ADD CONSTRAINT mat_view_run_requests_status_check "
        "CHECK (status IN ('pending', 'submitted', 'success', 'failed'))",
        "CREATE INDEX IF NOT EXISTS {run_requests_submitted_idx} ON {run_requests} (run_key) "
        "WHERE status = 'submitted'",
        """CREATE TABLE IF NOT EXISTS {queue_consumers} (
            consumer text PRIMARY KEY,
            views text[] NOT NULL,
            seen_at timestamptz NOT NULL DEFAULT now()
        )""",
    ],
    [  # what each refresh cost the server and whom it blocked (NULL where not known)
        "ALTER TABLE {refresh_runs} ADD COLUMN IF NOT EXISTS wal_bytes bigint, "
        "ADD COLUMN IF NOT EXISTS temp_bytes bigint, ADD COLUMN IF NOT EXISTS buffers_read bigint, "
        "ADD COLUMN IF NOT EXISTS buffers_hit bigint, ADD COLUMN IF NOT EXISTS size_before_bytes bigint, "
        "ADD COLUMN IF NOT EXISTS size_after_bytes bigint, ADD COLUMN IF NOT EXISTS rows_changed bigint, "
        "ADD COLUMN IF NOT EXISTS readers_blocked bigint, ADD COLUMN IF NOT EXISTS reader_wait_ms bigint",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)


class Migrations(StoreConnection):
    """Create or upgrade the run tables; a current schema costs one read and no DDL."""

    def _names(self) -> dict[str, sql.Composable]:
        names: dict[str, sql.Composable] = {
            "definitions": self.table("mat_view_definitions"),
            "run_requests": self.table("mat_view_run_requests"),
            "run_requests_pending_idx": sql.Identifier("mat_view_run_requests_pending_idx"),
            "run_requests_submitted_idx": sql.Identifier("mat_view_run_requests_submitted_idx"),
            "queue_consumers": self.table("mat_view_queue_consumers"),
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
                for version in range(self._max_version(conn), SCHEMA_VERSION):
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
        try:
            return self._max_version(conn)
        except (psycopg.errors.UndefinedTable, psycopg.errors.InsufficientPrivilege):
            return 0  # migrate creates them, or fails naming the missing privilege

    def _max_version(self, conn: psycopg.Connection) -> int:
        versions = self.table("mat_view_schema_migrations")
        row = conn.execute(sql.SQL("SELECT coalesce(max(version), 0) AS v FROM {}").format(versions)).fetchone()
        return int(row["v"]) if row else 0

    def ensure_migrated(self) -> None:
        if not self._migrated:
            self.migrate()
