"""Row counts after a refresh: ``estimated`` (catalog), ``exact`` (count) or ``none``."""

from __future__ import annotations

import psycopg
from psycopg import sql

from ..catalog import reltuples
from ..names import QualifiedName


def count_rows(
    conn: psycopg.Connection,
    name: QualifiedName,
    oid: int,
    strategy: str,
    *,
    known_exact: int | None = None,
) -> int | None:
    """The view's row count by ``strategy``; ``known_exact`` (from a ``CREATE ... AS``) is free.

    ``estimated`` reads ``pg_class.reltuples`` and runs ``ANALYZE`` first when Postgres does not
    know it (``-1``, as after a refresh of a view without indexes), so it is never ``-1``.
    """
    if strategy == "none":
        return None
    if known_exact is not None:
        return known_exact
    if strategy == "exact":
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(name.identifier)).fetchone()
        assert row is not None
        return int(row[0])
    estimate = reltuples(conn, oid)
    if estimate < 0:
        conn.execute(sql.SQL("ANALYZE {}").format(name.identifier))
        estimate = reltuples(conn, oid)
    return max(round(estimate), 0)
