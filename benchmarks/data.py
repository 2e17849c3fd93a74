"""The benchmark's source tables and views."""

from __future__ import annotations

import psycopg
from psycopg import sql

from matviews_dagster import MatViewDefinition

VIEW_SQL = "SELECT id, grp, val, md5(val::text) AS digest FROM {table}"


def load_source(conn: psycopg.Connection, table: str, rows: int) -> None:
    """``table(id primary key, grp, val)`` with ``rows`` rows, analyzed."""
    name = sql.Identifier(table)
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(name))
    conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, grp int NOT NULL, val bigint NOT NULL)").format(name))
    conn.execute(
        sql.SQL("INSERT INTO {} SELECT g, g %% 1000, g FROM generate_series(1, %s) g").format(name),
        (rows,),
    )
    conn.execute(sql.SQL("VACUUM ANALYZE {}").format(name))


def view(name: str, table: str, strategy: str) -> MatViewDefinition:
    """A view over ``table`` with a unique index on ``id`` (so every strategy applies)."""
    return MatViewDefinition(
        name=name, sql=VIEW_SQL.format(table=table), refresh_strategy=strategy, unique_index_columns=["id"]
    )


def change_rows(conn: psycopg.Connection, table: str, percent: int) -> None:
    """Update ``percent`` % of the rows (by id), then vacuum so every run starts alike."""
    if percent:
        conn.execute(
            sql.SQL("UPDATE {} SET val = val + 1 WHERE id %% 100 < %s").format(sql.Identifier(table)), (percent,)
        )
    conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))
