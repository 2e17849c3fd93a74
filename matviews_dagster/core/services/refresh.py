"""Refresh a materialized view with its strategy: regular, concurrent or swap."""

from __future__ import annotations

import psycopg
from psycopg import sql

from ..catalog import columns_with_nulls, index_key_columns, matview_state, usable_unique_index
from ..definition import MatViewDefinition
from ..names import QualifiedName
from .locking import LockPolicy, with_lock_retries
from .response import ServiceError, ServiceResponse, StatementLog, returns_errors
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
    _, attempts = with_lock_retries(conn, policy, lambda: log.execute(statement), what=str(name), oids=[state.oid])
    meta["lock_attempts"] = attempts
    if concurrently:
        warning = null_trap_warning(conn, name, state.oid, str(meta["unique_index"]))
        if warning:
            meta["warnings"] = [warning]
        if row_count_strategy == "estimated":  # a concurrent refresh leaves reltuples as it was
            conn.execute(sql.SQL("ANALYZE {}").format(name.identifier))  # a sample: cheap beside the diff
    rows = count_rows(conn, name, state.oid, row_count_strategy)
    return ServiceResponse("updated", payload={"rows_count": rows}, meta=meta)


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
