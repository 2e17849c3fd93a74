"""The strategy advisor: where another refresh strategy (or none) would serve a view better,
read from its run history (``RunHistory.recent_refreshes``: what each refresh cost and whom it
blocked, ``core/costs.py``, ``core/reader_waits.py``) and a few catalog facts (its usable
unique index, the materialized views built on it, the disk left where it lives).

It speaks only after ``MIN_RUNS`` successful refreshes with the view's current strategy (and
not at all for a view with ``strategy_advice: off``, or one not deployed), and each piece of
advice names its evidence (run ids, medians, waits), the expected effect and the one change to
make. The rules are in ``core/advice_rules.py``; the measurements behind their effects in
``docs/strategies.md``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import psycopg

from .advice_rules import MIN_RUNS, RULES, Advice, Facts, Runs
from .catalog import dependent_relations, usable_unique_index
from .definition import MatViewDefinition


def read_facts(conn: psycopg.Connection, definitions: Sequence[MatViewDefinition]) -> dict[str, Facts]:
    """``Facts`` of each deployed view of ``definitions`` (missing ones are left out), in one
    catalog query, and per view what its strategy's rules read (the unique index of a regular or
    swap view, the views built on a regular one)."""
    rows = conn.execute(
        """SELECT c.oid, CASE WHEN t.spcname IN ('pg_default', 'pg_global') THEN
                    (SELECT setting FROM pg_settings WHERE name = 'data_directory')
                  ELSE pg_tablespace_location(t.oid) END AS location, v.name
           FROM unnest(%s::text[]) AS v(name)
           JOIN pg_class c ON c.oid = to_regclass(v.name) AND c.relkind = 'm'
           JOIN pg_database d ON d.datname = current_database()
           JOIN pg_tablespace t ON t.oid = coalesce(nullif(c.reltablespace, 0), d.dattablespace)""",
        ([definition.qualified.identifier.as_string(conn) for definition in definitions],),
    ).fetchall()
    by_name = {definition.qualified.identifier.as_string(conn): definition for definition in definitions}
    local = _server_is_local(conn)
    found: dict[str, Facts] = {}
    for oid, location, name in rows:
        free = shutil.disk_usage(location).free if local and location and os.path.isdir(location) else None
        strategy = by_name[name].refresh_strategy  # what the rules of its strategy read (advice_rules)
        unique = usable_unique_index(conn, oid) if strategy in ("regular", "swap") else None
        built_on = () if strategy != "regular" else dependent_relations(conn, oid)
        materialized = tuple(relation for relation, kind in built_on if kind == "materialized view")
        found[by_name[name].name] = Facts(unique, materialized, free, location if free is not None else None)
    return found


def advise(
    definitions: Sequence[MatViewDefinition],
    history: Mapping[str, list[dict[str, Any]]],
    facts: Mapping[str, Facts],
) -> list[Advice]:
    """The advice for each of ``definitions`` from its recent successful refreshes (newest
    first, ``RunHistory.recent_refreshes``) and its ``facts`` (a view without facts is not
    deployed: nothing is said of it); empty where none applies."""
    found: list[Advice] = []
    for definition in definitions:
        if definition.name in facts:
            found += advise_view(definition, history.get(definition.name, []), facts[definition.name])
    return found


def advise_view(definition: MatViewDefinition, runs: list[dict[str, Any]], facts: Facts) -> list[Advice]:
    """The advice for one view (``core/advice_rules.py``)."""
    current = definition.refresh_strategy
    own = Runs([row for row in runs if row.get("strategy") == current])
    if len(own.rows) < MIN_RUNS or definition.strategy_advice == "off":
        return []
    found = [rule(definition.name, str(current), own, facts) for rule in RULES]
    return [_with_measured(advice, runs, own) for advice in found if advice is not None]


def _with_measured(advice: Advice, runs: list[dict[str, Any]], own: Runs) -> Advice:
    """Advice for a strategy the view has also been refreshed with (before a change, or by
    ``refresh --strategy``) cites those runs beside its own."""
    other = Runs([row for row in runs if row.get("strategy") == advice.recommended != advice.current])
    then, now = other.median("duration_ms"), own.median("duration_ms")
    if then is None or now is None:
        return advice
    evidence = {**advice.evidence, f"{advice.recommended}_runs": other.ids(), f"{advice.recommended}_median_ms": then}
    reason = f"{advice.reason}; its {len(other.rows)} {advice.recommended} refreshes took {then} ms (median)"
    reason += f" against {now} ms"
    return replace(advice, evidence=evidence, reason=reason)


def _server_is_local(conn: psycopg.Connection) -> bool:
    host = conn.info.host or ""
    return host.startswith("/") or host in ("", "localhost", "127.0.0.1", "::1")
