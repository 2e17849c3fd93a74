"""The views built on a view (``pg_depend``, at any depth), for a rebuild: locked, captured
with everything they have (``carry_over``), dropped, and recreated on the new copy in the same
transaction, so either all of them come back or nothing changes.

Locks are taken outermost first and the rebuilt view last, the order in which a reader of a
dependent view locks them, so a rebuild waits for readers instead of deadlocking with them.
A recreated materialized view is created empty, given its owner, then refreshed: its query
runs as its owner (``REFRESH`` runs in a restricted security context), never with the
rebuilding role's rights. A dependent that is itself a defined view is recreated from its
definition, so a change to a view and to a view built on it apply together.
"""

from __future__ import annotations

from collections.abc import Mapping

import psycopg
from psycopg import sql

from ..definition import MatViewDefinition
from ..names import QualifiedName, derived_name
from .binding import bind_search_path
from .carry_over import KINDS, Relation, capture, restore
from .response import ServiceError, describe_db_error
from .statement_log import StatementLog

_BUILT_ON = """
    WITH RECURSIVE built_on(oid, depth) AS (
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
    SELECT b.oid, n.nspname, c.relname, c.relkind, n.nspname LIKE 'pg\\_temp\\_%%'
    FROM (SELECT oid, max(depth) AS depth FROM built_on GROUP BY oid) b
    JOIN pg_class c ON c.oid = b.oid JOIN pg_namespace n ON n.oid = c.relnamespace
    ORDER BY b.depth, b.oid
"""


class DependentsChanged(psycopg.errors.LockNotAvailable):
    """A view was built on the rebuilt one while its dependents were being locked: retried."""


def lock_and_capture(conn: psycopg.Connection, name: QualifiedName, oid: int) -> list[Relation]:
    """Lock the views built on view ``oid`` (outermost first) and then the view itself, and
    capture them in an order they can be created in. Raises ``ServiceError`` for a temporary
    view of another session (it cannot be recreated here)."""
    rows = conn.execute(_BUILT_ON, {"oid": oid}).fetchall()
    temporary = [f"{schema}.{relname}" for _, schema, relname, _, temp in rows if temp]
    if temporary:
        raise ServiceError(
            f"cannot rebuild {name}: a temporary view of another session is built on it ({', '.join(temporary)}) "
            "and cannot be recreated from here; nothing was changed",
            hint="retry once that session has ended (or has dropped its temporary view)",
        )
    for _, schema, relname, kind, _ in reversed(rows):
        lock_exclusively(conn, QualifiedName(schema, relname), KINDS[kind])
    lock_exclusively(conn, name, "materialized view")
    if [row[0] for row in conn.execute(_BUILT_ON, {"oid": oid}).fetchall()] != [row[0] for row in rows]:
        raise DependentsChanged(f"the views built on {name} changed while they were locked")
    return [capture(conn, row[0]) for row in rows]


def lock_exclusively(conn: psycopg.Connection, name: QualifiedName, kind: str) -> None:
    """``ACCESS EXCLUSIVE`` on a view or materialized view, and on it alone: renaming it and back
    in the transaction takes that lock and changes nothing. (``LOCK TABLE`` refuses a
    materialized view, and on a plain view it also locks every table the view reads, checked
    against the view owner's privileges: readers of those tables would queue behind it.)"""
    try:
        aside = name.sibling(derived_name(name.name, "mvlock"))
        keyword = sql.SQL("VIEW" if kind == "view" else "MATERIALIZED VIEW")
        rename = sql.SQL("ALTER {} {} RENAME TO {}")
        conn.execute(rename.format(keyword, name.identifier, sql.Identifier(aside.name)))
        conn.execute(rename.format(keyword, aside.identifier, sql.Identifier(name.name)))
    except psycopg.errors.InsufficientPrivilege as exc:
        raise _not_allowed(name, kind, exc) from None


def drop(log: StatementLog, relation: Relation) -> None:
    """``DROP [MATERIALIZED] VIEW ... RESTRICT``: refuses if something unexpected still uses it."""
    log.execute(sql.SQL("DROP {} {} RESTRICT").format(relation.keyword, relation.name.identifier))


def recreate(
    conn: psycopg.Connection, log: StatementLog, relation: Relation, definitions: Mapping[str, MatViewDefinition]
) -> list[str]:
    """Create a captured dependent again, with everything it had (from its definition when it
    is one of ``definitions``: a grant, comment or index on a column its new query lacks is
    left out and named in the returned warnings); a failure names it, why, and the way out."""
    definition = definitions.get(str(relation.name))
    query = sql.SQL(definition.sql if definition else relation.query)  # type: ignore[arg-type]
    options = sql.SQL(" WITH ({})").format(sql.SQL(", ").join(map(sql.SQL, relation.options)))
    tablespace = sql.SQL(" TABLESPACE {}").format(sql.Identifier(relation.tablespace or ""))
    statement = sql.SQL("CREATE {kind} {name}{options}{tablespace} AS\n{query}{data}").format(
        kind=relation.keyword,
        name=relation.name.identifier,
        options=options if relation.options else sql.SQL(""),
        tablespace=tablespace if relation.tablespace and relation.materialized else sql.SQL(""),
        query=query,
        data=sql.SQL("\nWITH NO DATA") if relation.materialized else sql.SQL(""),
    )
    try:
        with conn.transaction():
            if definition is not None:
                bind_search_path(conn, definition)
            log.execute(statement)
            columns = {r[0] for r in conn.execute(_COLUMNS, (relation.name.identifier.as_string(conn),))}
            warnings = restore(conn, log, relation, relation.name, columns=columns)
            for index in relation.indexes:
                try:
                    with conn.transaction():
                        index.build(log, index.name, relation.name)
                except psycopg.errors.UndefinedColumn as exc:
                    if definition is None:
                        raise
                    warnings.append(f"index {index.name} of {relation.name} not recreated: {describe_db_error(exc)}")
            if relation.clustered_on:
                cluster = sql.SQL("ALTER {} {} CLUSTER ON {}")
                log.execute(
                    cluster.format(relation.keyword, relation.name.identifier, sql.Identifier(relation.clustered_on))
                )
            for text in (*relation.extras, *(definition for _, definition in relation.statistics)):
                log.execute(sql.SQL(text))  # type: ignore[arg-type]  # the catalog's own text
            if relation.materialized and relation.populated:  # as its owner, not as this role
                log.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(relation.name.identifier))
        return warnings
    except psycopg.errors.InsufficientPrivilege as exc:
        raise _not_allowed(relation.name, relation.kind, exc) from None
    except psycopg.Error as exc:
        missing = isinstance(exc, psycopg.errors.UndefinedColumn | psycopg.errors.UndefinedTable)
        raise ServiceError(
            f"{relation} is built on the view and could not be recreated on its new version: "
            f"{describe_db_error(exc)}; nothing was changed",
            hint=(
                f"change {relation.name} so it no longer uses what the new query removes, or add it to the "
                "definitions, changed, and apply both together; as a last resort delete with cascade=True drops it "
                "(and its grants) with the view"
                if missing
                else f"fix what the error names in {relation.name}, then try again"
            ),
            dependent=str(relation.name),
        ) from None


_COLUMNS = "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"


def _not_allowed(name: QualifiedName, kind: str, exc: psycopg.Error) -> ServiceError:
    return ServiceError(
        f"a rebuild drops and recreates the views built on the view, and the role may not do that to {name} "
        f"({kind}): {describe_db_error(exc)}; nothing was changed",
        hint=f"run it as a role that owns {name} (or is a member of its owner role) and may create in schema "
        f"{name.schema}, or a superuser",
        dependent=str(name),
    )
