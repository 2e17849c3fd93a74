"""What a rebuild keeps of a relation, read from the catalog (``capture``) and given to its new
copy (``restore``): owner, grants (table and column, each by its grantor), comments, storage
options, tablespace, column statistics targets and storage modes, indexes (with their
comments and tablespaces, and which one it is clustered on), and the objects that hang on it:
triggers, rules, column defaults and statistics objects.

Definitions are read with ``search_path`` set to ``pg_catalog`` (local to the transaction),
so every name in them is schema-qualified and they mean the same under any path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from ..names import QualifiedName
from .grants import Grant, grants_of, restore_grants
from .indexes import IndexShape, index_shapes
from .response import ServiceError
from .statement_log import StatementLog

KINDS = {"v": "view", "m": "materialized view"}
_STORAGE = {"p": "PLAIN", "e": "EXTERNAL", "x": "EXTENDED", "m": "MAIN"}


@dataclass(frozen=True)
class Relation:
    """One view or materialized view as the catalog holds it, enough to recreate it."""

    oid: int
    name: QualifiedName
    kind: str
    owner: str
    populated: bool
    query: str
    options: tuple[str, ...] = ()
    tablespace: str | None = None
    grants: tuple[Grant, ...] = ()
    comment: str | None = None
    column_comments: dict[str, str] = field(default_factory=dict)
    column_settings: tuple[tuple[str, str], ...] = ()  # (column, "SET STATISTICS 500")
    indexes: tuple[IndexShape, ...] = ()
    clustered_on: str | None = None
    extras: tuple[str, ...] = ()  # triggers, rules, column defaults: recreated after the relation
    statistics: tuple[tuple[str, str], ...] = ()  # (qualified name, CREATE STATISTICS ...)

    @property
    def materialized(self) -> bool:
        return self.kind == "materialized view"

    @property
    def keyword(self) -> sql.SQL:
        return sql.SQL("MATERIALIZED VIEW" if self.materialized else "VIEW")

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


@contextmanager
def qualified_names(conn: psycopg.Connection) -> Iterator[None]:
    """``search_path`` is ``pg_catalog`` in the block (inside a transaction), so the catalog's
    ``pg_get_*def`` functions qualify every name; the previous path is restored after."""
    row = conn.execute("SELECT current_setting('search_path'), set_config('search_path', 'pg_catalog', true)")
    previous = row.fetchone()
    assert previous is not None
    try:
        yield
    finally:
        if not conn.broken and conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
            conn.execute("SELECT set_config('search_path', %s, true)", (previous[0],))


def capture(conn: psycopg.Connection, oid: int) -> Relation:
    """Read relation ``oid``; raises ``ServiceError`` naming anything built on it that a
    rebuild could not carry over (a function whose SQL body reads it or returns its rows, a
    table column of its row type, ...)."""
    with qualified_names(conn):
        row = conn.execute(_RELATION, (oid,)).fetchone()
        assert row is not None
        schema, relname, kind, owner, populated, query, options, tablespace, comment = row
        name = QualifiedName(schema, relname)
        found = [r[0] for r in conn.execute(_UNCARRIABLE, {"oid": oid}).fetchall()]
        if found:
            raise ServiceError(
                f"cannot rebuild {name}: {', '.join(found)} depends on it, and a rebuild cannot carry that over; "
                "nothing was changed",
                hint="drop that object, apply the change, then create it again",
                blockers=found,
            )
        columns = conn.execute(_COLUMNS, (oid,)).fetchall()
        settings = []
        for column, target, storage, type_storage, _ in columns:
            if target is not None and target >= 0:
                settings.append((column, f"SET STATISTICS {int(target)}"))
            if storage != type_storage:
                settings.append((column, f"SET STORAGE {_STORAGE[storage]}"))
        clustered = conn.execute(_CLUSTERED, (oid,)).fetchone()
        return Relation(
            oid=oid,
            name=name,
            kind=KINDS[kind],
            owner=owner,
            populated=populated,
            query=str(query).strip().rstrip(";"),
            options=tuple(options),
            tablespace=tablespace,
            grants=tuple(grants_of(conn, oid)),
            comment=comment,
            column_comments={column: text for column, *_, text in columns if text is not None},
            column_settings=tuple(settings),
            indexes=tuple(index_shapes(conn, oid)),
            clustered_on=clustered[0] if clustered else None,
            extras=tuple(r[0] for r in conn.execute(_EXTRAS, {"oid": oid}).fetchall()),
            statistics=tuple(conn.execute(_STATISTICS, (oid,)).fetchall()),
        )


_RELATION = """
    SELECT n.nspname, c.relname, c.relkind, pg_get_userbyid(c.relowner), c.relispopulated, pg_get_viewdef(c.oid),
           coalesce(c.reloptions, '{}'), (SELECT spcname FROM pg_tablespace WHERE oid = c.reltablespace),
           obj_description(c.oid, 'pg_class')
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %s
"""
_COLUMNS = """
    SELECT a.attname, a.attstattarget, a.attstorage, t.typstorage, col_description(a.attrelid, a.attnum)
    FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
    WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
"""
_CLUSTERED = """
    SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s AND i.indisclustered
"""
_EXTRAS = """
    SELECT pg_get_triggerdef(oid) || ';' FROM pg_trigger WHERE tgrelid = %(oid)s AND NOT tgisinternal
    UNION ALL
    SELECT pg_get_ruledef(oid) FROM pg_rewrite WHERE ev_class = %(oid)s AND rulename <> '_RETURN'
    UNION ALL
    SELECT format('ALTER VIEW %%s ALTER COLUMN %%I SET DEFAULT %%s;', d.adrelid::regclass, a.attname,
                  pg_get_expr(d.adbin, d.adrelid))
    FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
    WHERE d.adrelid = %(oid)s
"""
_STATISTICS = """
    SELECT format('%%I.%%I', n.nspname, s.stxname), pg_get_statisticsobjdef(s.oid) || ';'
    FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace WHERE s.stxrelid = %s ORDER BY 1
"""
# What depends on the relation or its row type that a rebuild cannot carry over: everything but
# the views built on it (recreated), its indexes, toast table, triggers, rules, defaults and
# statistics objects (carried over) and its own row type.
_UNCARRIABLE = """
    SELECT DISTINCT pg_describe_object(d.classid, d.objid, d.objsubid)
    FROM pg_class c
    JOIN pg_depend d ON d.deptype IN ('n', 'a') AND (
        (d.refclassid = 'pg_class'::regclass AND d.refobjid = c.oid)
        OR (d.refclassid = 'pg_type'::regclass
            AND d.refobjid IN (c.reltype, (SELECT typarray FROM pg_type WHERE oid = c.reltype))))
    WHERE c.oid = %(oid)s
      AND d.classid NOT IN ('pg_rewrite'::regclass, 'pg_trigger'::regclass, 'pg_attrdef'::regclass,
                            'pg_statistic_ext'::regclass)
      AND NOT (d.classid = 'pg_type'::regclass
               AND d.objid IN (c.reltype, (SELECT typarray FROM pg_type WHERE oid = c.reltype)))
      AND NOT (d.classid = 'pg_class'::regclass
               AND (SELECT relkind FROM pg_class WHERE oid = d.objid) IN ('i', 'I', 't'))
    ORDER BY 1
"""


def restore(
    conn: psycopg.Connection,
    log: StatementLog,
    relation: Relation,
    target: QualifiedName,
    *,
    columns: set[str] | None,
    options: bool = False,
) -> list[str]:
    """Give ``target`` the owner, grants, comments and column settings ``relation`` had (and
    its storage options with ``options``; a recreated dependent gets them at ``CREATE``).
    ``columns``: the columns ``target`` has (None: all the captured ones); a grant, comment or
    setting on a column it no longer has is not restored, and warnings name it."""
    quoted = target.identifier.as_string(conn)
    found = conn.execute("SELECT oid, pg_get_userbyid(relowner) FROM pg_class WHERE oid = %s::regclass", (quoted,))
    oid_row = found.fetchone()
    assert oid_row is not None
    oid, owner = oid_row
    if owner != relation.owner:
        alter = sql.SQL("ALTER {} {} OWNER TO {}")
        log.execute(alter.format(relation.keyword, target.identifier, sql.Identifier(relation.owner)))
    if options and relation.options:
        log.execute(
            sql.SQL("ALTER {} {} SET ({})").format(
                relation.keyword, target.identifier, sql.SQL(", ").join(map(sql.SQL, relation.options))
            )
        )
    warnings = restore_grants(conn, log, relation.grants, relation.owner, target, oid, columns)
    if relation.comment is not None:
        log.execute(
            sql.SQL("COMMENT ON {} {} IS {}").format(relation.keyword, target.identifier, sql.Literal(relation.comment))
        )
    gone = set() if columns is None else set(relation.column_comments) - columns
    warnings += [f"comment on column {column} not kept: no column {column} in the new query" for column in sorted(gone)]
    for column, text in relation.column_comments.items():
        if column not in gone:
            log.execute(sql.SQL("COMMENT ON COLUMN {} IS {}").format(_column(target, column), sql.Literal(text)))
    for column, setting in relation.column_settings:
        if columns is None or column in columns:
            log.execute(
                sql.SQL("ALTER {} {} ALTER COLUMN {} {}").format(
                    relation.keyword,
                    target.identifier,
                    sql.Identifier(column),
                    sql.SQL(setting),  # type: ignore[arg-type]
                )
            )
    return warnings


def set_comments(log: StatementLog, target: QualifiedName, description: str | None, columns: dict[str, str]) -> None:
    """The comments a definition sets (``description``, ``column_descriptions``); comments it
    does not set are left as they are."""
    if description is not None:
        log.execute(
            sql.SQL("COMMENT ON MATERIALIZED VIEW {} IS {}").format(target.identifier, sql.Literal(description))
        )
    for column, text in columns.items():
        log.execute(sql.SQL("COMMENT ON COLUMN {} IS {}").format(_column(target, column), sql.Literal(text)))


def _column(target: QualifiedName, column: str) -> sql.Identifier:
    return sql.Identifier(target.schema, target.name, column)
