"""1. Library overhead: our refresh operation against the bare statements a script would send."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from matviews_dagster import MatViewDefinition, MatViews

from ..data import load_source, view
from ..harness import Bench, Section, interleaved, ratio, table
from ..roundtrips import counting

STRATEGIES = ("regular", "concurrent", "swap")


def bare_refresh(dsn: str, definition: MatViewDefinition) -> Callable[[], None]:
    """What a hand-written script does: connect, send the statement(s), disconnect."""
    name = definition.qualified.name
    ident = sql.Identifier(name)

    def regular() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(ident))

    def concurrent() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW CONCURRENTLY {}").format(ident))

    def swap() -> None:  # build, index, rename both in one transaction, drop the old copy after
        new, old = sql.Identifier(f"{name}_new"), sql.Identifier(f"{name}_old")
        index, new_index = sql.Identifier(f"{name}_id_key"), sql.Identifier(f"{name}_id_key_new")
        query = sql.SQL(definition.sql)  # our own trusted benchmark SQL
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE MATERIALIZED VIEW {} AS {}").format(new, query))
            conn.execute(sql.SQL("CREATE UNIQUE INDEX {} ON {} (id)").format(new_index, new))
            with conn.transaction():
                conn.execute(sql.SQL("ALTER MATERIALIZED VIEW {} RENAME TO {}").format(ident, old))
                conn.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(index, sql.Identifier(f"{name}_id_old")))
                conn.execute(sql.SQL("ALTER MATERIALIZED VIEW {} RENAME TO {}").format(new, ident))
                conn.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(new_index, index))
            conn.execute(sql.SQL("DROP MATERIALIZED VIEW {}").format(old))

    return {"regular": regular, "concurrent": concurrent, "swap": swap}[definition.refresh_strategy]


def _measure_size(bench: Bench, rows: int) -> list[dict[str, Any]]:
    results = []
    with bench.database("overhead") as dsn:
        table_name = f"src_{rows}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            load_source(conn, table_name, rows)
        definitions = [view(f"mv_{strategy}", table_name, strategy) for strategy in STRATEGIES]
        with MatViews(dsn=dsn, definitions=definitions) as mv:
            for definition in definitions:
                assert mv.create(definition.name).status == "success"
                with psycopg.connect(dsn, autocommit=True) as conn:  # the bare swap's stable index name
                    conn.execute(
                        sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                            sql.Identifier(_unique_index(conn, definition.qualified.name)),
                            sql.Identifier(f"{definition.qualified.name}_id_key"),
                        )
                    )
            for definition in definitions:
                strategy = definition.refresh_strategy
                bare = bare_refresh(dsn, definition)

                def ours(name: str = definition.name) -> None:
                    result = mv.refresh(name)
                    if result.status != "success":
                        raise RuntimeError(f"refresh of {name} failed: {result.error}")

                samples = interleaved({"bare": bare, "matviews": ours}, bench.repeats)
                with counting() as bare_trips:
                    bare()
                with counting() as our_trips:
                    ours()
                results.append(
                    {
                        "rows": rows,
                        "strategy": strategy,
                        "bare": samples["bare"],
                        "matviews": samples["matviews"],
                        "ratio": ratio(samples["matviews"], samples["bare"]),
                        "extra_ms": samples["matviews"].median - samples["bare"].median,
                        "bare_trips": str(bare_trips),
                        "our_trips": str(our_trips),
                    }
                )
    return results


def _unique_index(conn: psycopg.Connection, view_name: str) -> str:
    row = conn.execute(
        "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid = %s::regclass AND x.indisunique",
        (view_name,),
    ).fetchone()
    assert row is not None
    return str(row[0])


def run(bench: Bench) -> Section:
    sizes = (1_000, 10_000) if bench.smoke else (1_000, 1_000_000)
    results = [row for rows in sizes for row in _measure_size(bench, rows)]
    markdown = table(
        ["rows", "strategy", "bare psycopg, ms", "matviews refresh, ms", "ratio", "extra ms", "bare sends", "we send"],
        [
            [
                f"{r['rows']:,}",
                r["strategy"],
                r["bare"].cell(),
                r["matviews"].cell(),
                f"{r['ratio']:.3f}",
                f"{r['extra_ms']:+.1f}",
                r["bare_trips"],
                r["our_trips"],
            ]
            for r in results
        ],
    )
    data = [{**r, "bare": r["bare"].as_dict(), "matviews": r["matviews"].as_dict()} for r in results]
    return Section("overhead", "Library overhead", markdown, {"results": data})
