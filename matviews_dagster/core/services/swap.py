"""Rebuild a materialized view beside itself, then rename it into place in one short transaction.

The swap strategy, a definition change (``apply``) and a forced create all rebuild this way.
Readers keep reading the old copy while the new one builds; they wait only for the renames
(about a millisecond) and, when views are built on this one, for those to be recreated. The
new copy gets the old one's owner, grants (table and column), comments and indexes; the views
built on it are dropped and recreated with theirs in the renaming transaction, so if anything
cannot be carried over nothing changes. The old copy is dropped afterwards in its own
transaction, so its commit cost never sits inside the window readers wait on.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Collection, Mapping
from typing import Literal

import psycopg
from psycopg import sql

from ..catalog import MatViewState, column_names, dependent_oids, matview_state
from ..definition import MatViewDefinition
from ..names import QualifiedName, derived_name
from ..reader_waits import ReaderWaits, ReaderWatcher, watched
from ..timing import seconds_to_ms
from . import carry_over, dependents, owner_rights
from .binding import bind_search_path, does_not_compile, refused_at_compile_time
from .indexes import (
    check_declared_columns,
)
from .locking import LockAttempts, LockPolicy
from .rebuild_indexes import Rebuilt, build_indexes
from .response import ServiceError, ServiceResponse, describe_db_error
from .row_count import count_rows
from .statement_log import StatementLog


def swap_names(name: QualifiedName) -> tuple[QualifiedName, QualifiedName]:
    """The deterministic ``(new copy, backup)`` names of a swap of ``name``."""
    return name.sibling(derived_name(name.name, "mvnew")), name.sibling(derived_name(name.name, "mvold"))


def drop_swap_leftovers(conn: psycopg.Connection, name: QualifiedName) -> list[str]:
    """Drop the temporary copies an interrupted swap of ``name`` left behind.

    One catalog probe finds them (the usual answer, none, costs a single cheap round trip).
    """
    temps = {temp.name: temp for temp in swap_names(name)}
    found = conn.execute(  # to_regclass: two syscache lookups, as cheap as SELECT 1
        "SELECT relname FROM pg_class WHERE oid IN (to_regclass(%s), to_regclass(%s)) AND relkind = 'm' "
        "ORDER BY relname",
        [temp.identifier.as_string(conn) for temp in temps.values()],
    ).fetchall()
    dropped = []
    for (relname,) in found:
        try:
            with conn.transaction():
                conn.execute(sql.SQL("DROP MATERIALIZED VIEW IF EXISTS {}").format(temps[relname].identifier))
        except psycopg.Error as exc:  # something else now depends on it: the swap that needs the name says so
            raise ServiceError(
                f"an interrupted swap left {temps[relname]}, and it cannot be dropped: {describe_db_error(exc)}",
                hint=f"drop what depends on {temps[relname]}, then DROP MATERIALIZED VIEW {temps[relname]}",
            ) from None
        dropped.append(str(temps[relname]))
    return dropped


def rebuild(
    conn: psycopg.Connection,
    definition: MatViewDefinition,
    state: MatViewState,
    *,
    lock_policy: LockPolicy,
    log: StatementLog,
    query: str | None = None,
    indexes: Literal["copy", "declared"] = "copy",
    drop_indexes: Collection[str] = (),
    definitions: Mapping[str, MatViewDefinition] | None = None,
    what: str = "a rebuild",
    readers: ReaderWatcher | None = None,
    waits: ReaderWaits | None = None,
) -> Rebuilt:
    """Rebuild the view with ``query`` (None: the definition's, bound with its search path).

    The new copy is created empty, given to the view's owner and populated by ``REFRESH``, so
    its query runs with the owner's rights and restrictions, as a regular refresh's does
    (``owner_rights``); a role that cannot act for the owner is refused (``what`` names the
    operation in that message) and nothing changes.

    ``indexes="copy"`` copies every index as it is (a failure names the index);
    ``"declared"`` builds the definition's indexes (keeping the names of those that exist),
    drops ``drop_indexes`` (declared before, not any more) and copies the others, except those
    whose columns are gone, which are named in the warnings. A view built on this one that is
    in ``definitions`` (by name) is recreated from its definition. ``readers`` watches the
    sessions that wait on the view while the renaming transaction holds it (into ``waits``).
    Raises ``ServiceError``.
    """
    name = definition.qualified
    new, backup = swap_names(name)  # an interrupted swap's copies were dropped before the operation began
    builds = LockAttempts(conn, lock_policy, what=str(name), oids=[state.oid], pipeline=False)
    swaps = LockAttempts(conn, lock_policy, what=str(name), oids=[state.oid], pipeline=False)
    try:
        for attempt in builds:
            with attempt:
                asked = time.monotonic()  # the lock capture needs (a session refreshing the view holds it), timed
                # ACCESS SHARE, taken when the query is analysed; never scanned, so a view left
                # WITH NO DATA does not raise (LOCK TABLE refuses materialized views)
                conn.execute(sql.SQL("SELECT FROM {} WHERE false").format(name.identifier))
                build_wait_s = time.monotonic() - asked
                result = Rebuilt(rows=0)
                old = carry_over.capture(conn, state.oid)
                bind_search_path(conn, definition)
                build_empty_copy(conn, log, definition, new, query, old.tablespace, old.owner)
                columns = column_names(conn, _oid(conn, new))
                if indexes == "declared":
                    check_declared_columns(definition, columns)
                try:
                    owner_rights.give_to_owner(conn, log, new, old.owner, view=name, what=what)
                except owner_rights.OwnerRightsRefused as exc:
                    raise owner_rights.OwnerRightsRefused(f"{exc}; nothing was changed", hint=exc.hint) from None
                result.warnings += carry_over.restore(conn, log, old, new, columns=set(columns), options=True)
                owner_rights.populate(conn, log, new, view=name, owner=old.owner)  # as the owner, as REFRESH does
                renames = build_indexes(conn, log, definition, old.indexes, new, indexes, set(drop_indexes), result)
                temporary = {final: temp for final, temp, _ in renames}
                if old.clustered_on in temporary:
                    cluster = sql.SQL("ALTER MATERIALIZED VIEW {} CLUSTER ON {}")
                    log.execute(cluster.format(new.identifier, sql.Identifier(temporary[old.clustered_on])))
                result.rows = _rows_built(conn, new, indexed=bool(renames))
        watch = [state.oid, *dependent_oids(conn, state.oid)] if readers is not None else []
        for attempt in swaps:  # readers of the views built on it wait too, while those are recreated
            with watched(readers, conn, watch, waits), attempt:
                asked = time.monotonic()
                built_on = dependents.lock_and_capture(conn, name, state.oid)
                swap_wait_s = time.monotonic() - asked
                for relation in reversed(built_on):
                    dependents.drop(log, relation)
                for statistics, _ in old.statistics:  # they hang on the old copy; made again on the new one
                    log.execute(sql.SQL("DROP STATISTICS {}").format(sql.SQL(statistics)))  # type: ignore[arg-type]
                _rename(log, name, backup.name)
                _rename(log, new, name.name)
                for final, temp, old_name in renames:
                    if old_name:
                        log.execute(_rename_index(name.sibling(final), derived_name(final, "mvold")))
                    log.execute(_rename_index(name.sibling(temp), final))
                _statistics(conn, log, old, result)
                for relation in built_on:
                    result.warnings += dependents.recreate(conn, log, relation, definitions or {})
    except BaseException:
        with contextlib.suppress(ServiceError):  # the original error says what went wrong
            drop_swap_leftovers(conn, name)
        raise
    # the attempts that timed out, then the waits of the ones that won: the build's, the rename's
    table_wait = builds.waited_ms + swaps.waited_ms + seconds_to_ms(build_wait_s + swap_wait_s)
    result.meta.update(lock_attempts=swaps.number, table_lock_wait_ms=table_wait, indexes=[f for f, _, _ in renames])
    if built_on:
        result.meta["recreated_dependents"] = [str(relation) for relation in built_on]
    try:  # readers of the old copy may still hold it: wait once, boundedly, else leave it
        with conn.transaction():
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{lock_policy.timeout_ms}ms",))
            log.execute(sql.SQL("DROP MATERIALIZED VIEW {}").format(backup.identifier))
    except psycopg.Error as exc:
        result.meta["backup_left"] = f"{backup} ({exc.diag.message_primary}); the next operation drops it"
    return result


def _statistics(conn: psycopg.Connection, log: StatementLog, old: carry_over.Relation, result: Rebuilt) -> None:
    """The old copy's statistics objects, made again on the new one; one whose column is gone
    is left out and named in the warnings."""
    for statistics, text in old.statistics:
        try:
            with conn.transaction():
                log.execute(sql.SQL(text))  # type: ignore[arg-type]  # the catalog's own text
        except psycopg.errors.UndefinedColumn as exc:
            result.warnings.append(f"statistics {statistics} not recreated: {describe_db_error(exc)} in the new query")


def swap_refresh(
    conn: psycopg.Connection,
    definition: MatViewDefinition,
    state: MatViewState,
    *,
    row_count_strategy: str,
    lock_policy: LockPolicy,
    log: StatementLog,
    query: str | None = None,
    readers: ReaderWatcher | None = None,
    waits: ReaderWaits | None = None,
) -> ServiceResponse:
    """The swap strategy: rebuild with every index copied, then count rows. ``query``: the
    text to build from instead of the definition's (the deployed one, when a changed
    definition is not to be applied); ``readers``, ``waits``: see ``rebuild``."""
    built = rebuild(
        conn,
        definition,
        state,
        lock_policy=lock_policy,
        log=log,
        query=query,
        what="a swap",
        readers=readers,
        waits=waits,
    )
    meta: dict[str, object] = {"strategy": "swap", "row_count_strategy": row_count_strategy, **built.meta}
    if built.warnings:
        meta["warnings"] = built.warnings
    swapped = matview_state(conn, definition.qualified)
    assert swapped is not None
    rows = count_rows(conn, definition.qualified, swapped.oid, row_count_strategy, known_exact=built.rows)
    return ServiceResponse("updated", payload={"rows_count": rows}, meta=meta)


def build_empty_copy(
    conn: psycopg.Connection,
    log: StatementLog,
    definition: MatViewDefinition,
    new: QualifiedName,
    query: str | None,
    tablespace: str | None,
    owner: str,
) -> None:
    """The new copy, empty (``owner_rights.populate`` fills it as the owner), in the old one's
    tablespace; a role that may not create it is told what a rebuild needs."""
    text = definition.sql if query is None else query.strip().rstrip(";")  # the catalog's text ends its statement
    statement = sql.SQL("CREATE MATERIALIZED VIEW {}{} AS {}\nWITH NO DATA").format(
        new.identifier,
        sql.SQL(" TABLESPACE {}").format(sql.Identifier(tablespace)) if tablespace else sql.SQL(""),
        sql.SQL(text),  # type: ignore[arg-type]
    )
    try:
        with conn.transaction():
            log.execute(statement)
    except psycopg.Error as exc:
        if refused_at_compile_time(exc):
            raise does_not_compile(definition, exc) from None
        if not isinstance(exc, psycopg.errors.InsufficientPrivilege):
            raise
        name = definition.qualified
        _, grants = owner_rights.grants_needed(conn, name.schema, owner)
        raise ServiceError(
            f"a swap builds a new copy of {name} and renames it into place (as does applying a changed "
            f"definition), so the role needs CREATE on schema {name.schema} and to act for its owner {owner}: "
            f"{describe_db_error(exc)}",
            hint=f"{grants}; {owner_rights.IN_PLACE} (they need only ownership of the view, or MAINTAIN on "
            "PostgreSQL 17+)",
        ) from None


def _rows_built(conn: psycopg.Connection, new: QualifiedName, *, indexed: bool) -> int:
    """The new copy's rows: an index build counted every one of them into ``reltuples`` (the
    heap is fresh: no dead rows), else they are counted."""
    if indexed:
        row = conn.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (new.identifier.as_string(conn),))
        found = row.fetchone()
        if found is not None and found[0] >= 0:
            return int(found[0])
    counted = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(new.identifier)).fetchone()
    assert counted is not None
    return int(counted[0])


def _oid(conn: psycopg.Connection, name: QualifiedName) -> int:
    state = matview_state(conn, name)
    assert state is not None
    return state.oid


def _rename(log: StatementLog, name: QualifiedName, to: str) -> None:
    log.execute(sql.SQL("ALTER MATERIALIZED VIEW {} RENAME TO {}").format(name.identifier, sql.Identifier(to)))


def _rename_index(index: QualifiedName, to: str) -> sql.Composed:
    return sql.SQL("ALTER INDEX {} RENAME TO {}").format(index.identifier, sql.Identifier(to))
