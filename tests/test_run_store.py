"""Run store: tables and migrations, definitions mirror, run rows, history."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest
from conftest import new_database, scalar
from psycopg import sql
from psycopg.conninfo import make_conninfo

from matviews_dagster import MatViewDefinition, MatViews, OperationResult, RunStore
from matviews_dagster.core.store import SCHEMA_VERSION

SLOW = MatViewDefinition(
    name="mv_slow", sql="SELECT u.id FROM users u CROSS JOIN (SELECT pg_sleep(s) FROM sleep_seconds) z"
)
USERS = MatViewDefinition(name="mv_users", sql="SELECT id, email FROM users", unique_index_columns=["id"])


def columns(db: psycopg.Connection, table: str, schema: str = "public") -> dict[str, str]:
    rows = db.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
        (schema, table),
    ).fetchall()
    return dict(rows)


def test_migrate_creates_the_contract_tables_idempotently(dsn, db) -> None:
    store = RunStore(dsn)
    assert store.migrate() == SCHEMA_VERSION
    assert store.migrate() == SCHEMA_VERSION
    assert scalar(db, "SELECT count(*) FROM mat_view_schema_migrations") == SCHEMA_VERSION
    common = {
        "id": "bigint",
        "mat_view_definition_id": "bigint",
        "view_name": "text",
        "database_name": "text",
        "status": "text",
        "started_at": "timestamp with time zone",
        "finished_at": "timestamp with time zone",
        "duration_ms": "bigint",
        "error": "text",
        "meta": "jsonb",
        "dagster_run_id": "text",
    }
    assert columns(db, "mat_view_create_runs") == common
    assert columns(db, "mat_view_delete_runs") == common
    costs = ("wal_bytes", "temp_bytes", "buffers_read", "buffers_hit", "size_before_bytes", "size_after_bytes")
    costs += ("rows_changed", "readers_blocked", "reader_wait_ms")
    assert columns(db, "mat_view_refresh_runs") == {**common, "rows_count": "bigint", **dict.fromkeys(costs, "bigint")}
    definitions = columns(db, "mat_view_definitions")
    for column in (
        "name",
        "sql",
        "refresh_strategy",
        "unique_index_columns",
        "indexes",
        "row_count_strategy",
        "dependencies",
        "schedule_cron",
        "sql_sha256",
        "created_at",
        "updated_at",
        "last_refreshed_at",
    ):
        assert column in definitions
    requests = columns(db, "mat_view_run_requests")
    for column in (
        "id",
        "job",
        "args",
        "queue",
        "status",
        "enqueued_at",
        "submitted_at",
        "dagster_run_id",
        "error",
    ):
        assert column in requests
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("INSERT INTO mat_view_refresh_runs (view_name, database_name, status) VALUES ('v', 'd', 'weird')")
    store.close()


def test_concurrent_migrations_do_not_collide(dsn, db) -> None:
    errors: list[BaseException] = []

    def migrate() -> None:
        store = RunStore(dsn, schema="history")
        try:
            store.migrate()
        except BaseException as exc:  # pragma: no cover - the assertion reports it
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert scalar(db, "SELECT count(*) FROM history.mat_view_schema_migrations") == SCHEMA_VERSION


def test_runs_schema_and_separate_runs_database(make_mv, server_dsn, dsn, db, users) -> None:
    with new_database(server_dsn, "mvruns") as runs_dsn:
        mv = make_mv(USERS, runs_dsn=runs_dsn, runs_schema="ops")
        assert mv.create("mv_users").status == "success"
        assert scalar(db, "SELECT to_regclass('ops.mat_view_create_runs')") is None
        with psycopg.connect(runs_dsn) as runs:
            row = runs.execute("SELECT view_name, database_name, status FROM ops.mat_view_create_runs").fetchone()
        assert row == ("public.mv_users", db.info.dbname, "success")
        mv.close()


def test_definitions_are_mirrored_and_rebuilt_from_their_id(make_mv, db, users) -> None:
    definition = USERS.model_copy(
        update={
            "description": "Users",
            "tags": {"tier": "gold"},
            "indexes": [["email"]],
            "schedule_cron": "0 3 * * *",
        }
    )
    mv = make_mv(definition)
    mv.create("mv_users")
    definition_id = scalar(db, "SELECT id FROM mat_view_definitions WHERE name = 'public.mv_users'")
    assert mv.runs.get_definition(definition_id) == definition
    assert mv.definition(definition_id) == definition
    assert mv.definition(str(definition_id)) == definition
    assert scalar(db, "SELECT mat_view_definition_id FROM mat_view_create_runs") == definition_id
    assert scalar(db, "SELECT last_refreshed_at FROM mat_view_definitions") is None
    mv.refresh("mv_users")
    assert scalar(db, "SELECT last_refreshed_at IS NOT NULL FROM mat_view_definitions") is True
    updated_at = scalar(db, "SELECT updated_at FROM mat_view_definitions")
    changed = definition.model_copy(update={"sql": "SELECT id, email, 1 AS v FROM users"})
    make_mv(changed).refresh("mv_users")
    assert scalar(db, "SELECT sql FROM mat_view_definitions") == changed.sql
    assert scalar(db, "SELECT updated_at FROM mat_view_definitions") > updated_at
    assert scalar(db, "SELECT count(*) FROM mat_view_definitions") == 1
    with pytest.raises(ValueError, match="unknown definition id 999"):
        mv.definition(999)


def test_run_row_is_visible_while_the_work_runs(make_mv, dsn, db, users) -> None:
    db.execute("CREATE TABLE sleep_seconds (s float)")
    db.execute("INSERT INTO sleep_seconds VALUES (0)")
    mv = make_mv(SLOW)
    mv.create("mv_slow")
    db.execute("UPDATE sleep_seconds SET s = 1.5")
    outcome: list[OperationResult] = []
    worker = threading.Thread(target=lambda: outcome.append(mv.refresh("mv_slow")))
    worker.start()
    seen = None
    with psycopg.connect(dsn, autocommit=True) as observer:
        deadline = time.monotonic() + 10
        while seen is None and time.monotonic() < deadline:
            seen = observer.execute(
                "SELECT id, status, finished_at FROM mat_view_refresh_runs WHERE status = 'running'"
            ).fetchone()
            time.sleep(0.05)
    worker.join()
    assert seen is not None and seen[1] == "running" and seen[2] is None
    final = db.execute("SELECT status, duration_ms FROM mat_view_refresh_runs WHERE id = %s", (seen[0],)).fetchone()
    assert final[0] == "success" and final[1] >= 1400
    assert outcome[0].run_id == seen[0]


def test_history_is_newest_first_and_filters(make_mv, db, users) -> None:
    other = MatViewDefinition(name="mv_other", sql="SELECT 1 AS one")
    mv = make_mv(USERS, other)
    mv.create("mv_users")
    mv.refresh("mv_users")
    mv.create("mv_other")
    mv.delete("mv_other")
    everything = mv.history()
    assert [(r["kind"], r["view_name"]) for r in everything] == [
        ("delete", "public.mv_other"),
        ("create", "public.mv_other"),
        ("refresh", "public.mv_users"),
        ("create", "public.mv_users"),
    ]
    assert [r["kind"] for r in mv.history(view="mv_users")] == ["refresh", "create"]
    assert [r["view_name"] for r in mv.history(kind="create")] == ["public.mv_other", "public.mv_users"]
    assert len(mv.history(limit=1)) == 1
    with pytest.raises(ValueError, match="kind must be one of"):
        mv.history(kind="vacuum")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit"):
        mv.history(limit=0)


def test_a_role_without_create_on_the_database_runs_operations_after_migration(make_mv, dsn, db, users) -> None:
    """Once migrated by an admin, the run store needs no DDL: an app role can use it."""
    role = f"app_{uuid.uuid4().hex[:8]}"
    db.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        make_mv(USERS).migrate()
        for statement in (
            "REVOKE CREATE ON DATABASE {db} FROM PUBLIC",
            "GRANT CREATE, USAGE ON SCHEMA public TO {role}",
            "GRANT SELECT ON users TO {role}",
            "GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {role}",
            "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}",
        ):
            db.execute(sql.SQL(statement).format(db=sql.Identifier(db.info.dbname), role=sql.Identifier(role)))
        app = MatViews(dsn=make_conninfo(dsn, user=role), definitions=[USERS])
        assert app.create("mv_users").status == "success"
        assert app.refresh("mv_users").status == "success"
        assert scalar(db, "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'mv_users'") == role
        app.close()
    finally:
        db.execute("DROP MATERIALIZED VIEW IF EXISTS mv_users")
        db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
