"""The definition's query inside larger statements, bound the way the dependency graph says.

Every statement that makes Postgres bind the query's names (creating the view, a swap's
new copy, the drift probe, ``validate``) runs with the view's ``resolution_path`` first in
``search_path``, so the order, the lineage and what Postgres binds agree whatever the DSN or
the role sets. The query text is the statement as PostgreSQL's lexer delimits it (see
``statement_text``), and appended clauses start on a new line.
"""

from __future__ import annotations

from collections.abc import Collection

import psycopg
from psycopg import sql

from ..catalog import schema_exists
from ..definition import MatViewDefinition
from ..names import QualifiedName
from .response import ServiceError, describe_db_error


def bind_search_path(conn: psycopg.Connection, definition: MatViewDefinition) -> None:
    """Put the view's resolution path first in ``search_path`` for the current transaction
    (the session's own path follows, so functions and extensions still resolve)."""
    path = ", ".join(sql.Identifier(schema).as_string(conn) for schema in definition.resolution_path)
    conn.execute(
        "SELECT set_config('search_path', concat_ws(', ', %s::text, nullif(current_setting('search_path'), '')), true)",
        (path,),
    )


def create_statement(target: QualifiedName, definition: MatViewDefinition, *, data: bool = True) -> sql.Composed:
    """``CREATE MATERIALIZED VIEW target AS <query> WITH [NO] DATA``."""
    return sql.SQL("CREATE MATERIALIZED VIEW {} AS {}\nWITH {}DATA").format(
        target.identifier, sql.SQL(definition.sql), sql.SQL("" if data else "NO ")
    )


def query_statement(definition: MatViewDefinition, select: str = "*") -> sql.Composed:
    """``SELECT <select> FROM (<query>) q``, e.g. ``count(*)``."""
    return sql.SQL("SELECT {} FROM (\n{}\n) q").format(sql.SQL(select), sql.SQL(definition.sql))


def bound_relations(conn: psycopg.Connection, oid: int) -> set[QualifiedName]:
    """The relations Postgres bound the view's query to (its rewrite rule's dependencies)."""
    rows = conn.execute(
        """SELECT DISTINCT n.nspname, c.relname
           FROM pg_rewrite r
           JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                           AND d.refclassid = 'pg_class'::regclass
           JOIN pg_class c ON c.oid = d.refobjid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE r.ev_class = %s AND d.refobjid <> %s""",
        (oid, oid),
    ).fetchall()
    return {QualifiedName(row[0], row[1]) for row in rows}


def binding_warnings(
    definition: MatViewDefinition, bound: set[QualifiedName], expected: Collection[QualifiedName] | None
) -> list[str]:
    """Where Postgres bound a name elsewhere than the dependency graph assumed (an unqualified
    table in another schema than the first of the search path): the lineage is wrong there."""
    if expected is None:
        return []
    warnings = []
    for assumed in sorted(set(expected) - bound):
        actual = sorted(str(r) for r in bound if r.name == assumed.name)
        if actual:
            warnings.append(
                f"the dependency graph assumes {definition.name} reads {assumed}, but Postgres bound "
                f"{', '.join(actual)}: qualify the name in its SQL ({actual[0]}) or set search_path"
            )
    return warnings


def does_not_compile(definition: MatViewDefinition, exc: psycopg.Error) -> ServiceError:
    """The one wording, in ``plan``, ``create`` and ``apply``, of a definition whose query
    PostgreSQL refuses before running it (SQLSTATE class 42: syntax, names, types)."""
    return ServiceError(
        f"the definition of {definition.name} does not compile: {describe_db_error(exc)}",
        hint=f"fix the sql of {definition.name}",
    )


def refused_at_compile_time(exc: psycopg.Error) -> bool:
    """A class-42 error (not a missing privilege): the statement was refused as written."""
    state = exc.diag.sqlstate or ""
    return state.startswith("42") and state != "42501"


def check_schema(conn: psycopg.Connection, definition: MatViewDefinition) -> None:
    """The view's schema must exist before it can be created in it."""
    if not schema_exists(conn, definition.qualified.schema):
        schema = sql.Identifier(definition.qualified.schema).as_string(conn)
        raise ServiceError(
            f"cannot create {definition.name}: schema {definition.qualified.schema} does not exist",
            hint=f"create it first (CREATE SCHEMA {schema}), or fix the view's name",
        )
