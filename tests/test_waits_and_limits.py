"""Numbers and messages that tell the truth: the real wait for locks (and shown), whose
statement_timeout cancelled a refresh, and which tablespace ran out of disk and why."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import scalar
from psycopg import sql
from psycopg.conninfo import make_conninfo
from test_cli import matviews

from matviews_dagster import MatViewDefinition, MatViews

HOLD_SECONDS = 3.0


def hold_a_read(dsn: str, relation: str, seconds: float, released: list[float]) -> threading.Thread:
    """A reader that reads ``relation`` in a transaction it keeps open ``seconds``, then ends."""
    ready = threading.Event()

    def reader() -> None:
        with psycopg.connect(dsn) as conn:
            conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(relation))).fetchone()
            ready.set()
            time.sleep(seconds)
            conn.rollback()
            released.append(time.monotonic())

    thread = threading.Thread(target=reader)
    thread.start()
    assert ready.wait(10)
    return thread


@pytest.mark.parametrize("strategy", ["regular", "swap"])
def test_a_refresh_behind_a_long_reader_records_and_keeps_apart_the_real_wait(make_mv, db, dsn, users, strategy):
    view = MatViewDefinition(name="mv_users", sql="SELECT id, email FROM users", refresh_strategy=strategy)
    mv = make_mv(view, lock_timeout=1, lock_retries=10)
    assert mv.create("mv_users").ok
    released: list[float] = []
    reader = hold_a_read(dsn, "mv_users", HOLD_SECONDS, released)
    asked = time.monotonic()
    result = mv.refresh("mv_users")
    reader.join()
    real_ms = (released[0] - asked) * 1000
    assert result.ok, result
    assert abs(result.lock_wait_ms - real_ms) <= 0.2 * real_ms, (result.lock_wait_ms, real_ms)
    assert result.duration_ms < 1000, "the wait is kept out of the duration"
    meta = scalar(db, "SELECT meta FROM mat_view_refresh_runs WHERE id = %s", (result.run_id,))
    assert meta["lock_wait_ms"] == result.lock_wait_ms and meta["table_lock_wait_ms"] > 0.8 * real_ms


def hold_a_refresh(
    dsn: str, relation: str, seconds: float, released: list[float], *, concurrently: bool = False
) -> threading.Thread:
    """Another session refreshing ``relation`` in a transaction it keeps open ``seconds``: it
    holds the view's ACCESS EXCLUSIVE lock (EXCLUSIVE with ``concurrently``), which every other
    refresher waits for."""
    ready = threading.Event()
    how = sql.SQL("CONCURRENTLY ") if concurrently else sql.SQL("")

    def refresher() -> None:
        with psycopg.connect(dsn) as conn:
            conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}{}").format(how, sql.Identifier(relation)))
            ready.set()
            time.sleep(seconds)
            conn.commit()
            released.append(time.monotonic())

    thread = threading.Thread(target=refresher)
    thread.start()
    assert ready.wait(10)
    return thread


@pytest.mark.parametrize("strategy", ["regular", "concurrent", "swap"])
def test_a_refresh_behind_another_sessions_refresh_records_the_wait(make_mv, db, dsn, users, strategy):
    """Every statement before the timed ones reads the catalog without locking the view, so the
    whole wait lands where it is timed and bounded."""
    view = MatViewDefinition(
        name="mv_users", sql="SELECT id, email FROM users", refresh_strategy=strategy, unique_index_columns=["id"]
    )
    mv = make_mv(view, lock_timeout=1, lock_retries=10)
    assert mv.create("mv_users").ok
    released: list[float] = []
    holder = hold_a_refresh(dsn, "mv_users", HOLD_SECONDS, released)
    asked = time.monotonic()
    result = mv.refresh("mv_users")
    holder.join()
    real_ms = (released[0] - asked) * 1000
    assert result.ok, result
    assert abs(result.lock_wait_ms - real_ms) <= 0.2 * real_ms, (result.lock_wait_ms, real_ms)
    assert result.duration_ms < 1000, "the wait is kept out of the duration"


def test_a_concurrent_refresh_behind_another_sessions_concurrent_refresh_sees_what_it_committed(
    make_mv, db, dsn, users
) -> None:
    view = MatViewDefinition(
        name="mv_users", sql="SELECT id, email FROM users", refresh_strategy="concurrent", unique_index_columns=["id"]
    )
    mv = make_mv(view, lock_timeout=1, lock_retries=10)
    assert mv.create("mv_users").ok
    db.execute("INSERT INTO users VALUES (1001, 'new@example.com', 'pro')")
    released: list[float] = []
    holder = hold_a_refresh(dsn, "mv_users", 1.5, released, concurrently=True)  # inserts row 1001
    result = mv.refresh("mv_users", "exact")
    holder.join()
    assert result.ok and result.rows_count == 11, result
    assert result.lock_wait_ms >= 1000


def test_the_cli_shows_the_wait(tmp_path: Path, dsn, db, users) -> None:
    (tmp_path / "matviews.yaml").write_text("views:\n  - name: mv_users\n    sql: SELECT id, email FROM users\n")
    assert matviews(tmp_path, dsn, "create", "--all").returncode == 0
    released: list[float] = []
    reader = hold_a_read(dsn, "mv_users", HOLD_SECONDS, released)
    done = matviews(tmp_path, dsn, "refresh", "mv_users")
    reader.join()
    assert done.returncode == 0, done.stderr
    assert re.search(r"refreshed, \d+ ms, waited [23]\.\d s for locks", done.stdout), done.stdout


SLOW = "SELECT id, pg_sleep(0.3) IS NULL AS slept FROM users"


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("definition", "the limit was the view's own statement_timeout of 0.5 s (statement_timeout in its definition)"),
        ("operation", "the limit was the statement_timeout of 0.5 s this operation was given"),
        ("database", "the limit was the statement_timeout of 500ms set on the database (ALTER DATABASE ... SET)"),
        ("client", "the limit was the statement_timeout of 500ms the client set (PGOPTIONS, or options in the DSN)"),
    ],
)
def test_a_cancelled_refresh_says_whose_statement_timeout_it_was(make_mv, db, dsn, users, where, expected) -> None:
    view = MatViewDefinition(name="mv_slow", sql=SLOW)
    make_mv(view).create("mv_slow")
    users(20)  # 6 s of sleep: far beyond the limit
    if where == "definition":
        mv = make_mv(view.model_copy(update={"statement_timeout": 0.5}))
    elif where == "operation":
        mv = make_mv(view, statement_timeout=0.5)
    elif where == "database":
        db.execute(sql.SQL("ALTER DATABASE {} SET statement_timeout = '500ms'").format(sql.Identifier(db.info.dbname)))
        mv = make_mv(view)
    else:
        mv = MatViews(dsn=make_conninfo(dsn, options="-c statement_timeout=500ms"), definitions=[view])
    result = mv.refresh("mv_slow")
    assert result.status == "failed"
    assert "canceling statement due to statement timeout" in result.error and expected in result.error, result.error
    assert "statement_timeout" in result.hint
    assert scalar(db, "SELECT count(*) FROM mv_slow") == 10, "the view kept its rows"


@pytest.fixture
def tiny_tablespace(db: psycopg.Connection) -> Iterator[str]:
    """A tablespace on a 1 MB tmpfs, owned by the server's OS user (mounting needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a 1 MB file system for the tablespace needs root")
    data_directory = scalar(db, "SHOW data_directory")
    folder = Path(f"/tmp/matviews-tiny-{uuid.uuid4().hex[:8]}")
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(folder)], check=True)
    try:
        os.chown(folder, os.stat(data_directory).st_uid, os.stat(data_directory).st_gid)
        name = f"tiny_{uuid.uuid4().hex[:8]}"
        db.execute(sql.SQL("CREATE TABLESPACE {} LOCATION {}").format(sql.Identifier(name), sql.Literal(str(folder))))
        yield name
        db.execute("DROP MATERIALIZED VIEW IF EXISTS mv_big")
        db.execute(sql.SQL("DROP TABLESPACE {}").format(sql.Identifier(name)))
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
        folder.rmdir()


@pytest.mark.parametrize("strategy", ["regular", "swap"])
def test_out_of_disk_names_the_tablespace_and_what_each_strategy_needs(make_mv, db, tiny_tablespace, strategy):
    db.execute("CREATE TABLE big AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 1000) g")
    view = MatViewDefinition(name="mv_big", sql="SELECT id, pad FROM big", refresh_strategy=strategy)
    mv = make_mv(view)
    assert mv.create("mv_big").ok
    db.execute(sql.SQL("ALTER MATERIALIZED VIEW mv_big SET TABLESPACE {}").format(sql.Identifier(tiny_tablespace)))
    db.execute("INSERT INTO big SELECT g, repeat('y', 200) FROM generate_series(1001, 20000) g")  # about 5 MB
    result = mv.refresh("mv_big")
    assert result.status == "failed"
    assert f"a {strategy} refresh of public.mv_big ran out of disk in tablespace {tiny_tablespace}" in result.error
    assert "writes a whole second copy of the view there" in result.error
    assert "strategy='concurrent'" in result.hint and "SET TABLESPACE" in result.hint
    assert scalar(db, "SELECT count(*) FROM mv_big") == 1000, "the view kept its rows"
    assert scalar(db, "SELECT status FROM mat_view_refresh_runs ORDER BY id DESC LIMIT 1") == "failed"
