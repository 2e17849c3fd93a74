"""Demo source tables: ``users`` (500 per scale unit), ``accounts`` (1-2 per user),
``events`` (10-30 per user) and ``sessions`` (1-5 per user). Deterministic for a given scale."""

from __future__ import annotations

import psycopg

from ..core.messages import shown

USERS_PER_SCALE = 500
TABLES = ("users", "accounts", "events", "sessions")

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS users (
        id int PRIMARY KEY, email text NOT NULL, name text NOT NULL, created_at timestamptz NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS accounts (
        id bigserial PRIMARY KEY, user_id int NOT NULL, plan text NOT NULL,
        created_at timestamptz NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS events (
        id bigserial PRIMARY KEY, user_id int NOT NULL, event_type text NOT NULL,
        occurred_at timestamptz NOT NULL, properties jsonb NOT NULL DEFAULT '{}')""",
    """CREATE TABLE IF NOT EXISTS sessions (
        id bigserial PRIMARY KEY, user_id int NOT NULL, started_at timestamptz NOT NULL,
        duration_s int NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS accounts_user_id_idx ON accounts (user_id)",
    "CREATE INDEX IF NOT EXISTS events_user_id_idx ON events (user_id)",
    "CREATE INDEX IF NOT EXISTS sessions_user_id_idx ON sessions (user_id)",
]

_LOAD = [
    "SELECT setseed(0.42) WHERE %(users)s > 0",
    """INSERT INTO users
       SELECT g, 'user' || g || '@example.com', 'User ' || g,
              timestamptz '2026-01-01' + (g %% 300) * interval '1 day'
       FROM generate_series(1, %(users)s) g""",
    """INSERT INTO accounts (user_id, plan, created_at)
       SELECT u.id, (ARRAY['free', 'pro', 'team'])[1 + (u.id + k) %% 3], u.created_at
       FROM users u CROSS JOIN LATERAL generate_series(1, 1 + u.id %% 2) k""",
    """INSERT INTO events (user_id, event_type, occurred_at, properties)
       SELECT u.id, (ARRAY['login', 'view', 'click', 'purchase'])[1 + floor(random() * 4)::int],
              u.created_at + k * interval '3 hours', jsonb_build_object('n', k)
       FROM users u CROSS JOIN LATERAL generate_series(1, 10 + (u.id * 7) %% 21) k""",
    """INSERT INTO sessions (user_id, started_at, duration_s)
       SELECT u.id, u.created_at + k * interval '1 day', 60 + floor(random() * 3600)::int
       FROM users u CROSS JOIN LATERAL generate_series(1, 1 + (u.id * 3) %% 5) k""",
]


def seed_demo_data(conn: psycopg.Connection, scale: int = 1) -> dict[str, int]:
    """(Re)load the demo tables in one transaction; returns rows per table."""
    if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {shown(scale)}")
    with conn.transaction():
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute("TRUNCATE users, accounts, events, sessions RESTART IDENTITY")
        for statement in _LOAD:
            conn.execute(statement, {"users": scale * USERS_PER_SCALE})
        counts = {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES}
    for table in TABLES:
        conn.execute(f"ANALYZE {table}")
    return counts
