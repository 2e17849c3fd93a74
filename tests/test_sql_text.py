"""SQL that ends in a comment or a semicolon: the statement as PostgreSQL's lexer delimits it."""

from __future__ import annotations

import time

import pytest
from conftest import scalar

from matviews_dagster import MatViewDefinition
from matviews_dagster.core.health_checks import check_definition
from matviews_dagster.core.validation import validate_view

ENDINGS = {
    "line comment": "SELECT plan, count(*) AS n FROM users GROUP BY 1 -- one row per plan",
    "semicolon": "SELECT plan, count(*) AS n FROM users GROUP BY 1;",
    "semicolon then comment": "SELECT plan, count(*) AS n FROM users GROUP BY 1; -- done\n",
    "block comment": "/* plans */ SELECT plan, count(*) AS n FROM users GROUP BY 1 /* end */",
    "comment inside": "SELECT plan, -- the plan\n count(*) AS n FROM users GROUP BY 1",
}


@pytest.mark.parametrize("sql", ENDINGS.values(), ids=ENDINGS.keys())
def test_every_path_that_embeds_the_sql_works(sql, make_mv, db, users) -> None:
    definition = MatViewDefinition(name="mv_plans", sql=sql, refresh_strategy="swap")
    assert not definition.sql.rstrip().endswith((";", "*/")) and "-- done" not in definition.sql
    mv = make_mv(definition)
    assert mv.create("mv_plans").ok
    assert mv.refresh("mv_plans").ok  # swap builds a new copy from the SQL
    with mv.connect() as conn:
        assert validate_view(conn, definition, 1).matches
        assert check_definition(conn, definition).passed
    assert scalar(db, "SELECT count(*) FROM mv_plans") == 2


def test_the_drift_probe_never_runs_a_slow_query(make_mv, db, users) -> None:
    slow = "SELECT u.id FROM users u CROSS JOIN (SELECT pg_sleep(s) FROM sleep_seconds) z -- slow on purpose"
    db.execute("CREATE TABLE sleep_seconds (s float)")
    db.execute("INSERT INTO sleep_seconds VALUES (0)")
    definition = MatViewDefinition(name="mv_slow", sql=slow)
    mv = make_mv(definition)
    assert mv.create("mv_slow").ok
    db.execute("UPDATE sleep_seconds SET s = 2")
    started = time.monotonic()
    with mv.connect() as conn:
        assert check_definition(conn, definition).passed
    assert time.monotonic() - started < 1.0, "WITH NO DATA was swallowed by the comment"
