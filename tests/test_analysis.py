"""SQL analysis with pglast: the relations a query reads."""

from __future__ import annotations

import pytest

from matviews_dagster.core.analysis import referenced_relations


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("SELECT * FROM users", [(None, "users")]),
        (
            "SELECT * FROM raw.users u JOIN accounts a ON a.user_id = u.id",
            [(None, "accounts"), ("raw", "users")],
        ),
        (
            "WITH recent AS (SELECT * FROM events WHERE occurred_at > now() - interval '1 day') "
            "SELECT * FROM recent JOIN users USING (id)",
            [(None, "events"), (None, "users")],
        ),
        (
            "SELECT * FROM (SELECT * FROM sessions) s WHERE EXISTS (SELECT 1 FROM accounts a) "
            "AND id IN (SELECT user_id FROM app.logins)",
            [(None, "accounts"), (None, "sessions"), ("app", "logins")],
        ),
        ("SELECT 1", []),
        ("TABLE users", [(None, "users")]),
        ("SELECT * FROM users, users u2", [(None, "users")]),
    ],
)
def test_referenced_relations(query: str, expected: list[tuple[str | None, str]]) -> None:
    assert referenced_relations(query) == expected
