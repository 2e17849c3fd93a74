"""What a rebuild keeps of a relation: its owner, grants (table and column), comments,
options, indexes, triggers, rules, column defaults and statistics objects, read from the
catalog (``capture``) and given to its new copy (``restore``).

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
from .response import ServiceError, StatementLog

KINDS = {"v": "view", "m": "materialized view"}
_PRIVILEGES = {"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "MAINTAIN"}


@dataclass(frozen=True)
class Grant:
    """One privilege: ``column`` None for the whole relation; grantee ``PUBLIC`` for public."""

    grantee: str
    privilege: str
    grantable: bool
    column: str | None = None


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
    grants: tuple[Grant, ...] = ()
    comment: str | None = None
    column_comments: dict[str, str] = field(default_factory=dict)
    indexes: tuple[str, ...] = ()
    extras: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


def capture(conn: psycopg.Connection, oid: int) -> Relation:
    """Read relation ``oid``; raises ``ServiceError`` naming anything built on it that a
    rebuild could not carry over (e.g. a function whose SQL body reads it)."""
    with qualified_names(conn):
        return _capture(conn, oid)


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


def _capture(conn: psycopg.Connection, oid: int) -> Relation:
    row = conn.execute(
        """SELECT n.nspname, c.relname, c.relkind, pg_get_userbyid(c.relowner), c.relispopulated,
                  pg_get_viewdef(c.oid), coalesce(c.reloptions, '{}'), obj_description(c.oid, 'pg_class')
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %s""",
        (oid,),
    ).fetchone()
    assert row is not None
    schema, relname, kind, owner, populated, query, options, comment = row
    name = QualifiedName(schema, relname)
    _refuse_uncarriable(conn, oid, name)
    grants = [
        Grant(grantee, privilege, grantable, column)
        for column, grantee, privilege, grantable in conn.execute(
            """SELECT NULL::name, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END,
                      a.privilege_type, a.is_grantable
               FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a WHERE c.oid = %(oid)s
               UNION ALL
               SELECT t.attname, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END,
                      a.privilege_type, a.is_grantable
               FROM pg_attribute t, aclexplode(t.attacl) a
               WHERE t.attrelid = %(oid)s AND t.attnum > 0 AND NOT t.attisdropped AND t.attacl IS NOT NULL
               ORDER BY 1 NULLS FIRST, 2, 3""",
            {"oid": oid},
        ).fetchall()
    ]
    column_comments = dict(
        conn.execute(
            """SELECT attname, col_description(attrelid, attnum) FROM pg_attribute
               WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped
                 AND col_description(attrelid, attnum) IS NOT NULL ORDER BY attnum""",
            (oid,),
        ).fetchall()
    )
    indexes = [r[0] for r in conn.execute(_INDEXES, (oid,)).fetchall()]
    extras = [r[0] for r in conn.execute(_EXTRAS, {"oid": oid}).fetchall()]
    return Relation(
        oid=oid,
        name=name,
        kind=KINDS[kind],
        owner=owner,
        populated=populated,
        query=str(query).strip().rstrip(";"),
        options=tuple(options),
        grants=tuple(grants),
        comment=comment,
        column_comments=column_comments,
        indexes=tuple(indexes),
        extras=tuple(extras),
    )


_INDEXES = """SELECT pg_get_indexdef(i.indexrelid) || ';' FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
              WHERE i.indrelid = %s ORDER BY c.relname"""

_EXTRAS = """
    SELECT pg_get_triggerdef(oid) || ';' FROM pg_trigger WHERE tgrelid = %(oid)s AND NOT tgisinternal
    UNION ALL
    SELECT pg_get_ruledef(oid) FROM pg_rewrite WHERE ev_class = %(oid)s AND rulename <> '_RETURN'
    UNION ALL
    SELECT format('ALTER VIEW %%s ALTER COLUMN %%I SET DEFAULT %%s;', d.adrelid::regclass, a.attname,
                  pg_get_expr(d.adbin, d.adrelid))
    FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
    WHERE d.adrelid = %(oid)s
    UNION ALL
    SELECT pg_get_statisticsobjdef(oid) || ';' FROM pg_statistic_ext WHERE stxrelid = %(oid)s
"""

_UNCARRIABLE = """
    SELECT DISTINCT pg_describe_object(d.classid, d.objid, d.objsubid)
    FROM pg_depend d
    WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = %s AND d.deptype IN ('n', 'a')
      AND d.classid NOT IN ('pg_rewrite'::regclass, 'pg_trigger'::regclass, 'pg_attrdef'::regclass,
                            'pg_statistic_ext'::regclass, 'pg_type'::regclass)
      AND NOT (d.classid = 'pg_class'::regclass
               AND (SELECT relkind FROM pg_class WHERE oid = d.objid) IN ('i', 'I', 't'))
    ORDER BY 1
"""


def _refuse_uncarriable(conn: psycopg.Connection, oid: int, name: QualifiedName) -> None:
    found = [r[0] for r in conn.execute(_UNCARRIABLE, (oid,)).fetchall()]
    if found:
        raise ServiceError(
            f"cannot rebuild {name}: {', '.join(found)} depends on it, and a rebuild cannot carry that over; "
            "nothing was changed",
            hint="drop it, apply the change, then create it again",
            blockers=found,
        )


def restore(
    conn: psycopg.Connection, log: StatementLog, relation: Relation, target: QualifiedName, *, columns: set[str] | None
) -> list[str]:
    """Give ``target`` the owner, grants and comments ``relation`` had. ``columns``: the
    columns ``target`` has (None: all of the captured ones); a column grant or comment on a
    column it no longer has is not restored and is named in the returned warnings."""
    warnings: list[str] = []
    kind = sql.SQL("MATERIALIZED VIEW" if relation.kind == "materialized view" else "VIEW")
    quoted = target.identifier.as_string(conn)
    owner = conn.execute("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = %s::regclass", (quoted,))
    if owner.fetchone() != (relation.owner,):
        log.execute(sql.SQL("ALTER {} {} OWNER TO {}").format(kind, target.identifier, sql.Identifier(relation.owner)))
    present = conn.execute(
        """SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END
           FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
           WHERE c.oid = %s::regclass ORDER BY 1""",
        (quoted,),
    ).fetchall()
    for (role,) in present:
        log.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(target.identifier, _grantee(role)))
    grouped: dict[tuple[str, bool, str | None], list[str]] = {}
    for grant in relation.grants:
        if grant.privilege not in _PRIVILEGES:
            continue
        if grant.column is not None and columns is not None and grant.column not in columns:
            warnings.append(
                f"{grant.privilege} ({grant.column}) for {grant.grantee} not kept: no column {grant.column}"
            )
            continue
        grouped.setdefault((grant.grantee, grant.grantable, grant.column), []).append(grant.privilege)
    for (role, grantable, column), privileges in sorted(grouped.items(), key=lambda item: str(item[0])):
        on = sql.SQL(", ").join(
            sql.SQL("{} ({})").format(sql.SQL(p), sql.Identifier(column)) if column else sql.SQL(p) for p in privileges
        )
        log.execute(
            sql.SQL("GRANT {} ON {} TO {}{}").format(
                on, target.identifier, _grantee(role), sql.SQL(" WITH GRANT OPTION") if grantable else sql.SQL("")
            )
        )
    if relation.comment is not None:
        log.execute(sql.SQL("COMMENT ON {} {} IS {}").format(kind, target.identifier, sql.Literal(relation.comment)))
    for column, text in relation.column_comments.items():
        if columns is not None and column not in columns:
            warnings.append(f"comment on column {column} not kept: no column {column} in the new query")
            continue
        log.execute(
            sql.SQL("COMMENT ON COLUMN {} IS {}").format(
                sql.Identifier(target.schema, target.name, column), sql.Literal(text)
            )
        )
    return warnings


def _grantee(role: str) -> sql.Composable:
    return sql.SQL("PUBLIC") if role == "PUBLIC" else sql.Identifier(role)


def set_comments(log: StatementLog, target: QualifiedName, description: str | None, columns: dict[str, str]) -> None:
    """The comments a definition sets (``description``, ``column_descriptions``); comments it
    does not set are left as they are."""
    if description is not None:
        log.execute(
            sql.SQL("COMMENT ON MATERIALIZED VIEW {} IS {}").format(target.identifier, sql.Literal(description))
        )
    for column, text in columns.items():
        log.execute(
            sql.SQL("COMMENT ON COLUMN {} IS {}").format(
                sql.Identifier(target.schema, target.name, column), sql.Literal(text)
            )
        )
