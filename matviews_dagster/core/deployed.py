"""What the deployed view is: its identity (oid, a digest of its stored query) and
the query Postgres stores for it, read from the catalog."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from .names import QualifiedName


def query_digest(tree: str, oid: str) -> str:
    """SQL for a digest of a view's stored query: ``tree`` is its ``_RETURN`` rule's
    ``ev_action`` as text, ``oid`` the view's. Read from the catalog, so it takes no lock on the
    view (``pg_get_viewdef`` does, and waits behind any session refreshing it). The view's own
    oid and the token positions in the text it was created from are left out: a swap, which
    builds a copy of the same query under another name, keeps the digest; a view re-created
    with another query, or reading other relations, changes it."""
    return (
        f"md5(regexp_replace(replace({tree}, ':relid ' || ({oid})::oid || ' ', ':relid 0 '), "
        "':(location|stmt_location|stmt_len) -?[0-9]+', '', 'g'))"
    )


@dataclass(frozen=True)
class DeployedIdentity:
    """Who the deployed materialized view is: its ``oid``, the digest of its stored query
    (``query_digest``)."""

    oid: int
    query: str


def deployed_identity(conn: psycopg.Connection, name: QualifiedName) -> DeployedIdentity | None:
    """The identity of the materialized view ``name`` in one catalog read that takes no lock,
    None when there is none."""
    row = conn.execute(
        f"""SELECT c.oid, {query_digest("r.ev_action::text", "c.oid")}
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_rewrite r ON r.ev_class = c.oid AND r.rulename = '_RETURN'
           WHERE n.nspname = %s AND c.relname = %s AND c.relkind = 'm'""",
        (name.schema, name.name),
    ).fetchone()
    return DeployedIdentity(int(row[0]), str(row[1])) if row else None


def deployed_definition(conn: psycopg.Connection, name: QualifiedName) -> str | None:
    """The query Postgres stores for the view (``pg_matviews.definition``), normalized."""
    row = conn.execute(
        "SELECT definition FROM pg_matviews WHERE schemaname = %s AND matviewname = %s",
        (name.schema, name.name),
    ).fetchone()
    return row[0] if row else None
