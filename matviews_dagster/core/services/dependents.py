"""The views built on a view (``pg_depend``, at any depth), for a rebuild: locked, captured
with everything they have (``carry_over``), dropped, and recreated on the new copy in the same
transaction, so either all of them come back or nothing changes."""

from __future__ import annotations

import psycopg
from psycopg import sql

from ..names import QualifiedName, derived_name
from .carry_over import KINDS, Relation, capture, restore
from .response import ServiceError, StatementLog, describe_db_error


def built_on(conn: psycopg.Connection, oid: int) -> list[Relation]:
    """Every view and materialized view built on relation ``oid``, at any depth, locked
    (``ACCESS EXCLUSIVE``, so none changes before it is recreated) and captured, in an order
    they can be created in (each after everything it reads)."""
    rows = conn.execute(
        """WITH RECURSIVE built_on(oid, depth) AS (
               SELECT r.ev_class, 1 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
               WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
                 AND d.refobjid = %(oid)s AND r.ev_class <> %(oid)s
               UNION
               SELECT r.ev_class, b.depth + 1 FROM built_on b
               JOIN pg_depend d ON d.refobjid = b.oid AND d.classid = 'pg_rewrite'::regclass
                               AND d.refclassid = 'pg_class'::regclass
               JOIN pg_rewrite r ON r.oid = d.objid
               WHERE r.ev_class <> b.oid AND b.depth < 100
           )
           SELECT b.oid, n.nspname, c.relname, c.relkind, pg_get_userbyid(c.relowner)
           FROM (SELECT oid, max(depth) AS depth FROM built_on GROUP BY oid) b
           JOIN pg_class c ON c.oid = b.oid JOIN pg_namespace n ON n.oid = c.relnamespace
           ORDER BY b.depth, b.oid""",
        {"oid": oid},
    ).fetchall()
    for _, schema, relname, kind, _ in rows:
        lock_exclusively(conn, QualifiedName(schema, relname), KINDS[kind])
    return [capture(conn, row[0]) for row in rows]


def lock_exclusively(conn: psycopg.Connection, name: QualifiedName, kind: str) -> None:
    """``ACCESS EXCLUSIVE`` on a view (``LOCK TABLE``) or a materialized view, which ``LOCK``
    refuses: renaming it and back in the transaction takes the same lock and changes nothing."""
    if kind == "view":
        conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(name.identifier))
        return
    aside = name.sibling(derived_name(name.name, "mvlock"))
    rename = sql.SQL("ALTER MATERIALIZED VIEW {} RENAME TO {}")
    conn.execute(rename.format(name.identifier, sql.Identifier(aside.name)))
    conn.execute(rename.format(aside.identifier, sql.Identifier(name.name)))


def drop(log: StatementLog, relation: Relation) -> None:
    """``DROP [MATERIALIZED] VIEW ... RESTRICT``: refuses if something unexpected still uses it."""
    kind = sql.SQL("MATERIALIZED VIEW" if relation.kind == "materialized view" else "VIEW")
    log.execute(sql.SQL("DROP {} {} RESTRICT").format(kind, relation.name.identifier))


def recreate(conn: psycopg.Connection, log: StatementLog, relation: Relation) -> None:
    """Create a captured dependent again, with everything it had; a failure names it."""
    materialized = relation.kind == "materialized view"
    options = sql.SQL(" WITH ({})").format(sql.SQL(", ").join(map(sql.SQL, relation.options)))
    statement = sql.SQL("CREATE {kind} {name}{options} AS\n{query}{data}").format(
        kind=sql.SQL("MATERIALIZED VIEW" if materialized else "VIEW"),
        name=relation.name.identifier,
        options=options if relation.options else sql.SQL(""),
        query=sql.SQL(relation.query),  # type: ignore[arg-type]  # the catalog's own text
        data=sql.SQL(" WITH DATA" if relation.populated else " WITH NO DATA") if materialized else sql.SQL(""),
    )
    try:
        with conn.transaction():
            log.execute(statement)
            restore(conn, log, relation, relation.name, columns=None)
            for text in (*relation.indexes, *relation.extras):
                log.execute(sql.SQL(text))  # type: ignore[arg-type]
    except psycopg.Error as exc:
        raise ServiceError(
            f"{relation} is built on the view and could not be recreated on its new version: "
            f"{describe_db_error(exc)}; nothing was changed",
            hint=f"change {relation.name} so it no longer needs what the new query removes, or drop it first "
            "(delete with cascade=True drops a view with everything built on it), then apply again",
            dependent=str(relation.name),
        ) from None
