"""Unqualified names resolve as Postgres will bind them: ordering, lineage and creation agree."""

from __future__ import annotations

import dagster as dg
import pytest
from conftest import scalar
from psycopg.conninfo import make_conninfo

from matviews_dagster import MatViewDefinition, ViewGraph, build_definitions, load_definitions
from matviews_dagster.core.names import QualifiedName

REVENUE = MatViewDefinition(
    name="reporting.mv_daily_revenue", sql="SELECT day, sum(amount) AS revenue FROM orders GROUP BY day"
)
WEEKLY = MatViewDefinition(
    name="reporting.mv_weekly",
    sql="SELECT date_trunc('week', day) AS week, sum(revenue) AS r FROM mv_daily_revenue GROUP BY 1",
)


@pytest.fixture
def reporting(db) -> None:
    db.execute("CREATE SCHEMA reporting")
    db.execute("CREATE TABLE reporting.orders (day date, amount numeric)")
    db.execute("INSERT INTO reporting.orders VALUES ('2026-11-02', 10), ('2026-11-03', 5)")


def test_the_views_own_schema_comes_first(reporting) -> None:
    graph = ViewGraph([WEEKLY, REVENUE])
    assert [d.name for d in graph] == ["reporting.mv_daily_revenue", "reporting.mv_weekly"]
    assert graph.upstream("reporting.mv_weekly") == ("reporting.mv_daily_revenue",)
    assert graph.sources("reporting.mv_daily_revenue") == (QualifiedName("reporting", "orders"),)


@pytest.mark.parametrize("dsn_search_path", [None, "", "public", "reporting,public"])
def test_create_and_refresh_agree_with_the_graph_whatever_the_dsn_says(
    dsn, db, reporting, make_mv, dsn_search_path
) -> None:
    db.execute("CREATE TABLE public.orders (day date, amount numeric)")  # a decoy the DSN might find first
    db.execute("INSERT INTO public.orders VALUES ('2026-11-02', 1000)")
    target = make_conninfo(dsn, options=f"-c search_path={dsn_search_path}") if dsn_search_path is not None else dsn
    mv = make_mv(WEEKLY, REVENUE, dsn=target, runs_dsn=dsn)  # the work's connections under the DSN's path
    created = list(mv.create_many())
    assert [r.view for r in created] == ["reporting.mv_daily_revenue", "reporting.mv_weekly"]
    assert all(r.ok and not r.warnings for r in created), created
    assert scalar(db, "SELECT sum(revenue) FROM reporting.mv_daily_revenue") == 15  # reporting.orders, not the decoy
    db.execute("INSERT INTO reporting.orders VALUES ('2026-11-04', 7)")
    refreshed = list(mv.refresh_many())
    assert [r.view for r in refreshed] == ["reporting.mv_daily_revenue", "reporting.mv_weekly"]
    assert scalar(db, "SELECT sum(r) FROM reporting.mv_weekly") == 22, "the downstream view saw the fresh upstream"
    wanted = {"reporting.mv_weekly": ["definition_matches"], "reporting.mv_daily_revenue": ["definition_matches"]}
    checked = {definition.name: outcomes for definition, outcomes in mv.check_many(wanted)}
    assert all(outcomes[0].passed for outcomes in checked.values()), checked  # deployed and probe read alike


def test_lineage_shows_the_real_relations(dsn, reporting) -> None:
    defs = build_definitions([WEEKLY, REVENUE], dsn=dsn)
    graph = defs.resolve_asset_graph()
    weekly, revenue = dg.AssetKey(["reporting", "mv_weekly"]), dg.AssetKey(["reporting", "mv_daily_revenue"])
    assert graph.get(weekly).parent_keys == {revenue}
    assert graph.get(revenue).parent_keys == {dg.AssetKey(["reporting", "orders"])}
    assert dg.AssetKey(["public", "mv_daily_revenue"]) not in graph.get_all_asset_keys()
    assert dg.AssetKey(["public", "orders"]) not in graph.get_all_asset_keys()


def test_search_path_in_the_definitions_file(tmp_path, db, make_mv) -> None:
    db.execute("CREATE SCHEMA staging")
    db.execute("CREATE TABLE staging.events (id int)")
    db.execute("INSERT INTO staging.events SELECT generate_series(1, 3)")
    path = tmp_path / "matviews.yaml"
    path.write_text(
        "search_path: [staging, public]\n"
        "views:\n"
        "  - name: mv_events\n    sql: SELECT id FROM events\n"
        "  - name: mv_events_own\n    sql: SELECT id FROM events\n    search_path: [public]\n"
    )
    definitions = load_definitions(path)
    assert [d.search_path for d in definitions] == [["staging", "public"], ["public"]]
    graph = ViewGraph(definitions)
    assert graph.sources("public.mv_events") == (QualifiedName("staging", "events"),)
    result = make_mv(definitions[0]).create("mv_events")
    assert result.ok and scalar(db, "SELECT count(*) FROM mv_events") == 3
    path.write_text("search_path: [staging]\nschedules: []\nviews: []\n")
    with pytest.raises(ValueError, match="unknown top-level key 'schedules'"):
        load_definitions(path)


def test_a_wrong_assumption_about_a_table_is_a_warning(db, reporting, make_mv) -> None:
    db.execute("CREATE TABLE public.customers (id int)")  # lives in public, not in the view's schema
    view = MatViewDefinition(name="reporting.mv_customers", sql="SELECT id FROM customers")
    assert ViewGraph([view]).sources(view.name) == (QualifiedName("reporting", "customers"),)
    result = make_mv(view).create(view.name)
    assert result.ok
    assert result.warnings == (
        "the dependency graph assumes reporting.mv_customers reads reporting.customers, but Postgres bound "
        "public.customers: qualify the name in its SQL (public.customers) or set search_path",
    )
    meta = db.execute("SELECT meta->'warnings' FROM mat_view_create_runs").fetchone()[0]
    assert meta == list(result.warnings)


def test_dependencies_and_catalog_names_resolve_like_sql() -> None:
    rels = MatViewDefinition(name="reporting.mv_rels", sql="SELECT relname FROM pg_class")
    dep = MatViewDefinition(name="reporting.mv_dep", sql="SELECT 1 AS x", dependencies=["mv_rels", "ops.calendar"])
    graph = ViewGraph([dep, rels])
    assert graph.upstream("reporting.mv_dep") == ("reporting.mv_rels",), "an unqualified dependency follows the path"
    assert graph.sources("reporting.mv_dep") == (QualifiedName("ops", "calendar"),)
    assert graph.sources("reporting.mv_rels") == (), "pg_class is the catalog's, not a source"
    assert [d.name for d in graph] == ["reporting.mv_rels", "reporting.mv_dep"]
