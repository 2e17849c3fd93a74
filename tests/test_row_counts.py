"""Row counts: estimated is never -1 nor stale, exact counts, none stores NULL."""

from __future__ import annotations

import pytest
from conftest import scalar

from matviews_dagster import MatViewDefinition

NO_INDEX = MatViewDefinition(name="mv_plain", sql="SELECT id, plan FROM users")
INDEXED = MatViewDefinition(name="mv_plain", sql="SELECT id, plan FROM users", unique_index_columns=["id"])


@pytest.mark.parametrize("definition", [NO_INDEX, INDEXED], ids=["no index", "indexed"])
@pytest.mark.parametrize("strategy", ["regular", "swap"])
def test_estimated_is_neither_unknown_nor_stale(make_mv, db, users, definition, strategy) -> None:
    mv = make_mv(definition)
    mv.create("mv_plain")
    db.execute("ANALYZE mv_plain")
    assert scalar(db, "SELECT reltuples FROM pg_class WHERE relname = 'mv_plain'") == 10
    users(57)
    result = mv.refresh("mv_plain", "estimated", strategy=strategy)
    assert result.rows_count == 57
    assert mv.history(kind="refresh", limit=1)[0]["rows_count"] == 57


def test_estimated_is_not_stale_after_a_concurrent_refresh(make_mv, db, users) -> None:
    mv = make_mv(MatViewDefinition.model_validate({**INDEXED.model_dump(), "refresh_strategy": "concurrent"}))
    mv.create("mv_plain")
    db.execute("ANALYZE mv_plain")
    users(57)
    assert mv.refresh("mv_plain", "estimated").rows_count == 57
    users(400)
    assert mv.refresh("mv_plain", "estimated").rows_count == 400


def test_estimated_right_after_create_without_index(make_mv, db, users) -> None:
    mv = make_mv(NO_INDEX)
    users(21)
    mv.create("mv_plain")
    assert mv.refresh("mv_plain", "estimated").rows_count == 21


def test_exact_counts_rows(make_mv, db, users) -> None:
    mv = make_mv(NO_INDEX)
    mv.create("mv_plain")
    users(13)
    result = mv.refresh("mv_plain", {"row_count_strategy": "exact"})
    assert result.rows_count == 13


@pytest.mark.parametrize("option", [None, "none", {"row_count_strategy": None}])
def test_none_stores_null(make_mv, db, users, option) -> None:
    mv = make_mv(NO_INDEX)
    mv.create("mv_plain")
    result = mv.refresh("mv_plain", option)
    assert result.status == "success" and result.rows_count is None
    assert mv.history(kind="refresh", limit=1)[0]["rows_count"] is None


def test_omitted_option_uses_the_definitions_row_count_strategy(make_mv, db, users) -> None:
    mv = make_mv(MatViewDefinition.model_validate({**NO_INDEX.model_dump(), "row_count_strategy": "none"}))
    mv.create("mv_plain")
    assert mv.refresh("mv_plain").rows_count is None
    assert mv.refresh("mv_plain", "exact").rows_count == 10
