"""Catalog queries about materialized views; every name travels as a bound parameter."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from .names import QualifiedName


@dataclass(frozen=True)
class MatViewState:
    """What the catalog says about one materialized view."""

    oid: int
    populated: bool
    owner: str
    reltuples: float
    owned: bool = False
    """The connecting role is the owner or a member of its role (a superuser is): it may do
    what only the owner may, e.g. ``ALTER``; a role with ``MAINTAIN`` alone may only refresh."""


@dataclass(frozen=True)
class IndexInfo:
    name: str
    definition: str


class NotAMaterializedView(ValueError):
    """A relation with the view's name exists but is something else."""


_KINDS = {
    "r": "table",
    "v": "view",
    "p": "partitioned table",
    "f": "foreign table",
    "S": "sequence",
    "i": "index",
    "I": "partitioned index",
    "c": "composite type",
    "t": "TOAST table",
}


_TYPES = {
    "b": "base type",
    "d": "domain",
    "e": "enum type",
    "r": "range type",
    "m": "multirange type",
    "p": "pseudo-type",
}


def matview_state(conn: psycopg.Connection, name: QualifiedName) -> MatViewState | None:
    """The view's catalog state, ``None`` when absent; raises ``NotAMaterializedView`` naming what
    the name is when a relation of another kind (a table, an index, a sequence, ...) or a type
    (an enum, a domain: a materialized view's row type would take its name) has it: relations
    of every kind and types share one namespace per schema."""
    row = conn.execute(
        """
        SELECT c.oid, c.relkind, c.relispopulated, pg_get_userbyid(c.relowner), c.reltuples,
               pg_has_role(c.relowner, 'MEMBER'), t.typtype
        FROM pg_namespace n
        LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = %(name)s
        LEFT JOIN pg_type t ON t.typnamespace = n.oid AND t.typname = %(name)s AND t.typrelid = 0
        WHERE n.nspname = %(schema)s AND (c.oid IS NOT NULL OR t.oid IS NOT NULL)
        """,
        {"schema": name.schema, "name": name.name},
    ).fetchone()
    if row is None:
        return None
    oid, kind, populated, owner, reltuples, owned, typtype = row
    if kind != "m":
        what = _KINDS.get(kind, "relation") if kind is not None else _TYPES.get(typtype, "type")
        raise NotAMaterializedView(
            f"{name} is {_article(what)}, not a materialized view; pick another name or drop that "
            f"{'relation' if kind is not None else 'type'}"
        )
    return MatViewState(oid=oid, populated=populated, owner=owner, reltuples=float(reltuples), owned=owned)


def schema_exists(conn: psycopg.Connection, schema: str) -> bool:
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)", (schema,)).fetchone()
    return bool(row and row[0])


def _article(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiouAEIOU' else 'a'} {noun}"


_RELKINDS = {"v": "view", "m": "materialized view"}


_BUILT_ON = """
    WITH RECURSIVE built_on(oid) AS (
        SELECT r.ev_class FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
        WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
          AND d.refobjid = %(oid)s AND r.ev_class <> %(oid)s
        UNION
        SELECT r.ev_class FROM built_on b
        JOIN pg_depend d ON d.refobjid = b.oid AND d.classid = 'pg_rewrite'::regclass
                        AND d.refclassid = 'pg_class'::regclass
        JOIN pg_rewrite r ON r.oid = d.objid
        WHERE r.ev_class <> b.oid
    )"""
"""Every view and materialized view built on the relation ``%(oid)s``, at any depth."""


def dependent_relations(conn: psycopg.Connection, oid: int) -> list[tuple[str, str]]:
    """Every view and materialized view built on the relation ``oid``, at any depth, as
    ``(qualified name, kind)``: what ``DROP ... CASCADE`` drops with it."""
    rows = conn.execute(
        _BUILT_ON
        + """
        SELECT n.nspname || '.' || c.relname, c.relkind
        FROM built_on b JOIN pg_class c ON c.oid = b.oid JOIN pg_namespace n ON n.oid = c.relnamespace
        ORDER BY 1""",
        {"oid": oid},
    ).fetchall()
    return [(row[0], _RELKINDS.get(row[1], "relation")) for row in rows]


def dependent_oids(conn: psycopg.Connection, oid: int) -> list[int]:
    """The oids of ``dependent_relations``."""
    return [int(row[0]) for row in conn.execute(_BUILT_ON + " SELECT oid FROM built_on", {"oid": oid})]


def described(relations: list[tuple[str, str]]) -> str:
    """``public.v_pro (view), public.mv_b (materialized view)``."""
    return ", ".join(f"{name} ({kind})" for name, kind in relations)


def column_names(conn: psycopg.Connection, oid: int) -> list[str]:
    rows = conn.execute(
        """SELECT attname FROM pg_attribute
           WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum""",
        (oid,),
    ).fetchall()
    return [row[0] for row in rows]


def indexes(conn: psycopg.Connection, oid: int) -> list[IndexInfo]:
    """Every index of the relation with its ``pg_get_indexdef`` text, by name."""
    rows = conn.execute(
        """SELECT c.relname, pg_get_indexdef(i.indexrelid)
           FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
           WHERE i.indrelid = %s ORDER BY c.relname""",
        (oid,),
    ).fetchall()
    return [IndexInfo(name=row[0], definition=row[1]) for row in rows]


def usable_unique_index(conn: psycopg.Connection, oid: int) -> str | None:
    """Name of an index that ``REFRESH ... CONCURRENTLY`` accepts, as Postgres checks it.

    Unique, immediate, valid, no predicate and only plain key columns (INCLUDE is fine).
    """
    row = conn.execute(
        """SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
           WHERE i.indrelid = %s AND i.indisunique AND i.indimmediate AND i.indisvalid
             AND i.indpred IS NULL AND i.indexprs IS NULL AND i.indnkeyatts > 0
           ORDER BY c.relname LIMIT 1""",
        (oid,),
    ).fetchone()
    return row[0] if row else None


def index_key_columns(conn: psycopg.Connection, table_oid: int, index_name: str) -> list[str]:
    """The key (not INCLUDE) columns of an index, in order."""
    rows = conn.execute(
        """SELECT a.attname
           FROM pg_index i
           JOIN pg_class c ON c.oid = i.indexrelid
           CROSS JOIN LATERAL unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY AS k(attnum, position)
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
           WHERE i.indrelid = %s AND c.relname = %s
           ORDER BY k.position""",
        (table_oid, index_name),
    ).fetchall()
    return [row[0] for row in rows]


def columns_with_nulls(conn: psycopg.Connection, name: QualifiedName, columns: list[str]) -> list[str]:
    """Which of ``columns`` hold a NULL in the relation."""
    found = []
    for column in columns:
        query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {} IS NULL)").format(
            name.identifier, sql.Identifier(column)
        )
        row = conn.execute(query).fetchone()
        if row and row[0]:
            found.append(column)
    return found


def comments(conn: psycopg.Connection, oid: int) -> tuple[str | None, dict[str, str]]:
    """The relation's comment and its column comments by column name."""
    table_comment = conn.execute("SELECT obj_description(%s, 'pg_class')", (oid,)).fetchone()
    rows = conn.execute(
        """SELECT attname, col_description(attrelid, attnum) FROM pg_attribute
           WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped
             AND col_description(attrelid, attnum) IS NOT NULL""",
        (oid,),
    ).fetchall()
    return (table_comment[0] if table_comment else None), {row[0]: row[1] for row in rows}


def reltuples(conn: psycopg.Connection, oid: int) -> float:
    row = conn.execute("SELECT reltuples FROM pg_class WHERE oid = %s", (oid,)).fetchone()
    return float(row[0]) if row else -1.0


def lock_holders(conn: psycopg.Connection, oids: list[int]) -> list[str]:
    """Who holds granted locks on these relations, e.g. ``pid 42 (AccessShareLock, idle in
    transaction for 12s, application 'psql')``; used to name the blocker when a lock times out."""
    rows = conn.execute(
        """SELECT DISTINCT l.pid, l.mode, coalesce(a.state, '?'),
                  coalesce(extract(epoch FROM now() - a.xact_start)::int, 0),
                  coalesce(a.application_name, '')
           FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
           WHERE l.locktype = 'relation' AND l.relation = ANY(%s) AND l.granted
             AND l.pid <> pg_backend_pid()
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
           ORDER BY 1""",
        (oids,),
    ).fetchall()
    return [
        f"pid {pid} ({mode}, {state} for {seconds}s, application {app!r})" for pid, mode, state, seconds, app in rows
    ]


@dataclass(frozen=True)
class ViewDescription:
    """What a materialized view looks like now: for asset metadata, checks and listings."""

    name: QualifiedName
    exists: bool
    populated: bool = False
    columns: tuple[tuple[str, str], ...] = ()
    size_bytes: int | None = None
    rows_estimate: int | None = None


def describe_view(conn: psycopg.Connection, name: QualifiedName) -> ViewDescription:
    """Columns with their types, total size (heap + indexes) and estimated rows."""
    state = matview_state(conn, name)
    if state is None:
        return ViewDescription(name=name, exists=False)
    row = conn.execute(
        """SELECT pg_total_relation_size(%(oid)s),
                  coalesce(array_agg(attname::text ORDER BY attnum), '{}'),
                  coalesce(array_agg(format_type(atttypid, atttypmod) ORDER BY attnum), '{}')
           FROM pg_attribute WHERE attrelid = %(oid)s AND attnum > 0 AND NOT attisdropped""",
        {"oid": state.oid},
    ).fetchone()
    assert row is not None
    size, names, types = row
    return ViewDescription(
        name=name,
        exists=True,
        populated=state.populated,
        columns=tuple(zip(names, types, strict=True)),
        size_bytes=int(size) if size is not None else None,
        rows_estimate=max(round(state.reltuples), 0) if state.reltuples >= 0 else None,
    )


def describe_if_view(conn: psycopg.Connection, name: QualifiedName) -> ViewDescription:
    """``describe_view``, or ``exists`` False when another kind of relation holds the name."""
    try:
        return describe_view(conn, name)
    except NotAMaterializedView:
        return ViewDescription(name=name, exists=False)


def column_types(conn: psycopg.Connection, oid: int) -> list[tuple[str, str]]:
    """A relation's columns in order as ``(name, format_type text)``."""
    rows = conn.execute(
        """SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
           WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum""",
        (oid,),
    ).fetchall()
    return [(name, type_) for name, type_ in rows]
