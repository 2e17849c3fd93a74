"""2. Dagster overhead: our view asset against the hand-written ``@asset`` a user would write."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import dagster as dg
import psycopg
from psycopg import sql

from matviews_dagster import MatViews
from matviews_dagster.assets import MATVIEWS_KEY, build_matview_assets
from matviews_dagster.resources import MatViewsResource

from ..data import load_source, view
from ..harness import Bench, Section, interleaved, ratio, table


def hand_written_asset(dsn: str, view_name: str, deps: list[dg.AssetKey]) -> dg.AssetsDefinition:
    """The alternative: an ``@asset`` that sends ``REFRESH`` through psycopg, with the same lineage."""

    @dg.asset(name=f"hand_written_{view_name}", deps=deps)
    def refresh() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(sql.Identifier(view_name)))

    return refresh


def quiet() -> contextlib.AbstractContextManager[object]:
    """Dagster's console log of each run, out of the benchmark's output."""
    return contextlib.redirect_stderr(io.StringIO())


def _measure_size(bench: Bench, rows: int, instance: dg.DagsterInstance) -> dict[str, Any]:
    with bench.database("dagster") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            load_source(conn, "src", rows)
        definition = view("mv_asset", "src", "regular")
        with MatViews(dsn=dsn, definitions=[definition]) as mv:
            mv.create(definition.name)
        ours = build_matview_assets([definition])
        resources = {MATVIEWS_KEY: MatViewsResource(dsn=dsn)}
        deps = [dep.asset_key for spec in ours.specs for dep in spec.deps]
        only_the_view = dg.AssetSelection.assets(*ours.keys).without_checks()  # the same work as theirs
        theirs = hand_written_asset(dsn, definition.qualified.name, deps)

        def materialize_ours() -> None:
            with quiet():
                assert dg.materialize([ours], resources=resources, instance=instance, selection=only_the_view).success

        def materialize_theirs() -> None:
            with quiet():
                assert dg.materialize([theirs], instance=instance).success

        samples = interleaved(
            {"hand-written @asset": materialize_theirs, "matviews asset": materialize_ours}, bench.repeats
        )
    return {"rows": rows, **samples}


def run(bench: Bench) -> Section:
    sizes = (1_000, 10_000) if bench.smoke else (1_000, 1_000_000)
    with dg.instance_for_test() as instance:
        results = [_measure_size(bench, rows, instance) for rows in sizes]
    rows = []
    for r in results:
        ours, theirs = r["matviews asset"], r["hand-written @asset"]
        rows.append(
            [
                f"{r['rows']:,}",
                theirs.cell(),
                ours.cell(),
                f"{ratio(ours, theirs):.3f}",
                f"{ours.median - theirs.median:+.1f}",
            ]
        )
    markdown = table(["rows", "hand-written @asset, ms", "matviews asset, ms", "ratio", "extra ms"], rows)
    data = [
        {
            "rows": r["rows"],
            "hand_written": r["hand-written @asset"].as_dict(),
            "matviews": r["matviews asset"].as_dict(),
        }
        for r in results
    ]
    return Section("dagster", "Dagster overhead", markdown, {"results": data})
