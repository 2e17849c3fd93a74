"""6. The seed's validation: reading each demo view against running its query (50,000 users)."""

from __future__ import annotations

import json
import statistics

import psycopg
from psycopg import sql

from matviews_dagster import MatViews, load_definitions
from matviews_dagster.core.validation import validate_view
from matviews_dagster.demo import DEMO_VIEWS
from matviews_dagster.demo.data import seed_demo_data

from ..harness import Bench, Section, table

REFERENCE = {  # speedups the reference system reported on 50,000 users
    "public.mv_users": "~0.5x",
    "public.mv_user_accounts": "~15x",
    "public.mv_user_accounts_events": "70-78x",
    "public.mv_user_activity": "~161x",
}


def _server_ms(conn: psycopg.Connection, statement: sql.Composable, iterations: int) -> float:
    """Median execution time inside the server (``EXPLAIN ANALYZE``): no rows cross the wire."""
    explain = sql.SQL("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {}").format(statement)
    times = []
    for _ in range(iterations):
        row = conn.execute(explain).fetchone()
        assert row is not None
        plan = row[0] if isinstance(row[0], list) else json.loads(row[0])
        times.append(float(plan[0]["Execution Time"]))
    return statistics.median(times)


def run(bench: Bench) -> Section:
    scale = 4 if bench.smoke else 100
    definitions = load_definitions(DEMO_VIEWS)
    rows = []
    data = []
    with bench.database("validation") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            counts = seed_demo_data(conn, scale)
        with MatViews(dsn=dsn, definitions=definitions) as mv:
            for definition in definitions:
                assert mv.create(definition.name).status == "success"
        with psycopg.connect(dsn, autocommit=True) as conn:
            for definition in definitions:
                validate_view(conn, definition, 1)  # warm-up: caches, plans
                result = validate_view(conn, definition, bench.repeats)
                query = sql.SQL(definition.sql)
                read = sql.SQL("SELECT * FROM {}").format(definition.qualified.identifier)
                server_query = _server_ms(conn, query, bench.repeats)
                server_view = _server_ms(conn, read, bench.repeats)
                rows.append(
                    [
                        definition.name,
                        f"{result.view_rows:,}",
                        f"{result.query.median_ms:,.1f}",
                        f"{result.view_read.median_ms:,.1f}",
                        f"{result.speedup:.1f}x",
                        f"{server_query:,.1f}",
                        f"{server_view:,.1f}",
                        f"{server_query / server_view:.1f}x",
                        REFERENCE.get(definition.name, ""),
                        "yes" if result.matches else "NO",
                    ]
                )
                data.append({**result.as_row(), "server_query_ms": server_query, "server_view_ms": server_view})
    markdown = (
        f"Demo at scale {scale}: {counts['users']:,} users, {counts['accounts']:,} accounts, "
        f"{counts['events']:,} events, {counts['sessions']:,} sessions.\n\n"
        + table(
            [
                "view",
                "rows",
                "validate: query ms",
                "validate: view ms",
                "speedup",
                "in server: query ms",
                "in server: view ms",
                "speedup",
                "reference",
                "same rows",
            ],
            rows,
        )
    )
    return Section("validation", "The seed's validation", markdown, {"scale": scale, "counts": counts, "views": data})
