"""Refresh a materialized view with its strategy: ``STRATEGIES`` maps each name in
``vocabulary.Strategy`` to its implementation (regular, concurrent, swap)."""

from __future__ import annotations

import contextlib
from functools import partial
from typing import Protocol

import psycopg
from psycopg import sql

from .. import costs
from ..catalog import MatViewState, matview_state, usable_unique_index
from ..definition import MatViewDefinition
from ..reader_waits import Flight, ReaderWaits, ReaderWatcher, watched
from ..timing import seconds_to_ms
from ..vocabulary import Strategy
from .concurrent_check import null_trap_warning, refresh_and_verify
from .locking import EXCLUSIVE_CONFLICTS, LockAttempts, LockPolicy, wait_until_free
from .owner_rights import owner_lacks
from .response import ServiceError, ServiceResponse, describe_db_error, disk_full, returns_errors
from .row_count import count_rows
from .statement_log import StatementLog
from .swap import swap_refresh


class RefreshFunction(Protocol):
    """A refresh strategy: refresh the existing view ``state`` describes and count its rows
    (``row_count_strategy``), waiting for table locks as ``lock_policy`` allows; every
    statement goes through ``log``. ``query`` (when not None) is the deployed query, for a
    strategy that builds from the definition's text: a changed definition is not to be
    applied. ``readers`` watches the sessions waiting on the view while the strategy holds its
    strongest lock (``waits`` gets what it saw). Raises ``ServiceError`` for a refusal with a
    hint."""

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
        readers: ReaderWatcher | None,
        waits: ReaderWaits,
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
    readers: ReaderWatcher | None = None,
    log: StatementLog,
) -> ServiceResponse:
    """Refresh with ``strategy`` (default: the definition's; one of ``STRATEGIES``) and count
    rows; ``query`` and ``readers``: see ``RefreshFunction``. The response's ``meta["costs"]``
    holds what the refresh cost (``core/costs.py``) and whom it blocked (``readers_blocked``,
    ``reader_wait_ms``, ``reader_wait_max_ms``: ``core/reader_waits.py``)."""
    strategy = strategy or definition.refresh_strategy
    state = matview_state(conn, definition.qualified)
    if state is None:
        raise ServiceError(
            f"{definition.qualified} does not exist; create it first",
            hint="create it first, or refresh with create_if_missing=True",
        )
    refresh = STRATEGIES[strategy]
    policy, waits = lock_policy or LockPolicy(), ReaderWaits()
    with readers.refreshing() if readers is not None else contextlib.nullcontext(Flight()) as flight:
        before = costs.read(conn, definition.qualified)
        try:
            response = refresh(
                conn,
                definition,
                state,
                row_count_strategy=row_count_strategy,
                lock_policy=policy,
                log=log,
                query=query,
                readers=readers,
                waits=waits,
            )
        except BaseException as exc:  # whom it blocked before it failed is known, and kept
            log.meta["costs"] = {**dict.fromkeys(costs.COST_FIELDS), **waits.meta()}
            if isinstance(exc, psycopg.errors.DiskFull):
                raise disk_full(conn, definition.qualified, f"a {strategy} refresh of", exc) from None
            raise
        after = costs.read(conn, definition.qualified)
    rows_known = response.meta.get("strategy") == Strategy.concurrent and "fallback" not in response.meta
    server = costs.Sources.of(conn)
    measured = costs.costs(before, after, rows_known=rows_known, server=server, overlapped=flight.overlapped)
    measured["costs"].update(waits.meta())
    response.meta.update(measured)
    return response


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
    readers: ReaderWatcher | None = None,
    waits: ReaderWaits | None = None,
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
                fix += "or apply its definition (apply_many()), which builds the indexes it declares"
            else:
                fix = "add unique_index_columns to its definition, then apply it (apply_many())"
            raise ServiceError(
                f"{name} has no usable unique index for REFRESH ... CONCURRENTLY "
                "(unique, valid, immediate, plain columns, no WHERE)",
                hint=fix,
            )
        meta["unique_index"] = index
    statement = sql.SQL("REFRESH MATERIALIZED VIEW {}{}").format(
        sql.SQL("CONCURRENTLY ") if concurrently else sql.SQL(""), name.identifier
    )
    attempts = LockAttempts(conn, policy, what=str(name), oids=[state.oid], pipeline=not concurrently)
    try:
        if concurrently:  # the view must equal its query: checked before the refresh commits
            waited = wait_until_free(conn, state.oid, EXCLUSIVE_CONFLICTS, policy)  # timed: no snapshot, no lock
            for attempt in attempts:
                with watched(readers, conn, [state.oid], waits), attempt:
                    verified = refresh_and_verify(conn, log, statement, name, state, str(meta["unique_index"]))
            meta["equality_check_ms"] = verified.ms
            meta["equality_check"] = "query" if verified.full else "view scan"
            if verified.unverified:
                warnings.append(
                    "the concurrent refresh could not be checked for rows with the same key that contain NULLs: "
                    + verified.unverified
                )
        else:  # its lock is taken first, by a statement of its own, so the wait is timed apart from the query
            for attempt in attempts:
                with watched(readers, conn, [state.oid], waits), attempt:
                    before = conn.execute("SELECT clock_timestamp()")
                    if state.owned:  # the owner it already has: changes nothing, takes REFRESH's lock
                        owner = sql.Identifier(state.owner)
                        conn.execute(sql.SQL("ALTER MATERIALIZED VIEW {} OWNER TO {}").format(name.identifier, owner))
                    after = conn.execute("SELECT clock_timestamp()")
                    log.execute(statement)
            waited = _server_ms(before, after)  # read once the pipelined transaction has run
    except psycopg.errors.InsufficientPrivilege as exc:
        if name.name not in (exc.diag.message_primary or ""):  # refused while running as the owner
            raise owner_lacks(name, state.owner, exc) from None
        raise ServiceError(
            f"{describe_db_error(exc)}: REFRESH needs ownership of {name} (or MAINTAIN on PostgreSQL 17+)",
            hint=f"refresh as the owner of {name}, or GRANT MAINTAIN ON {name} to the role (PostgreSQL 17+)",
        ) from None
    meta["lock_attempts"], meta["table_lock_wait_ms"] = attempts.number, waited + attempts.waited_ms
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


def _server_ms(before: psycopg.Cursor, after: psycopg.Cursor) -> int:
    """Milliseconds between two ``clock_timestamp()`` readings of the server."""
    start, end = before.fetchone(), after.fetchone()
    assert start is not None and end is not None
    return seconds_to_ms((end[0] - start[0]).total_seconds())


STRATEGIES: dict[Strategy, RefreshFunction] = {
    Strategy.regular: partial(in_place_refresh, concurrently=False),
    Strategy.concurrent: partial(in_place_refresh, concurrently=True),
    Strategy.swap: swap_refresh,
}
"""Each refresh strategy's implementation (``vocabulary.Strategy``)."""
