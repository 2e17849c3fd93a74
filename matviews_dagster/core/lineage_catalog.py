"""What column lineage reads from the catalog, in one query: the columns of the relations
views name, and through plain views (``pg_rewrite`` / ``pg_depend``) the relations they read,
at any depth; every name travels as a bound parameter."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import psycopg

from .lineage import LineageReader
from .lineage_sql import RelationColumns
from .names import QualifiedName

if TYPE_CHECKING:
    from .graph import ViewGraph


_RELATION_COLUMNS = """
WITH RECURSIVE wanted(oid) AS (
    SELECT c.oid
    FROM unnest(%(schemas)s::text[], %(names)s::text[]) AS w(nspname, relname)
    JOIN pg_namespace n ON n.nspname = w.nspname
    JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.relname
  UNION
    SELECT d.refobjid
    FROM wanted w
    JOIN pg_class v ON v.oid = w.oid AND v.relkind = 'v'
    JOIN pg_rewrite r ON r.ev_class = v.oid
    JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
        AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> v.oid
)
SELECT n.nspname, c.relname, c.relkind::text,
       ARRAY(SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
       CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END,
       CASE WHEN c.relkind IN ('v', 'm') THEN ARRAY(
           SELECT DISTINCT rn.nspname || '.' || rc.relname
           FROM pg_rewrite r
           JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
               AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> c.oid
           JOIN pg_class rc ON rc.oid = d.refobjid
           JOIN pg_namespace rn ON rn.oid = rc.relnamespace
           WHERE r.ev_class = c.oid) END
FROM (SELECT DISTINCT oid FROM wanted) w
JOIN pg_class c ON c.oid = w.oid
JOIN pg_namespace n ON n.oid = c.relnamespace
"""


def relation_columns(conn: psycopg.Connection, names: Iterable[QualifiedName]) -> dict[QualifiedName, RelationColumns]:
    """The columns, in order, of ``names`` and of every relation the plain views among them read
    (at any depth), with each plain or materialized view's query and the relations it reads:
    what column lineage needs, in one query. Relations that do not exist are left out. The
    queries are read with an empty search path, so ``pg_get_viewdef`` qualifies every name
    (with ``public`` on the path, ``other.t`` and ``public.t`` would both print as ``t``)."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    with conn.transaction():
        conn.execute("SELECT set_config('search_path', '', true)")
        rows = conn.execute(
            _RELATION_COLUMNS, {"schemas": [n.schema for n in wanted], "names": [n.name for n in wanted]}
        ).fetchall()
    found = {}
    for schema, name, kind, columns, query, reads in rows:
        relation = QualifiedName(schema, name)
        found[relation] = RelationColumns(
            relation,
            tuple(columns),
            query if kind == "v" else None,
            tuple(QualifiedName(*r.split(".", 1)) for r in reads or ()),
            query if kind == "m" else None,
        )
    return found


def read_lineage(
    conn: psycopg.Connection, graph: ViewGraph, names: Sequence[str], also: Iterable[QualifiedName] = ()
) -> LineageReader:
    """A ``LineageReader`` for the views ``names`` of ``graph``: the catalog read once, for the
    views, the relations their queries name (and ``also``) and what the plain views read."""
    wanted = LineageReader.relations_to_read(graph, names) | set(also)
    return LineageReader(graph, relation_columns(conn, wanted))
