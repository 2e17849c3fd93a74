"""Does the deployed view still match its definition? The query as Postgres normalizes it, the
declared indexes by shape, and the comments the definition sets.

The query comparison is alembic_utils' method: the definition's SQL is created ``WITH NO
DATA`` under a scratch name in a transaction that is always rolled back, and both texts are
read with ``pg_get_viewdef`` under the same search path, so formatting and qualification agree.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg import sql

from .catalog import NotAMaterializedView, column_types, dependent_relations, matview_state
from .definition import MatViewDefinition
from .deployed import deployed_definition
from .names import QualifiedName, derived_name
from .schema_change import ColumnChanges, column_changes
from .services.binding import bind_search_path, check_schema, create_statement, does_not_compile
from .services.indexes import check_declared_columns, declared_indexes, index_shapes
from .services.response import ServiceError, describe_db_error

Action = Literal["create", "unchanged", "change", "orphan", "error"]


class _Rollback(Exception):
    pass


@dataclass(frozen=True)
class ViewPlan:
    """What ``apply`` would do to one view: ``create`` it (missing), nothing (``unchanged``),
    ``change`` it (a new query: rebuilt; only indexes or comments: altered in place), or
    nothing to an ``orphan`` (a view with run history here and no definition any more);
    ``error`` when it cannot be compared (``error``, ``hint``: why and what to do)."""

    view: str
    action: Action
    deployed_sql: str | None = None
    expected_sql: str | None = None
    add_indexes: tuple[str, ...] = ()
    drop_indexes: tuple[str, ...] = ()
    comments: bool = False
    rebuilds: tuple[str, ...] = ()  # the views built on it, recreated by a rebuild
    error: str | None = None
    hint: str | None = None
    columns: ColumnChanges | None = None  # how a new query changes the view's columns
    impact: tuple[str, ...] = ()  # the defined views' columns built on a column removed or retyped

    @property
    def query_changed(self) -> bool:
        return self.deployed_sql != self.expected_sql

    @property
    def diff(self) -> str:
        """A unified diff from the deployed query to the definition's ('' when equal)."""
        if not self.query_changed:
            return ""
        lines = difflib.unified_diff(
            (self.deployed_sql or "").splitlines(),
            (self.expected_sql or "").splitlines(),
            "deployed",
            "definition",
            lineterm="",
        )
        return "\n".join(lines)

    def summary(self) -> str:
        """``query changed (removed total; added amount), changed columns read by public.mv_top.twice,
        add index (plan), drop index mv_users_email_idx, comments``."""
        parts = ["query changed"] if self.query_changed else []
        if parts and self.columns is not None and self.columns != ColumnChanges():
            parts[0] += f" ({self.columns.summary()})"
        if self.impact:
            parts.append(f"changed columns read by {', '.join(self.impact)}")
        parts += [f"add index {index}" for index in self.add_indexes]
        parts += [f"drop index {index}" for index in self.drop_indexes]
        parts += ["comments"] if self.comments else []
        if self.query_changed and self.rebuilds:
            parts.append(f"recreates {', '.join(self.rebuilds)}")
        return self.error or ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "view": self.view,
            "action": self.action,
            "summary": self.summary(),
            "diff": self.diff,
            "add_indexes": list(self.add_indexes),
            "drop_indexes": list(self.drop_indexes),
            "comments": self.comments,
            "rebuilds": list(self.rebuilds),
            "columns_removed": list(self.columns.removed) if self.columns else [],
            "columns_added": list(self.columns.added) if self.columns else [],
            "columns_retyped": [
                {"column": name, "from": old, "to": new}
                for name, old, new in (self.columns.retyped if self.columns else ())
            ],
            "impact": list(self.impact),
            "error": self.error,
            "hint": self.hint,
        }


def plan_view(
    conn: psycopg.Connection, definition: MatViewDefinition, previously_declared: Collection[str] = ()
) -> ViewPlan:
    """Compare the deployed view with ``definition``. ``previously_declared``: the names of the
    indexes the last applied definition declared (those it no longer declares are dropped).

    The definition is checked as ``create`` and ``apply`` check it, so a plan never promises
    what they refuse: its query must compile and return every column it declares, and its name
    must not be taken by a relation of another kind. Raises ``ServiceError`` saying why.
    """
    try:
        state = matview_state(conn, definition.qualified)
    except NotAMaterializedView as exc:
        raise ServiceError(str(exc)) from None
    deployed, expected, columns = _query_texts(conn, definition, exists=state is not None)
    check_declared_columns(definition, [name for name, _ in columns])
    if state is None:
        check_schema(conn, definition)
        return ViewPlan(definition.name, "create")
    add, drop = index_changes(conn, state.oid, definition, previously_declared)
    comments = comments_differ(conn, state.oid, definition)
    changed = deployed != expected or add or drop or comments
    rebuilds = tuple(described for described in _built_on(conn, state.oid)) if deployed != expected else ()
    action: Action = "change" if changed else "unchanged"
    new_columns = column_changes(column_types(conn, state.oid), columns) if deployed != expected else None
    return ViewPlan(definition.name, action, deployed, expected, add, drop, comments, rebuilds, columns=new_columns)


def index_changes(
    conn: psycopg.Connection, oid: int, definition: MatViewDefinition, previously_declared: Collection[str] = ()
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(add, drop)``: the declared indexes the view ``oid`` lacks (compared by shape: columns,
    uniqueness, method, predicate, not by name), and the indexes named in
    ``previously_declared`` that are no longer of a declared shape. One catalog read that takes
    no lock on the view, so a refresh asks it before it waits, timed, for the view."""
    shapes = index_shapes(conn, oid, texts=False)
    add = tuple(
        f"{'UNIQUE ' if unique else ''}({', '.join(keys)})"
        for keys, unique in declared_indexes(definition)
        if not any(shape.is_declared((keys, unique)) for shape in shapes)
    )
    declared = [shape.name for shape in shapes if any(map(shape.is_declared, declared_indexes(definition)))]
    drop = tuple(s.name for s in shapes if s.name in set(previously_declared) and s.name not in declared)
    return add, drop


def _query_texts(
    conn: psycopg.Connection, definition: MatViewDefinition, *, exists: bool
) -> tuple[str, str, list[tuple[str, str]]]:
    """``(deployed, expected, expected columns as (name, type))``, the texts as ``pg_get_viewdef`` writes them
    (deployed: '' when the view does not exist). The probe is a temporary view (any role may
    make one, with the database's default ``TEMP`` privilege; its text is the one a
    materialized view of the same query has), else, without ``TEMP``, a materialized view in the
    view's schema. Raises ``ServiceError`` when the definition's query does not compile."""
    probe = derived_name(definition.qualified.name, "mvprobe")
    found: tuple[str, str, list[tuple[str, str]]] | None = None
    try:
        with conn.transaction():
            bind_search_path(conn, definition)
            deployed = (deployed_definition(conn, definition.qualified) or "") if exists else ""
            found = (deployed, *_probe(conn, definition, probe))
            raise _Rollback
    except _Rollback:
        pass
    assert found is not None
    return found


def _probe(conn: psycopg.Connection, definition: MatViewDefinition, probe: str) -> tuple[str, list[tuple[str, str]]]:
    temporary = QualifiedName("pg_temp", probe)
    in_schema = definition.qualified.sibling(probe)
    attempts = [
        (temporary, sql.SQL("CREATE TEMP VIEW {} AS {}").format(temporary.identifier, sql.SQL(definition.sql))),
        (in_schema, create_statement(in_schema, definition, data=False)),
    ]
    refused: list[str] = []
    for target, statement in attempts:
        try:
            with conn.transaction():
                conn.execute(statement)
                row = conn.execute(
                    "SELECT pg_get_viewdef(%(probe)s::regclass), %(probe)s::regclass::oid",
                    {"probe": target.identifier.as_string(conn)},
                ).fetchone()
                assert row is not None
                return str(row[0]), column_types(conn, int(row[1]))
        except psycopg.errors.InsufficientPrivilege as exc:
            refused.append(describe_db_error(exc))
        except psycopg.Error as exc:
            raise does_not_compile(definition, exc) from None
    raise ServiceError(
        f"cannot compare {definition.name} with its definition: the role may create neither a temporary view "
        f"nor a view in schema {definition.qualified.schema} to read the query back ({'; '.join(refused)})",
        hint="GRANT TEMPORARY ON DATABASE to the role (PostgreSQL grants it to PUBLIC by default)",
    )


def _built_on(conn: psycopg.Connection, oid: int) -> list[str]:
    return [f"{name} ({kind})" for name, kind in dependent_relations(conn, oid)]


def comments_differ(conn: psycopg.Connection, oid: int, definition: MatViewDefinition) -> bool:
    """Whether a comment the definition sets (``description``, ``column_descriptions``) is not
    the one deployed; comments it does not set are not compared."""
    if definition.description is None and not definition.column_descriptions:
        return False
    row = conn.execute(
        """SELECT obj_description(%(oid)s, 'pg_class'),
                  coalesce(jsonb_object_agg(attname, col_description(attrelid, attnum))
                           FILTER (WHERE col_description(attrelid, attnum) IS NOT NULL), '{}')
           FROM pg_attribute WHERE attrelid = %(oid)s AND attnum > 0 AND NOT attisdropped""",
        {"oid": oid},
    ).fetchone()
    assert row is not None
    comment, columns = row
    if definition.description is not None and comment != definition.description:
        return True
    return any(columns.get(column) != text for column, text in definition.column_descriptions.items())
