"""What a view read, as versions from Postgres's own counters: did any source change since?

A source relation's version is ``relfilenode:inserted:updated:deleted:epoch`` from
``pg_class`` and ``pg_stat_all_tables``: an ``INSERT``, ``UPDATE`` or ``DELETE`` moves the
counters; ``TRUNCATE``, ``VACUUM FULL``, ``CLUSTER`` and a regular or swap refresh of an upstream
view give the relation a new file node. The sources are the deployed view's own dependencies
in ``pg_depend`` (what Postgres resolved, whatever the search path), plus the definition's
declared ``dependencies``.

Doubt counts as changed, so a refresh that was needed is never skipped: a source that is not a
table or materialized view (a plain view, a foreign or partitioned table), a query that calls a
function outside ``pg_catalog`` (directly or through an operator), a volatile function or the
clock, a table without counters (all zero: never written, counters reset or ``track_counts``
off), counters of another epoch, an unpopulated view, or a changed definition. Tables
inheriting from a source are sources too. A materialized view read by another is known by its
file node, which each regular or swap refresh changes (a concurrent refresh moves its counters
instead). A rolled-back write still moves the counters: the next check sees a change and
refreshes once, needlessly but safely.

What it trusts: that the counters only grow within one epoch (``_EPOCH``: the server's start
time, the time PostgreSQL last reset its fixed statistics, which it does when it discards every
counter after a crash, and the time this database's counters were reset). Counters can go back
to zero by a crash restart (``pg_ctl -m immediate``, a backend killed), ``pg_stat_reset()``, a
single table's reset, a failover or a restore; each changes the epoch, so after as many new
writes as before the versions still differ and the view is refreshed. A clean restart keeps the
counters but changes the epoch too: one needless refresh per view, never a stale one.

The counters are the cumulative statistics system's: a committed write reaches them when its
session flushes its statistics, about a second after the commit on PostgreSQL 15+ (at most 60
s when the statistics lock is contended). A write committed in that window before a check is
not seen by that check; the next one sees it. A refresh flushes its own session's statistics
at once, so the views refreshed after it in the same batch read settled versions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import psycopg

from .deployed import query_digest

if TYPE_CHECKING:
    from .database import Database
    from .definition import MatViewDefinition
    from .graph import ViewGraph

_EPOCH = """concat_ws(' / ', pg_postmaster_start_time(), (SELECT stats_reset FROM pg_stat_archiver),
                  (SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()))"""
"""The counters' epoch: when the server started (a restart, a failover to another server, a
restore), when the fixed statistics were last reset (PostgreSQL resets them, with the
timestamp, when it discards every counter after a crash, which keeps the start time) and when
this database's counters were (``pg_stat_reset``, ``pg_stat_reset_single_table_counters``).
Part of every version: counters of another epoch prove nothing."""

_COUNTERS = """pg_stat_get_tuples_inserted(c.oid) AS n_tup_ins, pg_stat_get_tuples_updated(c.oid) AS n_tup_upd,
               pg_stat_get_tuples_deleted(c.oid) AS n_tup_del"""
"""A relation's counters, read by oid (what ``pg_stat_all_tables`` shows as ``n_tup_*``; joining
that view instead costs a scan of every relation in the database per query)."""

_ACCESS = """md5(concat_ws('|', c.relacl::text, c.relrowsecurity, c.relforcerowsecurity,
        (SELECT string_agg(a.attnum || '=' || a.attacl::text, ',' ORDER BY a.attnum)
         FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attacl IS NOT NULL),
        (SELECT string_agg(p.oid || '.' || p.xmin, ',' ORDER BY p.oid) FROM pg_policy p WHERE p.polrelid = c.oid)))
        AS access"""
"""What decides which of a relation's rows and columns the view's owner may read: its grants
(table and column), whether row-level security is on (and forced), and its policies (each
``ALTER POLICY`` gives the row a new ``xmin``). A change is a change of the relation."""

_OWNER_ROLES = """(SELECT md5(string_agg(r.oid::text, ',' ORDER BY r.oid)) FROM pg_roles r, view
        WHERE pg_has_role((SELECT relowner FROM pg_class WHERE oid = view.oid), r.oid, 'MEMBER'))"""
"""The roles the view's owner is a member of: granting or revoking one changes what the owner,
and so the view, may see."""

_QUERY = (
    """
WITH RECURSIVE view AS (SELECT %(view)s::regclass AS oid),
rule_deps AS (
    SELECT d.refclassid, d.refobjid
    FROM pg_depend d JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid, view
    WHERE r.ev_class = view.oid
),
direct AS (
    SELECT refobjid AS oid FROM rule_deps, view WHERE refclassid = 'pg_class'::regclass AND refobjid <> view.oid
    UNION
    SELECT to_regclass(name) FROM unnest(%(declared)s::text[]) AS name
),
sources(oid) AS (  -- and every table that inherits from one (pg_depend names the parent only)
    SELECT oid FROM direct
    UNION
    SELECT i.inhrelid FROM pg_inherits i JOIN sources ON i.inhparent = sources.oid
),
rule AS (SELECT r.ev_action::text AS tree FROM pg_rewrite r, view WHERE r.ev_class = view.oid),
called AS (  -- every function the stored query calls: directly, through an operator, an aggregate, a window
    SELECT DISTINCT m[1]::oid AS oid
    FROM rule, regexp_matches(rule.tree, ':(?:funcid|opfuncid|aggfnoid|winfnoid) ([0-9]+)', 'g') AS m
),
doubts AS (
    SELECT count(*) FILTER (
               WHERE p.pronamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
                  OR p.provolatile = 'v'
                  OR p.proname IN ('now', 'statement_timestamp', 'transaction_timestamp', 'clock_timestamp',
                                   'timeofday', 'age', 'current_setting', 'txid_current', 'pg_current_xact_id'))
           -- CURRENT_DATE, CURRENT_TIMESTAMP, LOCALTIME, ... are no function calls in the tree
           + CASE WHEN (SELECT tree FROM rule) LIKE '%%{SQLVALUEFUNCTION %%' THEN 1 ELSE 0 END AS n
    FROM called JOIN pg_proc p ON p.oid = called.oid
)
SELECT r.relation, r.relkind, r.relfilenode, r.n_tup_ins, r.n_tup_upd, r.n_tup_del, r.access, doubts.n AS doubts,
       (SELECT relispopulated FROM pg_class WHERE oid = (SELECT oid FROM view)) AS populated,
       {epoch} AS epoch, (SELECT {digest} FROM rule, view) AS view_query, {owner_roles} AS owner_roles
FROM doubts LEFT JOIN (
    SELECT n.nspname || '.' || c.relname AS relation, c.relkind, c.relfilenode, {counters}, {access}
    FROM sources JOIN pg_class c ON c.oid = sources.oid JOIN pg_namespace n ON n.oid = c.relnamespace
) r ON true
ORDER BY 1
""".replace("{epoch}", _EPOCH)
    .replace("{counters}", _COUNTERS)
    .replace("{access}", _ACCESS)
    .replace("{owner_roles}", _OWNER_ROLES)
    .replace("{digest}", query_digest("rule.tree", "view.oid"))
)


def source_versions(conn: psycopg.Connection, view: str, declared: Sequence[str] = ()) -> dict[str, Any]:
    """``{"relations": {relation: version or None}, "functions": n, "populated": bool, "query":
    digest}`` for the deployed view ``view`` (``schema.name``; the digest of its stored query);
    ``declared`` are the definition's extra ``dependencies``. One catalog query, no table
    scanned. A relation's version is ``None`` when it cannot be known."""
    quoted = ".".join(f'"{part}"' for part in view.split(".", 1))  # regclass input: quoted identifiers
    rows = conn.execute(_QUERY, {"view": quoted, "declared": list(declared)}).fetchall()
    relations: dict[str, str | None] = {}
    doubts, populated = 0, False
    query = owner_roles = None
    for relation, kind, node, ins, upd, dele, access, doubt, is_populated, epoch, stored, roles in rows:
        doubts, populated, query, owner_roles = int(doubt or 0), bool(is_populated), stored, roles
        if relation is not None:  # none: the view reads no relation (a function or constants only)
            relations[relation] = _version(kind, node, (ins, upd, dele), f"{epoch}:{access}")
    return {
        "relations": relations,
        "functions": doubts,
        "populated": populated,
        "query": query,
        "owner_roles": owner_roles,
    }


_RELATIONS = (
    """
WITH RECURSIVE named AS (
    SELECT r.name, to_regclass(r.quoted) AS root FROM unnest(%s::text[], %s::text[]) AS r(name, quoted)
),
tree(name, oid) AS (  -- each relation and every table that inherits from it
    SELECT name, root FROM named WHERE root IS NOT NULL
    UNION
    SELECT tree.name, i.inhrelid FROM pg_inherits i JOIN tree ON i.inhparent = tree.oid
)
SELECT named.name, c.relkind, c.relfilenode, {counters}, {access}, {epoch}
FROM named LEFT JOIN tree ON tree.name = named.name LEFT JOIN pg_class c ON c.oid = tree.oid
ORDER BY named.name, c.oid
""".replace("{epoch}", _EPOCH)
    .replace("{counters}", _COUNTERS)
    .replace("{access}", _ACCESS)
)


def relation_versions(conn: psycopg.Connection, relations: Sequence[str]) -> dict[str, str | None]:
    """``{relation: version or None}`` of relations named ``schema.name`` (a missing one is
    ``None``; a table with children is versioned with them): what a Dagster observation of
    the source tables reports as their data versions."""
    quoted = [".".join(f'"{part}"' for part in name.split(".", 1)) for name in relations]
    members: dict[str, list[str | None]] = {}
    for name, kind, node, ins, upd, dele, access, epoch in conn.execute(_RELATIONS, (list(relations), quoted)):
        members.setdefault(name, []).append(_version(kind, node, (ins, upd, dele), f"{epoch}:{access}"))
    return {name: None if None in found else ";".join(v for v in found if v) for name, found in members.items()}


def _version(kind: str | None, filenode: int | None, counters: tuple[Any, Any, Any], epoch: str) -> str | None:
    """``epoch`` is the counters' epoch and the relation's access (``_EPOCH``, ``_ACCESS``). A
    table never written (or whose counters were reset) cannot be told from an unchanged one:
    ``None``; a materialized view's refreshes give it a new file node (concurrent ones move
    its counters); anything else (a plain view, a foreign table) is ``None``."""
    if counters[0] is None or kind not in ("r", "m"):
        return None
    ins, upd, dele = (int(c or 0) for c in counters)
    if kind == "r" and not (ins or upd or dele):
        return None
    return f"{filenode}:{ins}:{upd}:{dele}:{epoch}"


def unchanged(current: Mapping[str, Any] | None, previous: Mapping[str, Any] | None) -> bool:
    """Whether every source is known now and had the same version at the previous refresh:
    only then may a refresh be skipped."""
    if not current or not previous or current.get("functions") or previous.get("functions"):
        return False
    if not current.get("populated") or current.get("definition") != previous.get("definition"):
        return False  # an unpopulated view, or a changed definition (its policy applies on refresh)
    if current.get("owner_roles") != previous.get("owner_roles"):
        return False  # the owner gained or lost a role: what it may see changed
    if current.get("query") is None or current.get("query") != previous.get("query"):
        return False  # re-created with another query since (by another tool): compared on refresh
    now, then = current.get("relations") or {}, previous.get("relations") or {}
    if not now or any(version is None for version in now.values()):
        return False
    return now == then


def flush_statistics(conn: psycopg.Connection) -> None:
    """Make this session's pending statistics (a refresh's row counts) reach the shared counters
    before its next statement returns (``pg_stat_force_next_flush``, PostgreSQL 15+), so the
    views refreshed after it read settled versions; nothing on older servers or on error."""
    if conn.info.server_version >= 150000 and not conn.closed:
        with contextlib.suppress(psycopg.Error):
            conn.execute("SELECT pg_stat_force_next_flush()")


def read_versions(conn: psycopg.Connection, definition: MatViewDefinition) -> dict[str, Any] | None:
    """``source_versions`` of a defined view, ``None`` when they cannot be read (no view yet,
    no privilege on the catalog): read before a refresh, so a write committed meanwhile
    counts as a change at the next check."""
    try:
        versions = source_versions(conn, definition.name, definition.dependencies)
    except psycopg.Error:
        return None
    stored = json.dumps(definition.stored_fields(), sort_keys=True)
    versions["definition"] = hashlib.sha256(stored.encode()).hexdigest()[:16]
    return versions


class SourceGate:
    """For one ``refresh --if-changed`` batch: which views may be skipped. A view is skipped
    when its sources are ``unchanged`` since its newest successful refresh that recorded them
    and no upstream view in the batch was refreshed (the counters of a view refreshed a moment
    ago may not show it yet). Thread-safe: the batch's workers share one gate."""

    def __init__(self, db: Database, graph: ViewGraph, names: Sequence[str]) -> None:
        self.db, self.runs, self.graph, self.names = db, db.runs, graph, list(names)
        self._previous: dict[str, Any] | None = None
        self._refreshed: set[str] = set()
        self._lock = threading.Lock()

    def unchanged(self, definition: MatViewDefinition, conn: psycopg.Connection) -> bool:
        with self._lock:
            if self._refreshed.intersection(self.graph.upstream(definition.name)):
                self._refreshed.add(definition.name)
                return False
            if self._previous is None:  # read once, by the first worker
                database = self.db.name_of(conn)
                self._previous = self.runs.last_source_versions(database_name=database, view_names=self.names)
            previous = self._previous.get(definition.name)
        if unchanged(read_versions(conn, definition), previous):
            return True
        with self._lock:
            self._refreshed.add(definition.name)
        return False
