"""A view's query evaluated with its owner's rights and restrictions, as ``REFRESH`` does it.

PostgreSQL's ``REFRESH MATERIALIZED VIEW`` runs the query as the view's owner, inside a
security-restricted operation and, from PostgreSQL 17, with ``search_path`` set to
``pg_catalog, pg_temp``: row-level security policies, column privileges and anything keyed on
``current_user`` see the owner, whoever connected. Every other statement that evaluates a view's
query on its behalf goes through here, so it sees exactly what ``REFRESH`` would:

- a rebuild's new copy (swap, forced create, apply) is created ``WITH NO DATA``, given to the
  owner, then populated by ``REFRESH`` (``populate``);
- a check that must read the query's rows (the concurrent refresh's NULL-duplicate check,
  ``validate``) reads them directly when the connecting role is the owner, and otherwise from a
  scratch materialized view given to the owner and refreshed (``owner_scratch``), inside a
  transaction the caller rolls back.

``SET ROLE`` is not used: a function the query calls could ``RESET ROLE`` and act with the
connecting role's rights, the escape PostgreSQL closed for maintenance commands by running them
security-restricted (CVE-2022-1552). A role that cannot give a relation to the owner (not a
member of the owner role, or the owner lacks ``CREATE`` on the schema) gets ``OwnerRightsRefused``
and nothing is changed.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from ..names import QualifiedName, derived_name
from .response import ServiceError, describe_db_error
from .statement_log import StatementLog


class OwnerRightsRefused(ServiceError):
    """The connecting role cannot act with the view owner's rights (``meta["owner"]``)."""


def give_to_owner(
    conn: psycopg.Connection, log: StatementLog, target: QualifiedName, owner: str, *, view: QualifiedName, what: str
) -> None:
    """``ALTER MATERIALIZED VIEW target OWNER TO owner`` unless ``owner`` already owns it.

    ``what`` names the operation for the refusal (``a swap``, ``validate``); raises
    ``OwnerRightsRefused`` when the role may not give it to ``owner`` (PostgreSQL: the role must
    be able to ``SET ROLE`` to the owner, and the owner needs ``CREATE`` on the schema).
    """
    row = conn.execute(
        "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = %s::regclass",
        (target.identifier.as_string(conn),),
    ).fetchone()
    assert row is not None
    if row[0] == owner:
        return
    try:
        with conn.transaction():
            statement = sql.SQL("ALTER MATERIALIZED VIEW {} OWNER TO {}")
            log.execute(statement.format(target.identifier, sql.Identifier(owner)))
    except psycopg.errors.InsufficientPrivilege as exc:
        raise refused(conn, view, owner, what, describe_db_error(exc)) from None


def grants_needed(conn: psycopg.Connection, schema: str, owner: str) -> tuple[str, str]:
    """``(role, fix)``: the connecting role, and how it may act for ``owner`` in ``schema`` (give a
    relation there to it): the grants that are missing, read from the catalog, or, for an owner
    that is a superuser (never advise granting one), the only way there is."""
    row = conn.execute(
        """SELECT current_user, NOT has_schema_privilege(current_user, %(schema)s, 'CREATE'),
                  NOT pg_has_role(current_user, %(owner)s, 'MEMBER'),
                  NOT has_schema_privilege(%(owner)s, %(schema)s, 'CREATE'),
                  (SELECT rolsuper FROM pg_roles WHERE rolname = %(owner)s)""",
        {"schema": schema, "owner": owner},
    ).fetchone()
    assert row is not None
    role, role_cannot_create, not_member, owner_cannot_create, owner_is_superuser = row
    quoted = {name: sql.Identifier(name).as_string(conn) for name in (schema, role, owner)}
    if owner_is_superuser and not_member:
        return role, f"connect as {owner} or another superuser, or give the view to a role that is not a superuser"
    fixes = []
    if role_cannot_create:
        fixes.append(f"GRANT CREATE ON SCHEMA {quoted[schema]} TO {quoted[role]}")
    if not_member:
        fixes.append(f"GRANT {quoted[owner]} TO {quoted[role]}")
    if owner_cannot_create:
        fixes.append(f"GRANT CREATE ON SCHEMA {quoted[schema]} TO {quoted[owner]}")
    return role, f"connect as {owner}" + (f", or {' and '.join(fixes)}" if fixes else "")


IN_PLACE = "or refresh with strategy='regular' or strategy='concurrent', which run the query as the owner in place"


def refused(conn: psycopg.Connection, view: QualifiedName, owner: str, what: str, cause: str) -> OwnerRightsRefused:
    """The one-line refusal: why the owner's rights are needed, the database's reason, and the
    grants that are missing."""
    role, hint = grants_needed(conn, view.schema, owner)
    if what == "a swap":
        hint += f"; {IN_PLACE}"
    return OwnerRightsRefused(
        f"{what} evaluates the query of {view} with the rights of its owner {owner}, as REFRESH does (row "
        f"security and privileges apply as they do to {owner}), and role {role} cannot act for {owner}: {cause}",
        hint=hint,
        owner=owner,
    )


def populate(
    conn: psycopg.Connection, log: StatementLog, target: QualifiedName, *, view: QualifiedName, owner: str
) -> None:
    """``REFRESH MATERIALIZED VIEW target``: its query runs as its owner, security-restricted. A
    privilege the owner lacks raises ``owner_lacks``."""
    try:
        with conn.transaction():
            log.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(target.identifier))
    except psycopg.errors.InsufficientPrivilege as exc:
        raise owner_lacks(view, owner, exc) from None


def owner_lacks(view: QualifiedName, owner: str, exc: psycopg.Error) -> ServiceError:
    """The query of ``view`` was refused a privilege while it ran as the view's ``owner`` (as
    ``REFRESH`` runs it): the owner is the role that needs the grant, whoever connected."""
    return ServiceError(
        f"{describe_db_error(exc)}: the query of {view} runs as its owner {owner}, as REFRESH runs it, and "
        f"{owner} lacks that privilege",
        hint=f"grant it to {owner} (e.g. GRANT SELECT ON the table the error names TO {owner}), or give the view "
        "to a role that has it",
    )


def owner_scratch(
    conn: psycopg.Connection,
    log: StatementLog,
    view: QualifiedName,
    owner: str,
    query: sql.Composable,
    *,
    what: str,
    suffix: str = "mvcheck",
) -> QualifiedName:
    """A scratch materialized view beside ``view`` holding ``query``'s rows as ``owner`` sees
    them (created empty, given to ``owner``, populated by ``REFRESH``); returns its name.

    Call it inside a transaction that is rolled back (or drop the scratch view): it is never
    meant to outlive the check. Raises ``OwnerRightsRefused`` (see ``give_to_owner``), or a
    ``ServiceError`` when the role may not create in the view's schema.
    """
    scratch = view.sibling(derived_name(view.name, suffix))
    try:
        with conn.transaction():
            log.execute(sql.SQL("CREATE MATERIALIZED VIEW {} AS {}\nWITH NO DATA").format(scratch.identifier, query))
    except psycopg.errors.InsufficientPrivilege as exc:
        raise refused(conn, view, owner, what, describe_db_error(exc)) from None
    give_to_owner(conn, log, scratch, owner, view=view, what=what)
    populate(conn, log, scratch, view=view, owner=owner)
    return scratch
