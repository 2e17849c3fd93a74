"""The concurrent refresh's check: the view holds every row its query returns.

``REFRESH ... CONCURRENTLY`` matches each row of the query to a row of the view that is equal
as a whole (``*=``, where NULL equals NULL) and its duplicate check skips rows holding a NULL,
so the same row holding a NULL returned twice, where the view held it once, leaves the view
one row short while the refresh reports success (a regular or swap refresh fails on the
duplicate key). ``refresh_and_verify`` runs the refresh and the check in one transaction,
which holds the view's lock throughout (nobody else can change the view between them), and
rolls the refresh back when the check finds such rows; ``null_trap_warning``
says when NULLs in the unique key make every refresh rewrite rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..catalog import MatViewState, columns_with_nulls, index_key_columns
from ..names import QualifiedName
from ..timing import elapsed_ms
from .owner_rights import OwnerRightsRefused, owner_scratch
from .response import ServiceError, describe_db_error
from .statement_log import StatementLog


@dataclass(frozen=True)
class Verified:
    """How a concurrent refresh was checked: ``ms`` spent, ``full`` when the stored query had to
    run again (rows holding a NULL survived the refresh), ``unverified`` why it could not be."""

    ms: int
    full: bool = False
    unverified: str | None = None


_SURVIVOR_WITH_NULL = """SELECT EXISTS (
    SELECT 1 FROM {view} v WHERE NOT (ROW(v.*) IS NOT NULL) AND v.xmin <> xid(pg_current_xact_id()))"""
"""A row the refresh left untouched that holds a NULL. ``ROW(v.*)``, not ``v``: a column named
``v`` would be read instead of the row."""


def refresh_and_verify(
    conn: psycopg.Connection,
    log: StatementLog,
    statement: sql.Composable,
    name: QualifiedName,
    state: MatViewState,
    index: str,
) -> Verified:
    """``REFRESH ... CONCURRENTLY``, then, in the same transaction (read committed, so a refresh
    that waited for another session's sees what that one committed), make sure it did not keep
    too few rows; found, the refresh is rolled back (``ServiceError``).

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
        return Verified(elapsed_ms(started))
    key = index_key_columns(conn, state.oid, index)
    try:
        duplicate = _duplicate_key(conn, log, name, state, key)
    except (OwnerRightsRefused, psycopg.errors.InsufficientPrivilege) as exc:
        why = f"{exc}; {exc.hint}" if isinstance(exc, OwnerRightsRefused) else describe_db_error(exc)
        return Verified(elapsed_ms(started), True, "; ".join(filter(None, [unreadable, why])))
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
    return Verified(elapsed_ms(started), True)


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
