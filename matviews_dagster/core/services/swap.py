"""Swap refresh: build a new copy, then rename it into place in one short transaction.

Readers keep reading the old copy while the new one builds; they wait only for the renames
(about a millisecond). The old copy is dropped afterwards in its own transaction, so its
commit cost never sits inside the window readers wait on.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from ..catalog import (
    IndexInfo,
    MatViewState,
    comments,
    dependent_relations,
    described,
    indexes,
    matview_state,
    privileges,
)
from ..definition import MatViewDefinition
from ..names import QualifiedName, derived_name
from .binding import bind_search_path, create_statement
from .indexes import retarget_index
from .locking import LockPolicy, with_lock_retries
from .response import ServiceError, ServiceResponse, StatementLog, describe_db_error
from .row_count import count_rows

_PRIVILEGES = {
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
    "MAINTAIN",
}


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
        conn.execute(sql.SQL("DROP MATERIALIZED VIEW IF EXISTS {}").format(temps[relname].identifier))
        dropped.append(str(temps[relname]))
    return dropped


def _refuse_dependents(conn: psycopg.Connection, name: QualifiedName, oid: int) -> None:
    dependents = dependent_relations(conn, oid)
    if dependents:
        raise ServiceError(
            f"cannot swap {name}: built on it: {described(dependents)}",
            hint="refresh it with strategy='regular' or strategy='concurrent': a view other views read "
            "cannot be swapped (they would keep reading the old copy)",
            dependents=[dependent for dependent, _ in dependents],
        )


def _grantee(role: str) -> sql.Composable:
    return sql.SQL("PUBLIC") if role == "PUBLIC" else sql.Identifier(role)


def _copy_attributes(conn: psycopg.Connection, log: StatementLog, old_oid: int, owner: str, new: QualifiedName) -> None:
    """Give the new copy the old view's owner, grants, comment and column comments."""
    new_state = matview_state(conn, new)
    assert new_state is not None
    if new_state.owner != owner:
        log.execute(sql.SQL("ALTER MATERIALIZED VIEW {} OWNER TO {}").format(new.identifier, sql.Identifier(owner)))
    wanted = privileges(conn, old_oid)
    present = privileges(conn, new_state.oid)
    if wanted != present:
        for role in sorted({grantee for grantee, _, _ in present}):
            log.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(new.identifier, _grantee(role)))
        grants: dict[tuple[str, bool], list[str]] = {}
        for role, privilege, grantable in wanted:
            if privilege in _PRIVILEGES:
                grants.setdefault((role, grantable), []).append(privilege)
        for (role, grantable), privileges_ in sorted(grants.items()):
            log.execute(
                sql.SQL("GRANT {} ON {} TO {}{}").format(
                    sql.SQL(", ").join(map(sql.SQL, privileges_)),
                    new.identifier,
                    _grantee(role),
                    sql.SQL(" WITH GRANT OPTION") if grantable else sql.SQL(""),
                )
            )
    table_comment, column_comments = comments(conn, old_oid)
    if table_comment is not None:
        log.execute(sql.SQL("COMMENT ON MATERIALIZED VIEW {} IS {}").format(new.identifier, sql.Literal(table_comment)))
    for column, text in column_comments.items():
        log.execute(
            sql.SQL("COMMENT ON COLUMN {} IS {}").format(
                sql.Identifier(new.schema, new.name, column), sql.Literal(text)
            )
        )


def _build(conn: psycopg.Connection, log: StatementLog, definition: MatViewDefinition, new: QualifiedName) -> int:
    """The new copy, populated; a role that may not create it is told what swap needs."""
    try:
        return log.execute(create_statement(new, definition)).rowcount
    except psycopg.errors.InsufficientPrivilege as exc:
        name = definition.qualified
        raise ServiceError(
            f"swap builds a new copy of {name} and renames it into place, so the role needs CREATE on schema "
            f"{name.schema} and ownership of {name}: {describe_db_error(exc)}",
            hint=f"GRANT CREATE ON SCHEMA {name.schema} to the role, or refresh {name} with strategy='regular' "
            "or strategy='concurrent', which need only ownership of the view (or MAINTAIN on PostgreSQL 17+)",
        ) from None


def _copy_index(
    conn: psycopg.Connection,
    log: StatementLog,
    index: IndexInfo,
    temp_name: str,
    new: QualifiedName,
    name: QualifiedName,
) -> None:
    """Build one of the old view's indexes on the new copy; say which index when it cannot be."""
    try:
        log.execute(sql.SQL(retarget_index(index.definition, temp_name, new)))  # type: ignore[arg-type]
    except psycopg.Error as exc:
        raise ServiceError(
            f"copying index {index.name} of {name} to its new copy failed: {describe_db_error(exc)}; "
            f"the index is {index.definition}",
            hint=f"the query no longer gives the index what it needs: drop it (DROP INDEX {name.schema}.{index.name}) "
            "or keep its columns in the query, then refresh again; the view was left as it was",
            index=index.name,
        ) from None


def swap_refresh(
    conn: psycopg.Connection,
    definition: MatViewDefinition,
    state: MatViewState,
    *,
    row_count_strategy: str,
    lock_policy: LockPolicy,
    log: StatementLog,
) -> ServiceResponse:
    """Build, copy attributes and indexes, rename into place, then drop the old copy."""
    name = definition.qualified
    _refuse_dependents(conn, name, state.oid)
    new, backup = swap_names(name)  # an interrupted swap's copies were dropped before the operation began
    meta: dict[str, object] = {"strategy": "swap", "row_count_strategy": row_count_strategy}
    renames: list[tuple[str, str, str]] = []
    try:
        with conn.transaction():
            bind_search_path(conn, definition)
            rows_built = _build(conn, log, definition, new)
            for index in indexes(conn, state.oid):
                temp_index = derived_name(index.name, "mvnew")
                _copy_index(conn, log, index, temp_index, new, name)
                renames.append((index.name, temp_index, derived_name(index.name, "mvold")))
            _copy_attributes(conn, log, state.oid, state.owner, new)

        def rename() -> None:
            log.execute(
                sql.SQL("ALTER MATERIALIZED VIEW {} RENAME TO {}").format(name.identifier, sql.Identifier(backup.name))
            )
            _refuse_dependents(conn, name, state.oid)
            log.execute(
                sql.SQL("ALTER MATERIALIZED VIEW {} RENAME TO {}").format(new.identifier, sql.Identifier(name.name))
            )
            for index_name, temp_index, old_index in renames:
                log.execute(
                    sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                        sql.Identifier(name.schema, index_name), sql.Identifier(old_index)
                    )
                )
                log.execute(
                    sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                        sql.Identifier(name.schema, temp_index), sql.Identifier(index_name)
                    )
                )

        _, attempts = with_lock_retries(conn, lock_policy, rename, what=str(name), oids=[state.oid])
    except BaseException:
        drop_swap_leftovers(conn, name)
        raise
    meta["lock_attempts"] = attempts
    meta["indexes"] = [index_name for index_name, _, _ in renames]
    try:  # readers of the old copy may still hold it: wait once, boundedly, else leave it
        with conn.transaction():
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{lock_policy.timeout_ms}ms",))
            log.execute(sql.SQL("DROP MATERIALIZED VIEW {}").format(backup.identifier))
    except psycopg.Error as exc:
        meta["backup_left"] = f"{backup} ({exc.diag.message_primary}); the next operation drops it"
    swapped = matview_state(conn, name)
    assert swapped is not None
    rows = count_rows(conn, name, swapped.oid, row_count_strategy, known_exact=rows_built)
    return ServiceResponse("updated", payload={"rows_count": rows}, meta=meta)
