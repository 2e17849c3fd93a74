"""Refresh a materialized view with its strategy: regular, concurrent or swap."""

from __future__ import annotations

import time
from functools import partial

import psycopg
from psycopg import IsolationLevel, sql

from ..catalog import columns_with_nulls, index_key_columns, matview_state, usable_unique_index
from ..definition import MatViewDefinition
from ..names import QualifiedName
from .binding import bind_search_path, query_statement
from .locking import LockPolicy, with_lock_retries
from .response import ServiceError, ServiceResponse, StatementLog, describe_db_error, returns_errors
from .row_count import count_rows
from .swap import swap_refresh


@returns_errors
def refresh_view(
    conn: psycopg.Connection,
    definition: MatViewDefinition,
    *,
    strategy: str | None = None,
    row_count_strategy: str = "estimated",
    lock_policy: LockPolicy | None = None,
    log: StatementLog,
) -> ServiceResponse:
    """Refresh with ``strategy`` (default: the definition's) and count rows.

    ``concurrent`` needs a usable unique index; an unpopulated view gets a regular refresh
    first (Postgres refuses CONCURRENTLY there), noted in ``meta``. No other fallback exists.
    """
    strategy = strategy or definition.refresh_strategy
    policy = lock_policy or LockPolicy()
    name = definition.qualified
    state = matview_state(conn, name)
    if state is None:
        raise ServiceError(
            f"{name} does not exist; create it first",
            hint="run create, or refresh with create_if_missing=True",
        )
    if strategy == "swap":
        return swap_refresh(conn, definition, state, row_count_strategy=row_count_strategy, lock_policy=policy, log=log)
    meta: dict[str, object] = {"strategy": strategy, "row_count_strategy": row_count_strategy}
    concurrently = strategy == "concurrent"
    if concurrently and not state.populated:
        concurrently = False
        meta["fallback"] = "regular refresh: the view was not populated, Postgres refuses CONCURRENTLY"
    if concurrently:
        index = usable_unique_index(conn, state.oid)
        if index is None:
            columns = (
                ", ".join(sql.Identifier(c).as_string(conn) for c in definition.unique_index_columns)
                or "<unique columns>"
            )
            fix = f"CREATE UNIQUE INDEX ON {name.identifier.as_string(conn)} ({columns})"
            raise ServiceError(
                f"{name} has no usable unique index for REFRESH ... CONCURRENTLY "
                "(unique, valid, immediate, plain columns, no WHERE)",
                hint=f"create one: {fix}; or recreate the view with force",
            )
        meta["unique_index"] = index
    statement = sql.SQL("REFRESH MATERIALIZED VIEW {}{}").format(
        sql.SQL("CONCURRENTLY ") if concurrently else sql.SQL(""), name.identifier
    )
    try:
        if concurrently:  # the view must equal its query: verified in the refresh's own snapshot
            check = partial(_refresh_and_verify, conn, log, statement, definition, str(meta["unique_index"]))
            check_ms, attempts = with_lock_retries(
                conn, policy, check, what=str(name), oids=[state.oid], isolation=IsolationLevel.REPEATABLE_READ
            )
            if check_ms is None:
                meta["warnings"] = [
                    "the role may refresh but not read the view or its sources, so the concurrent refresh "
                    "could not be checked against the query (rows with the same key that contain NULLs)"
                ]
            else:
                meta["equality_check_ms"] = check_ms
        else:
            refresh = partial(log.execute, statement)
            _, attempts = with_lock_retries(conn, policy, refresh, what=str(name), oids=[state.oid])
    except psycopg.errors.InsufficientPrivilege as exc:
        raise ServiceError(
            f"{describe_db_error(exc)}: REFRESH needs ownership of {name} (or MAINTAIN on PostgreSQL 17+)",
            hint=f"refresh as the owner of {name}, or GRANT MAINTAIN ON {name} to the role (PostgreSQL 17+)",
        ) from None
    meta["lock_attempts"] = attempts
    if concurrently:
        warning = null_trap_warning(conn, name, state.oid, str(meta["unique_index"]))
        if warning:
            meta["warnings"] = [*meta.get("warnings", []), warning]  # type: ignore[misc]
        if row_count_strategy == "estimated":  # a concurrent refresh leaves reltuples as it was
            conn.execute(sql.SQL("ANALYZE {}").format(name.identifier))  # a sample: cheap beside the diff
    rows = count_rows(conn, name, state.oid, row_count_strategy)
    return ServiceResponse("updated", payload={"rows_count": rows}, meta=meta)


def _refresh_and_verify(
    conn: psycopg.Connection, log: StatementLog, statement: sql.Composable, definition: MatViewDefinition, index: str
) -> int | None:
    """``REFRESH ... CONCURRENTLY``, then compare the view's rows with the query's in the same
    repeatable-read snapshot; a difference rolls the refresh back. Returns the check's ms.

    The concurrent refresh's duplicate check skips rows that contain a NULL in any column
    (PostgreSQL's ``newdata.* IS NOT NULL``), so a query that returns such rows with the same
    key leaves the view with fewer rows than the query, and reports success. A regular or swap
    refresh fails on the duplicate key instead.
    """
    log.execute(statement)
    started = time.monotonic()
    try:
        with conn.transaction():  # a savepoint: a role that may refresh but not read keeps its refresh
            bind_search_path(conn, definition)
            row = conn.execute(
                sql.SQL("SELECT (SELECT count(*) FROM {}), ({})").format(
                    definition.qualified.identifier, query_statement(definition, "count(*)")
                )
            ).fetchone()
    except psycopg.errors.InsufficientPrivilege:
        return None  # MAINTAIN without SELECT (PostgreSQL 17+): unverified, said in the run's warnings
    assert row is not None
    view_rows, query_rows = int(row[0]), int(row[1])
    if view_rows != query_rows:
        key = ", ".join(definition.unique_index_columns) or index
        raise ServiceError(
            f"{definition.name}: its query returns {query_rows} rows but REFRESH ... CONCURRENTLY would leave "
            f"{view_rows}: the query returns rows with the same key ({key}) that contain NULLs, which the "
            "concurrent refresh's duplicate check does not see (a PostgreSQL limitation); the refresh was rolled back",
            hint=f"make ({key}) unique in the query's result; a regular or swap refresh names the duplicate key",
            view_rows=view_rows,
            query_rows=query_rows,
        )
    return int((time.monotonic() - started) * 1000)


def null_trap_warning(conn: psycopg.Connection, name: QualifiedName, oid: int, index: str) -> str | None:
    """Rows whose unique-index key holds a NULL never match in a concurrent refresh's diff, so
    Postgres deletes and reinserts them every time: say so, with the fix."""
    try:
        nullable = columns_with_nulls(conn, name, index_key_columns(conn, oid, index))
    except psycopg.errors.InsufficientPrivilege:
        return None  # a MAINTAIN-only role may refresh but not read: the refresh itself succeeded
    if not nullable:
        return None
    return (
        f"unique index {index} has NULLs in {', '.join(nullable)}: every concurrent refresh rewrites those rows; "
        "make the key columns non-null (e.g. coalesce) or use the swap strategy"
    )
