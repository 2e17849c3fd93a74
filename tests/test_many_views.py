"""Files of thousands of views: every statement built from a list is bounded, and exit code 2
("bad input, nothing changed") is never given after work began."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import scalar
from test_cli import matviews

from matviews_dagster import MatViewDefinition
from matviews_dagster.core.store import RunStore

OVER_THE_LIMIT = 7_000
"""One statement holds at most 65,535 parameters: 6,554 definitions of 10 columns each."""


def definitions(count: int) -> list[MatViewDefinition]:
    return [MatViewDefinition(name=f"mv_{i}", sql=f"SELECT {i} AS x") for i in range(count)]


def test_the_definitions_mirror_takes_any_number_of_definitions(dsn) -> None:
    store = RunStore(dsn)
    try:
        ids = store.upsert_definitions(definitions(OVER_THE_LIMIT))
        assert len(set(ids.values())) == OVER_THE_LIMIT
        assert store.upsert_definitions(definitions(OVER_THE_LIMIT)) == ids, "upserted by name, ids kept"
    finally:
        store.close()


@pytest.mark.slow
def test_apply_all_of_7000_views_creates_every_one(dsn, db, tmp_path: Path) -> None:
    views = [{"name": f"mv_{i}", "sql": f"SELECT {i} AS x"} for i in range(OVER_THE_LIMIT)]
    (tmp_path / "matviews.yaml").write_text(yaml.safe_dump({"views": views}))
    done = matviews(tmp_path, dsn, "apply", "--all", "--yes", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    assert scalar(db, "SELECT count(*) FROM pg_matviews WHERE matviewname LIKE 'mv\\_%%'") == OVER_THE_LIMIT
    assert scalar(db, "SELECT count(*) FROM mat_view_create_runs WHERE status = 'success'") == OVER_THE_LIMIT


def test_a_batch_that_stops_after_work_began_exits_1_naming_what_finished(dsn, db, tmp_path: Path) -> None:
    """An operational error of the run store (SQLSTATE 57014, as a statement timeout raises it)
    after five views were created: exit 1 (something changed), never 2 (bad input)."""
    views = [{"name": f"mv_{i}", "sql": f"SELECT {i} AS x"} for i in range(10)]
    (tmp_path / "matviews.yaml").write_text(yaml.safe_dump({"views": views}))
    assert matviews(tmp_path, dsn, "migrate").returncode == 0
    db.execute(
        """CREATE FUNCTION refuse_mv_5() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
             IF NEW.view_name = 'public.mv_5' THEN
               RAISE EXCEPTION 'canceling statement due to statement timeout' USING ERRCODE = 'query_canceled';
             END IF;
             RETURN NEW;
           END $$"""
    )
    db.execute(
        "CREATE TRIGGER refuse_mv_5 BEFORE INSERT ON mat_view_create_runs FOR EACH ROW EXECUTE FUNCTION refuse_mv_5()"
    )
    done = matviews(tmp_path, dsn, "create", "--all", "--parallel", "1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the create batch stopped after 5 of 10 views" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert scalar(db, "SELECT count(*) FROM pg_matviews WHERE matviewname LIKE 'mv\\_%%'") == 5
