"""Refresh a materialized view with its strategy: ``STRATEGIES`` maps each name in
``vocabulary.RefreshStrategy`` to its implementation (regular, concurrent, swap)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import psycopg
from psycopg import IsolationLevel, sql

from ..catalog import MatViewState, columns_with_nulls, index_key_columns, matview_state, usable_unique_index
from ..definition import MatViewDefinition
from ..names import QualifiedName
from .locking import LockPolicy, with_lock_retries
from .owner_rights import OwnerRightsRefused, owner_scratch
from .response import ServiceError, ServiceResponse, StatementLog, describe_db_error, disk_full, returns_errors
from .row_count import count_rows
from .swap import swap_refresh


class Strategy(Protocol):
    """A refresh strategy: refresh the existing view ``state`` describes and count its rows
    (``row_count_strategy``), waiting for table locks as ``lock_policy`` allows; every
    statement goes through ``log``. ``query`` (when not None) is the deployed query, for a
    strategy that builds from the definition's text: a changed definition is not to be
    applied. Raises ``ServiceError`` for a refusal with a hint."""

    def __call__(
        self,
        conn: psycopg.Connection,
        definition: MatViewDefinition,
        state: MatViewState,
        *,
        row_count_strategy: str,
        lock_policy: LockPolicy,
        log: StatementLog,
        query: str | None,
    ) -> ServiceResponse: ...


@returns_errors
def refresh_view(
    conn: psycopg.Connection,
    definition: MatViewDefinition,
    *,
    strategy: str | None = None,
    row_count_strategy: str = "estimated",
    lock_policy: LockPolicy | None = None,
    query: str | None = None,
    log: StatementLog,
) -> ServiceResponse:
    """Refresh with ``strategy`` (default: the definition's; one of ``STRATEGIES``) and count
    rows; ``query``: see ``Strategy``."""
    strategy = strategy or definition.refresh_strategy
    state = matview_state(conn, definition.qualified)
    if state is None:
        raise ServiceError(
            f"{definition.qualified} does not exist; create it first",
            hint="create it first, or refresh with create_if_missing=True",
        )
    refresh = STRATEGIES[strategy]
    policy = lock_policy or LockPolicy()
    try:
        return refresh(
            conn, definition, state, row_count_strategy=row_count_strategy, lock_policy=policy, log=log, query=query
        )
    except psycopg.errors.DiskFull as exc:
        raise disk_full(conn, definition.qualified, f"a {strategy} refresh of", exc) from None


def in_place_refresh(
    conn: psycopg.Connection,
    definition: MatViewDefinition,
    state: MatViewState,
    *,
    concurrently: bool,
    row_count_strategy: str,
    lock_policy: LockPolicy,
    log: StatementLog,
    query: str | None = None,
) -> ServiceResponse:
    """``REFRESH MATERIALIZED VIEW [CONCURRENTLY]``: the ``regular`` and ``concurrent`` strategies
    (they run the deployed query by nature, so ``query`` changes nothing).

    ``concurrent`` needs a usable unique index; an unpopulated view gets a regular refresh
    first (Postgres refuses CONCURRENTLY there), noted in ``meta``. No other fallback exists.
    """
    strategy, policy, name = ("concurrent" if concurrently else "regular"), lock_policy, definition.qualified
    meta: dict[str, object] = {"strategy": strategy, "row_count_strategy": row_count_strategy}
    warnings: list[str] = []
    if concurrently and not state.populated:
        concurrently = False
        meta["fallback"] = "regular refresh: the view was not populated, Postgres refuses CONCURRENTLY"
    if concurrently:
        index = usable_unique_index(conn, state.oid)
        if index is None:
            if definition.unique_index_columns:
                columns = ", ".join(sql.Identifier(c).as_string(conn) for c in definition.unique_index_columns)
                fix = f"create one: CREATE UNIQUE INDEX ON {name.identifier.as_string(conn)} ({columns}); "
                fix += "or apply its definition (matviews apply), which builds the indexes it declares"
            else:
                fix = "add unique_index_columns to its definition, then apply it (matviews apply)"
            raise ServiceError(
                f"{name} has no usable unique index for REFRESH ... CONCURRENTLY "
                "(unique, valid, immediate, plain columns, no WHERE)",
                hint=fix,
            )
        meta["unique_index"] = index
    statement = sql.SQL("REFRESH MATERIALIZED VIEW {}{}").format(
        sql.SQL("CONCURRENTLY ") if concurrently else sql.SQL(""), name.identifier
    )
    try:
        if concurrently:  # the view must equal its query: verified in the refresh's own snapshot
            check = partial(_refresh_and_verify, conn, log, statement, name, state, str(meta["unique_index"]))
            verified, attempts, waited = with_lock_retries(
                conn, policy, check, what=str(name), oids=[state.oid], isolation=IsolationLevel.REPEATABLE_READ
            )
            meta["equality_check_ms"] = verified.ms
            meta["equality_check"] = "query" if verified.full else "view scan"
            if verified.unverified:
                warnings.append(
                    "the concurrent refresh could not be checked for rows with the same key that contain NULLs: "
                    + verified.unverified
                )
        else:
            refresh = partial(_locked_refresh, conn, log, statement, state, name)
            clock, attempts, waited = with_lock_retries(conn, policy, refresh, what=str(name), oids=[state.oid])
            waited += clock.waited_ms()
    except psycopg.errors.InsufficientPrivilege as exc:
        raise ServiceError(
            f"{describe_db_error(exc)}: REFRESH needs ownership of {name} (or MAINTAIN on PostgreSQL 17+)",
            hint=f"refresh as the owner of {name}, or GRANT MAINTAIN ON {name} to the role (PostgreSQL 17+)",
        ) from None
    meta["lock_attempts"], meta["table_lock_wait_ms"] = attempts, waited
    if concurrently:
        warning = null_trap_warning(conn, name, state.oid, str(meta["unique_index"]))
        if warning:
            warnings.append(warning)
        if row_count_strategy == "estimated":  # a concurrent refresh leaves reltuples as it was
            conn.execute(sql.SQL("ANALYZE {}").format(name.identifier))  # a sample: cheap beside the diff
    try:  # the refresh is committed: a count the role may not make must not fail the run
        rows = count_rows(conn, name, state.oid, row_count_strategy)
    except psycopg.errors.InsufficientPrivilege:
        rows = None
        warnings.append(
            f"rows not counted ({row_count_strategy}): the role may refresh {name} but not read it; "
            "GRANT SELECT to count them"
        )
    if warnings:
        meta["warnings"] = warnings
    return ServiceResponse("updated", payload={"rows_count": rows}, meta=meta)


@dataclass(frozen=True)
class LockClock:
    """The server's clock read before and after the statement that takes the view's lock (the
    cursors are read once the pipelined transaction has run)."""

    before: psycopg.Cursor
    after: psycopg.Cursor

    def waited_ms(self) -> int:
        before, after = self.before.fetchone(), self.after.fetchone()
        assert before is not None and after is not None
        return int((after[0] - before[0]).total_seconds() * 1000)


def _locked_refresh(
    conn: psycopg.Connection, log: StatementLog, statement: sql.Composable, state: MatViewState, name: QualifiedName
) -> LockClock:
    """``REFRESH MATERIALIZED VIEW``, its lock taken first by a statement of its own so the
    wait for it is timed apart from the query: ``ALTER ... OWNER TO`` the owner it already has
    changes nothing and takes the ``ACCESS EXCLUSIVE`` lock ``REFRESH`` takes (only a role that
    may act as the owner may send it; for a ``MAINTAIN``-only role the wait is the query's)."""
    before = conn.execute("SELECT clock_timestamp()")
    if state.owned:
        conn.execute(
            sql.SQL("ALTER MATERIALIZED VIEW {} OWNER TO {}").format(name.identifier, sql.Identifier(state.owner))
        )
    after = conn.execute("SELECT clock_timestamp()")
    log.execute(statement)
    return LockClock(before, after)


@dataclass(frozen=True)
class Verified:
    """How a concurrent refresh was checked: ``ms`` spent, ``full`` when the stored query had to
    run again (rows holding a NULL survived the refresh), ``unverified`` why it could not be."""

    ms: int
    full: bool = False
    unverified: str | None = None


_SURVIVOR_WITH_NULL = """SELECT EXISTS (
    SELECT 1 FROM {view} v WHERE NOT (v IS NOT NULL) AND v.xmin <> xid(pg_current_xact_id()))"""


def _refresh_and_verify(
    conn: psycopg.Connection,
    log: StatementLog,
    statement: sql.Composable,
    name: QualifiedName,
    state: MatViewState,
    index: str,
) -> Verified:
    """``REFRESH ... CONCURRENTLY``, then, in the same repeatable-read snapshot, make sure it did
    not keep too few rows; found, the refresh is rolled back (``ServiceError``).

    PostgreSQL's diff matches each row of the query to a row of the view that is equal as a
    whole (``*=``, where NULL equals NULL) and its duplicate check skips rows holding a NULL, so
    when the query returns the same row holding a NULL twice and the view held it once, both
    match that one row, nothing is inserted, and the view keeps one (a regular or swap refresh
    fails on the duplicate key). Such a row is always one the refresh left untouched, so the
    check costs one scan of the view: only when an untouched row holding a NULL is there does
    the view's stored query run again, as the view's owner (``owner_rights``), grouped by the
    unique key.
    """
    log.execute(statement)
    started = time.monotonic()
    unreadable = None
    try:
        with conn.transaction():  # a savepoint: a role that may refresh but not read keeps its refresh
            row = conn.execute(sql.SQL(_SURVIVOR_WITH_NULL).format(view=name.identifier)).fetchone()
            suspect = bool(row and row[0])
    except psycopg.errors.InsufficientPrivilege as exc:  # MAINTAIN without SELECT: the query must tell
        suspect, unreadable = (
            True,
            f"{describe_db_error(exc)} (GRANT SELECT ON {name} to the role lets it scan the view)",
        )
    if not suspect:
        return Verified(_ms_since(started))
    key = index_key_columns(conn, state.oid, index)
    try:
        duplicate = _duplicate_key(conn, log, name, state, key)
    except (OwnerRightsRefused, psycopg.errors.InsufficientPrivilege) as exc:
        why = f"{exc}; {exc.hint}" if isinstance(exc, OwnerRightsRefused) else describe_db_error(exc)
        return Verified(_ms_since(started), True, "; ".join(filter(None, [unreadable, why])))
    if duplicate is not None:
        values = ", ".join(repr(value)[:40] for value in duplicate[:-1])
        raise ServiceError(
            f"{name}: its query returns {duplicate[-1]} rows with the same key ({', '.join(key)}) = ({values}) "
            "and at least one contains a NULL, so REFRESH ... CONCURRENTLY's duplicate check does not see them "
            "(a PostgreSQL limitation) and would keep only one; the refresh was rolled back",
            hint=f"make ({', '.join(key)}) unique in the query's result; a regular or swap refresh names the "
            "duplicate key",
            duplicate_key=[str(value) for value in duplicate[:-1]],
        )
    return Verified(_ms_since(started), True)


def _duplicate_key(
    conn: psycopg.Connection, log: StatementLog, name: QualifiedName, state: MatViewState, key: list[str]
) -> tuple[object, ...] | None:
    """A non-NULL key the view's stored query returns more than once (with its count), as the
    view's owner sees the query's rows; None when there is none. Read directly when the role is
    the owner, else from a scratch view given to the owner and refreshed (rolled back)."""
    columns = sql.SQL(", ").join(map(sql.Identifier, key))
    with conn.transaction() as savepoint:
        conn.execute("SELECT set_config('search_path', 'pg_catalog', true)")  # every name in the text qualified
        row = conn.execute("SELECT pg_get_viewdef(%s::oid), current_user = %s", (state.oid, state.owner)).fetchone()
        assert row is not None
        check = sql.SQL(
            "SELECT {columns}, count(*) AS n FROM (\n{query}\n) q WHERE {not_null} GROUP BY {columns} "
            "HAVING count(*) > 1 LIMIT 1"
        ).format(
            columns=columns,
            query=sql.SQL(str(row[0]).strip().rstrip(";")),  # type: ignore[arg-type]  # the catalog's own text
            not_null=sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(sql.Identifier(c)) for c in key),
        )
        if not row[1]:
            what = "the concurrent refresh's check for rows with the same key that contain NULLs"
            scratch = owner_scratch(conn, log, name, state.owner, check, what=what)
            check = sql.SQL("TABLE {}").format(scratch.identifier)
        duplicate = conn.execute(check).fetchone()
        raise psycopg.Rollback(savepoint)  # nothing of the check stays (a scratch view, the search path)
    return tuple(duplicate) if duplicate is not None else None


def _ms_since(started: float) -> int:
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


STRATEGIES: dict[str, Strategy] = {
    "regular": partial(in_place_refresh, concurrently=False),
    "concurrent": partial(in_place_refresh, concurrently=True),
    "swap": swap_refresh,
}
"""Each refresh strategy's implementation, by the name ``vocabulary.RefreshStrategy`` lists."""
