"""A success means the deployed view is the defined one: another tool that drops and re-creates
a managed view with another query is noticed before a refresh is recorded, by ``--if-changed``
too, and ``on_definition_change`` decides what happens."""

from __future__ import annotations

import time

import psycopg
import pytest
from conftest import scalar
from test_cli import matviews
from test_if_changed import counters

from matviews_dagster import MatViewDefinition, MatViews
from matviews_dagster.core.vocabulary import SOURCES_UNCHANGED

DEFINED = MatViewDefinition(
    name="mv_small",
    sql="SELECT id FROM src WHERE id <= 101",
    refresh_strategy="concurrent",
    unique_index_columns=["id"],
)


@pytest.fixture
def redefined(dsn: str, db: psycopg.Connection) -> psycopg.Connection:
    """``mv_small`` created and refreshed by us (101 rows), then dropped and re-created by another
    tool with another query (150 rows), keeping a unique index so a concurrent refresh works."""
    db.execute("CREATE TABLE src AS SELECT g AS id FROM generate_series(1, 150) g")
    with MatViews(dsn, [DEFINED]) as mv:
        assert mv.create("mv_small").ok
        (first,) = mv.refresh_many(if_changed=True)
        assert first.ok and first.outcome != SOURCES_UNCHANGED
    db.execute("DROP MATERIALIZED VIEW mv_small")
    db.execute("CREATE MATERIALIZED VIEW mv_small AS SELECT id FROM src")
    db.execute("CREATE UNIQUE INDEX mv_small_by_hand ON mv_small (id)")
    return db


@pytest.mark.parametrize("if_changed", [False, True])
def test_apply_rebuilds_the_defined_view(dsn, redefined, if_changed) -> None:
    with MatViews(dsn, [DEFINED]) as mv:
        (result,) = mv.refresh_many(if_changed=if_changed)
    assert result.ok and result.outcome != SOURCES_UNCHANGED, result
    assert result.created is not None and result.created.outcome == "updated", "applied as a create run"
    assert scalar(redefined, "SELECT count(*) FROM mv_small") == 101


def test_warn_refreshes_the_deployed_query_and_says_so(dsn, redefined) -> None:
    warn = DEFINED.model_copy(update={"on_definition_change": "warn"})
    with MatViews(dsn, [warn]) as mv:
        (result,) = mv.refresh_many(if_changed=True)
    assert result.ok
    assert any("differs from its definition (query changed)" in w and "apply_many()" in w for w in result.warnings)
    assert scalar(redefined, "SELECT count(*) FROM mv_small") == 150
    row = scalar(redefined, "SELECT meta -> 'warnings' ->> 0 FROM mat_view_refresh_runs ORDER BY id DESC LIMIT 1")
    assert "was not applied (on_definition_change: warn)" in row


def test_fail_refuses_with_the_hint_to_apply(dsn, redefined, tmp_path) -> None:
    (tmp_path / "matviews.yaml").write_text(
        "views:\n  - name: mv_small\n    sql: SELECT id FROM src WHERE id <= 101\n    refresh_strategy: concurrent\n"
        "    unique_index_columns: [id]\n    on_definition_change: fail\n"
    )
    done = matviews(tmp_path, dsn, "refresh", "mv_small", "--if-changed")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "differs from its definition (query changed) and on_definition_change is fail" in done.stdout + done.stderr
    assert "matviews apply" in done.stdout + done.stderr
    assert scalar(redefined, "SELECT status FROM mat_view_refresh_runs ORDER BY id DESC LIMIT 1") == "failed"
    assert scalar(redefined, "SELECT count(*) FROM mv_small") == 150, "nothing was refreshed"
    applied = matviews(tmp_path, dsn, "apply", "mv_small", "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert scalar(redefined, "SELECT count(*) FROM mv_small") == 101


def test_our_own_swaps_keep_the_fast_path_and_if_changed_skips_again(dsn, db) -> None:
    """A swap gives the view a new oid but the same query: no comparison, and an unchanged
    source is still skipped."""
    db.execute("CREATE TABLE src AS SELECT g AS id FROM generate_series(1, 150) g")
    while not any(counters(db, "src")):  # this session's write reaches the shared counters
        time.sleep(0.05)
    swap = MatViewDefinition.model_validate({**DEFINED.model_dump(), "refresh_strategy": "swap"})
    with MatViews(dsn, [swap]) as mv:
        assert mv.create("mv_small").ok
        assert mv.refresh("mv_small").ok
        time.sleep(1.2)  # the refresh's own statistics settle
        (again,) = mv.refresh_many(if_changed=True)
    assert again.outcome == SOURCES_UNCHANGED, again
    probes = scalar(db, "SELECT count(*) FROM mat_view_refresh_runs WHERE meta::text LIKE '%%mvprobe%%'")
    assert probes == 0, "no run compared the catalog"


def test_a_declared_index_dropped_by_hand_is_built_again_by_apply(dsn, db) -> None:
    db.execute("CREATE TABLE src AS SELECT g AS id FROM generate_series(1, 150) g")
    with MatViews(dsn, [DEFINED]) as mv:
        assert mv.create("mv_small").ok
        db.execute("DROP INDEX mv_small_id_idx")  # the concurrent refresh's unique index
        result = mv.refresh("mv_small")
    assert result.ok and result.created is not None, result
    assert "add index UNIQUE (id)" in str(
        scalar(db, "SELECT meta -> 'change' ->> 'summary' FROM mat_view_create_runs ORDER BY id DESC LIMIT 1")
    )
    assert scalar(db, "SELECT count(*) FROM pg_indexes WHERE tablename = 'mv_small'") == 1
