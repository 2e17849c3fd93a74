"""Create a materialized view with its indexes; ``force`` recreates it in one transaction."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import psycopg

from ..catalog import column_names, matview_state
from ..definition import MatViewDefinition
from ..names import QualifiedName
from .apply import change_view
from .binding import (
    bind_search_path,
    binding_warnings,
    bound_relations,
    check_schema,
    create_statement,
    does_not_compile,
    refused_at_compile_time,
)
from .carry_over import set_comments
from .indexes import check_declared_columns, declared_index_names, definition_index_statements
from .locking import LockPolicy
from .response import ServiceError, ServiceResponse, describe_db_error, disk_full, returns_errors
from .statement_log import StatementLog


@returns_errors
def create_view(
    conn: psycopg.Connection,
    definition: MatViewDefinition,
    *,
    force: bool = False,
    expected_reads: Collection[QualifiedName] | None = None,
    upstream: Collection[QualifiedName] = (),
    previously_declared: Collection[str] = (),
    definitions: Mapping[str, MatViewDefinition] | None = None,
    lock_policy: LockPolicy | None = None,
    log: StatementLog,
) -> ServiceResponse:
    """Create the view (populated), its indexes and the comments the definition sets, its
    names bound with its search path; ``payload["declared_indexes"]`` names the indexes.

    Exists and not ``force``: ``skipped``. With ``force`` it is rebuilt beside the old one and
    renamed into place (``swap.rebuild``): owner, grants, comments, indexes not declared and
    views built on it are kept, and a failing new definition leaves everything as it was.
    ``expected_reads`` (the dependency graph's view of what the SQL reads) is checked against
    what Postgres bound; a difference is a warning in ``meta``. ``upstream`` (the defined views
    among them) lets a missing one be named as a view to create first.
    """
    try:
        return _create_or_rebuild(
            conn, definition, force, expected_reads, upstream, previously_declared, definitions, lock_policy, log
        )
    except psycopg.errors.DiskFull as exc:
        raise disk_full(conn, definition.qualified, "building", exc) from None


def _create_or_rebuild(
    conn: psycopg.Connection,
    definition: MatViewDefinition,
    force: bool,
    expected_reads: Collection[QualifiedName] | None,
    upstream: Collection[QualifiedName],
    previously_declared: Collection[str],
    definitions: Mapping[str, MatViewDefinition] | None,
    lock_policy: LockPolicy | None,
    log: StatementLog,
) -> ServiceResponse:
    name = definition.qualified
    meta: dict[str, object] = {"force": force}
    if force and matview_state(conn, name) is not None:
        policy = lock_policy or LockPolicy()
        replaced = change_view(
            conn,
            definition,
            previously_declared=previously_declared,
            rebuild_always=True,
            definitions=definitions,
            lock_policy=policy,
            log=log,
        )
        return ServiceResponse("created", payload=replaced.payload, meta={**meta, **replaced.meta})
    try:
        return _create(conn, definition, force, expected_reads, meta, log)
    except psycopg.errors.UndefinedTable as exc:  # the transaction is rolled back: ask what is missing
        missing = _missing(conn, expected_reads or ())
        if not missing:
            raise
        views = [m for m in missing if m in {str(u) for u in upstream}]
        if views:
            raise ServiceError(
                f"cannot create {name}: {describe_db_error(exc)}; the defined view {views[0]} does not exist yet",
                hint=f"create {views[0]} first: creating all the views at once (create_many) creates "
                "the views they read first",
            ) from None
        raise ServiceError(
            f"cannot create {name}: {describe_db_error(exc)}; {', '.join(missing)} does not exist "
            "(not one of the defined views)",
            hint="create that table or view, or fix the name; unqualified names are looked up in the view's "
            "search_path (its schema, then public)",
        ) from None


def _missing(conn: psycopg.Connection, relations: Collection[QualifiedName]) -> list[str]:
    """Which of ``relations`` do not exist."""
    names = [relation.identifier.as_string(conn) for relation in relations]
    rows = conn.execute("SELECT r FROM unnest(%s::text[]) r WHERE to_regclass(r) IS NULL", (names,)).fetchall()
    absent = {row[0] for row in rows}
    return [str(relation) for relation, quoted in zip(relations, names, strict=True) if quoted in absent]


def _create(
    conn: psycopg.Connection,
    definition: MatViewDefinition,
    force: bool,
    expected_reads: Collection[QualifiedName] | None,
    meta: dict[str, object],
    log: StatementLog,
) -> ServiceResponse:
    name = definition.qualified
    with conn.transaction():
        bind_search_path(conn, definition)
        state = matview_state(conn, name)
        if state is not None:
            return ServiceResponse("skipped", meta={**meta, "reason": "view exists"})
        check_schema(conn, definition)
        try:
            with conn.transaction():
                cursor = log.execute(create_statement(name, definition))
        except psycopg.errors.UndefinedTable:
            raise  # a relation not created yet: named below
        except psycopg.Error as exc:
            if refused_at_compile_time(exc):
                raise does_not_compile(definition, exc) from None
            raise
        rows_count = cursor.rowcount
        created = matview_state(conn, name)
        assert created is not None
        warnings = binding_warnings(definition, bound_relations(conn, created.oid), expected_reads)
        if warnings:
            meta["warnings"] = warnings
        check_declared_columns(definition, column_names(conn, created.oid))
        for statement in definition_index_statements(definition):
            log.execute(statement)
        set_comments(log, name, definition.description, definition.column_descriptions)
        declared = declared_index_names(conn, created.oid, definition)
    return ServiceResponse(
        "created",
        payload={"rows_count": rows_count, "replaced": False, "declared_indexes": declared},
        meta=meta,
    )
