"""Privileges a rebuild carries over: table and column grants, each given again by the role that
gave it (its grantor), so ``REVOKE ... CASCADE`` keeps working on the new copy as on the old.

A grant by the owner is given as the owner; a grant by another role (one that holds the
privilege ``WITH GRANT OPTION``) is given under ``SET LOCAL ROLE`` to that role, which needs
the connecting role to be a member of it (a superuser is). When that cannot be, the grant is
given by the owner and a warning says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..names import QualifiedName
from .statement_log import StatementLog

PRIVILEGES = {"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "MAINTAIN"}

ACL = """
    SELECT NULL::name, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END,
           a.privilege_type, a.is_grantable, pg_get_userbyid(a.grantor)
    FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a WHERE c.oid = %(oid)s
    UNION ALL
    SELECT t.attname, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END,
           a.privilege_type, a.is_grantable, pg_get_userbyid(a.grantor)
    FROM pg_attribute t, aclexplode(t.attacl) a
    WHERE t.attrelid = %(oid)s AND t.attnum > 0 AND NOT t.attisdropped AND t.attacl IS NOT NULL
    ORDER BY 1 NULLS FIRST, 2, 3
"""


@dataclass(frozen=True)
class Grant:
    """One privilege: ``column`` None for the whole relation; grantee ``PUBLIC`` for public."""

    grantee: str
    privilege: str
    grantable: bool
    grantor: str
    column: str | None = None


def grants_of(conn: psycopg.Connection, oid: int) -> list[Grant]:
    """The relation's effective grants (its default ones when it has no ACL)."""
    rows = conn.execute(ACL, {"oid": oid}).fetchall()
    return [Grant(grantee, privilege, option, grantor, column) for column, grantee, privilege, option, grantor in rows]


def restore_grants(
    conn: psycopg.Connection,
    log: StatementLog,
    grants: tuple[Grant, ...],
    owner: str,
    target: QualifiedName,
    oid: int,
    columns: set[str] | None,
) -> list[str]:
    """Give ``target`` (relation ``oid``, owned by ``owner`` already) exactly ``grants``;
    nothing is executed when it has them. Returns warnings: a column grant whose column is
    gone, a grant given by the owner instead of its grantor."""
    warnings: list[str] = []
    wanted = []
    for grant in grants:
        if grant.privilege not in PRIVILEGES:
            continue
        if grant.column is not None and columns is not None and grant.column not in columns:
            what = f"{grant.privilege} ({grant.column}) for {grant.grantee}"
            warnings.append(f"grant {what} not kept: no column {grant.column} in the new query")
            continue
        wanted.append(grant)
    if set(wanted) == set(grants_of(conn, oid)):
        return warnings
    for role in sorted({grant.grantee for grant in grants_of(conn, oid) if grant.column is None}):
        log.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(target.identifier, _grantee(role)))
    pending = [grant for grant in wanted if grant.grantor == owner] + [g for g in wanted if g.grantor != owner]
    for _ in range(len(pending) + 1):  # a grantor may need a grant option given earlier in the list
        failed = [grant for grant in pending if not _grant(conn, log, grant, target, owner)]
        if len(failed) == len(pending):
            break
        pending = failed
    for grant in pending:  # no way to give it as its grantor: the owner gives it
        _execute(log, grant, target)
        warnings.append(f"grant of {grant.privilege} to {grant.grantee} by {grant.grantor} given by {owner} instead")
    return warnings


def _grant(conn: psycopg.Connection, log: StatementLog, grant: Grant, target: QualifiedName, owner: str) -> bool:
    """Give one grant as its grantor; False when that role cannot (not a member, no option yet)."""
    if grant.grantor == owner:
        _execute(log, grant, target)
        return True
    try:
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(grant.grantor)))
            _execute(log, grant, target)
            conn.execute("RESET ROLE")
        return True
    except (psycopg.errors.InsufficientPrivilege, psycopg.errors.InvalidGrantOperation):
        return False


def _execute(log: StatementLog, grant: Grant, target: QualifiedName) -> None:
    privilege = sql.SQL(grant.privilege)
    on = sql.SQL("{} ({})").format(privilege, sql.Identifier(grant.column)) if grant.column else privilege
    option = sql.SQL(" WITH GRANT OPTION") if grant.grantable else sql.SQL("")
    log.execute(sql.SQL("GRANT {} ON {} TO {}{}").format(on, target.identifier, _grantee(grant.grantee), option))


def _grantee(role: str) -> sql.Composable:
    return sql.SQL("PUBLIC") if role == "PUBLIC" else sql.Identifier(role)
