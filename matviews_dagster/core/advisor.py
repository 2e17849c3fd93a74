"""The strategy advisor: where another refresh strategy (or none) would serve a view better,
read from its run history (``RunHistory.recent_refreshes``: what each refresh cost and whom it
blocked, ``core/costs.py``, ``core/reader_waits.py``) and two catalog facts (its usable unique
index, the disk left where it lives).

It speaks only after ``MIN_RUNS`` successful refreshes with the view's current strategy, and each
piece of advice names its evidence (run ids, medians, waits), the expected effect and the one
change to make. The rules, and the measurements behind their effects, are in
``docs/strategies.md``:

- ``regular`` whose refreshes blocked readers: ``swap`` (same cost, readers wait milliseconds);
- ``concurrent`` whose refreshes replace most rows (``rows_changed`` / rows at least
  ``MOST_ROWS``): ``swap`` (one pass instead of a diff);
- ``swap`` whose copy would not fit twice in the disk left (free space under twice its size,
  read only when the server's files are on this machine): ``concurrent`` where a usable unique
  index exists (never without one), else ``regular``;
- a view refreshed more often than its sources change (the source versions each refresh
  recorded): refresh it only when they change;
- a view read less than once between refreshes (``pg_stat_all_tables`` scans between them):
  each refresh costs more than running its query when read would, so a plain view serves.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from statistics import median
from typing import Any

import psycopg

from .catalog import usable_unique_index
from .definition import MatViewDefinition
from .source_versions import unchanged

MIN_RUNS = 3
"""Successful refreshes with the current strategy before the advisor speaks."""
MOST_ROWS = 0.5
"""The share of rows a concurrent refresh changes above which a swap writes less."""


@dataclass(frozen=True)
class Advice:
    """One piece of advice: ``recommended`` is a strategy, or ``"view"`` (a plain view) or the
    current one (refresh less often); ``evidence`` holds the figures (run ids, medians in ms,
    bytes, rows); ``change`` is the one line to change."""

    view: str
    current: str
    recommended: str
    reason: str
    evidence: dict[str, Any]
    effect: str
    change: str

    def to_dict(self) -> dict[str, Any]:
        """The ``matviews advise --json`` shape: ``view, current, recommended, reason, evidence,
        effect, change``."""
        return asdict(self)


@dataclass(frozen=True)
class Facts:
    """What the catalog says of a deployed view: its usable unique index (read for ``swap``
    views only: the one rule that may recommend ``concurrent``), and the bytes free on the disk
    of its tablespace (``None`` when the server's files are not on this machine, or the role may
    not see where they are)."""

    unique_index: str | None = None
    free_bytes: int | None = None
    location: str | None = None


@dataclass
class _Runs:
    rows: list[dict[str, Any]] = field(default_factory=list)

    def ids(self) -> list[int]:
        return [int(row["id"]) for row in self.rows]

    def median(self, column: str) -> int | None:
        values = [row[column] for row in self.rows if row.get(column) is not None]
        return int(median(values)) if values else None


def read_facts(conn: psycopg.Connection, definitions: Sequence[MatViewDefinition]) -> dict[str, Facts]:
    """``Facts`` of each deployed view of ``definitions`` (missing ones are left out), in one
    catalog query (and one more per ``swap`` view, for its unique index)."""
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
        definition = by_name[name]
        free = shutil.disk_usage(location).free if local and location and os.path.isdir(location) else None
        unique = usable_unique_index(conn, oid) if definition.refresh_strategy == "swap" else None
        found[definition.name] = Facts(unique, free, location if free is not None else None)
    return found


def advise(
    definitions: Sequence[MatViewDefinition],
    history: Mapping[str, list[dict[str, Any]]],
    facts: Mapping[str, Facts],
) -> list[Advice]:
    """The advice for each of ``definitions`` from its recent successful refreshes (newest
    first, ``RunHistory.recent_refreshes``) and its ``facts``; empty where none applies."""
    found: list[Advice] = []
    for definition in definitions:
        runs = history.get(definition.name, [])
        found += advise_view(definition, runs, facts.get(definition.name, Facts()))
    return found


def advise_view(definition: MatViewDefinition, runs: list[dict[str, Any]], facts: Facts) -> list[Advice]:
    """The advice for one view (see the module's rules)."""
    current = definition.refresh_strategy
    own = _Runs([row for row in runs if row.get("strategy") == current])
    if len(own.rows) < MIN_RUNS:
        return []
    found = [
        rule(definition.name, current, own, facts)
        for rule in (_blocked_readers, _most_rows_changed, _no_room_for_a_copy, _refreshed_unchanged, _rarely_read)
    ]
    return [_with_measured(advice, runs, own) for advice in found if advice is not None]


def _with_measured(advice: Advice, runs: list[dict[str, Any]], own: _Runs) -> Advice:
    """Advice for a strategy the view has also been refreshed with (before a change, or by
    ``refresh --strategy``) cites those runs beside its own."""
    other = _Runs([row for row in runs if row.get("strategy") == advice.recommended != advice.current])
    then, now = other.median("duration_ms"), own.median("duration_ms")
    if then is None or now is None:
        return advice
    evidence = {**advice.evidence, f"{advice.recommended}_runs": other.ids(), f"{advice.recommended}_median_ms": then}
    reason = f"{advice.reason}; its {len(other.rows)} {advice.recommended} refreshes took {then} ms (median)"
    reason += f" against {now} ms"
    return replace(advice, evidence=evidence, reason=reason)


def _blocked_readers(view: str, current: str, runs: _Runs, facts: Facts) -> Advice | None:
    if current != "regular":
        return None
    blocked = _Runs([row for row in runs.rows if (row.get("readers_blocked") or 0) > 0])
    if not blocked.rows or _too_big_to_copy(runs, facts):
        return None
    sessions = sum(int(row["readers_blocked"]) for row in blocked.rows)
    waits = blocked.median("reader_wait_ms")
    longest = max(int((row.get("costs") or {}).get("reader_wait_max_ms") or 0) for row in blocked.rows)
    return Advice(
        view,
        current,
        "swap",
        f"{len(blocked.rows)} of the last {len(runs.rows)} regular refreshes blocked readers: {sessions} sessions "
        f"waited, {waits} ms in all per refresh (median), {longest} ms the longest; runs "
        + ", ".join(f"#{run_id}" for run_id in blocked.ids()),
        {
            "runs": runs.ids(),
            "runs_with_blocked_readers": blocked.ids(),
            "readers_blocked": sessions,
            "median_reader_wait_ms": waits,
            "max_reader_wait_ms": longest,
            "median_duration_ms": runs.median("duration_ms"),
        },
        "a swap refreshes at about the same cost (1.1-1.2x a regular refresh at 1,000,000 rows) and makes readers "
        f"wait only for its rename, milliseconds instead of {runs.median('duration_ms')} ms",
        "refresh_strategy: swap",
    )


def _most_rows_changed(view: str, current: str, runs: _Runs, facts: Facts) -> Advice | None:
    if current != "concurrent":
        return None
    shares = [  # a replaced row is a delete and an insert in the diff: all rows replaced is a share of 1
        min(row["rows_changed"] / (2 * row["rows_count"]), 1.0)
        for row in runs.rows
        if row.get("rows_changed") is not None and row.get("rows_count")
    ]
    if len(shares) < MIN_RUNS or median(shares) < MOST_ROWS or _too_big_to_copy(runs, facts):
        return None
    share = median(shares)
    return Advice(
        view,
        current,
        "swap",
        f"the last {len(shares)} concurrent refreshes replaced {share:.0%} of the rows (median; a diff of "
        f"{runs.median('rows_changed')} rows for {runs.median('rows_count')}, a replaced row being a delete and an "
        f"insert), taking {runs.median('duration_ms')} ms: a concurrent refresh compares every row and writes each "
        "change, so with most rows replaced it costs many times a swap",
        {
            "runs": runs.ids(),
            "median_changed_share": round(share, 3),
            "median_rows_changed": runs.median("rows_changed"),
            "median_rows": runs.median("rows_count"),
            "median_duration_ms": runs.median("duration_ms"),
            "median_wal_bytes": runs.median("wal_bytes"),
            "median_temp_bytes": runs.median("temp_bytes"),
        },
        "a swap builds the new copy in one pass (concurrent cost 5-16x a swap at 1,000,000 rows) and readers "
        "still wait only for its rename, milliseconds",
        "refresh_strategy: swap",
    )


def _no_room_for_a_copy(view: str, current: str, runs: _Runs, facts: Facts) -> Advice | None:
    if current != "swap" or not _too_big_to_copy(runs, facts):
        return None
    size = runs.median("size_after_bytes") or 0
    recommended = "concurrent" if facts.unique_index else "regular"
    why = (
        f"it has the unique index {facts.unique_index}, so readers are never blocked"
        if facts.unique_index
        else "it has no usable unique index, so concurrent cannot serve; readers wait for the whole refresh"
    )
    return Advice(
        view,
        current,
        recommended,
        f"a swap builds a second copy of the view ({size:,} bytes, median) beside it, and the disk of its "
        f"tablespace ({facts.location}) has {facts.free_bytes:,} bytes free: less than twice its size",
        {"runs": runs.ids(), "median_size_bytes": size, "free_bytes": facts.free_bytes, "location": facts.location},
        f"a {recommended} refresh rewrites the view in place, needing no second copy; {why}",
        f"refresh_strategy: {recommended}",
    )


def _refreshed_unchanged(view: str, current: str, runs: _Runs, facts: Facts) -> Advice | None:
    pairs = [
        (newer, older)
        for newer, older in zip(runs.rows, runs.rows[1:], strict=False)
        if newer.get("source_versions") and older.get("source_versions")
    ]
    wasted = [newer for newer, older in pairs if unchanged(newer["source_versions"], older["source_versions"])]
    if len(pairs) < MIN_RUNS - 1 or len(wasted) * 2 < len(pairs):
        return None
    spent = sum(int(row.get("duration_ms") or 0) for row in wasted)
    return Advice(
        view,
        current,
        current,
        f"{len(wasted)} of its last {len(pairs)} refreshes found every source as the refresh before had read it "
        f"(source versions), so they changed nothing: {spent} ms spent on them",
        {"runs": runs.ids(), "runs_with_unchanged_sources": [int(row["id"]) for row in wasted], "spent_ms": spent},
        "refreshing only when a source changed skips these refreshes and keeps the view as fresh",
        "refresh it with --if-changed (refresh_many(if_changed=True)), or in Dagster on an automation "
        "condition over its sources",
    )


def _rarely_read(view: str, current: str, runs: _Runs, facts: Facts) -> Advice | None:
    # a regular refresh keeps the relation and scans nothing: reads during it count too; a swap
    # starts a new relation's counters, a concurrent refresh scans the view itself
    since = "view_scans_before" if current == "regular" else "view_scans_after"
    reads = []
    for newer, older in zip(runs.rows, runs.rows[1:], strict=False):
        now, then = (newer.get("costs") or {}).get("view_scans_before"), (older.get("costs") or {}).get(since)
        if now is not None and then is not None and now >= then:
            reads.append(now - then)
    if len(reads) < MIN_RUNS - 1 or not any(reads) or median(reads) >= 1:
        return None  # no reads at all: the statistics may not be collected (track_counts), say nothing
    return Advice(
        view,
        current,
        "view",
        f"it was read {median(reads):g} times (median) between its last {len(reads) + 1} refreshes "
        f"(pg_stat_all_tables scans): each refresh, {runs.median('duration_ms')} ms (median), runs its query more "
        "often than its readers would",
        {"runs": runs.ids(), "reads_between_refreshes": reads, "median_duration_ms": runs.median("duration_ms")},
        "a plain view runs the query only when it is read",
        "define it as a plain view (CREATE VIEW ... AS its query), or refresh it only before it is read",
    )


def _too_big_to_copy(runs: _Runs, facts: Facts) -> bool:
    size = runs.median("size_after_bytes")
    return facts.free_bytes is not None and size is not None and 2 * size > facts.free_bytes


def _server_is_local(conn: psycopg.Connection) -> bool:
    host = conn.info.host or ""
    return host.startswith("/") or host in ("", "localhost", "127.0.0.1", "::1")
