"""The strategy advisor's words (``Advice``, the ``Facts`` and ``Runs`` it reads) and its rules
(``core/advisor.py`` applies them), each ``(view, current strategy, its runs,
facts) -> Advice | None``:

- ``regular`` whose refreshes blocked readers: ``swap`` (about the same cost, readers wait for a
  rename); with materialized views built on it, which a swap recreates while readers wait,
  ``concurrent`` where a usable unique index exists, else nothing;
- ``concurrent`` whose refreshes replace most rows (the diff, ``rows_changed``, over twice the
  rows, at least ``MOST_ROWS``): ``swap``, one pass instead of a diff;
- ``swap`` whose second copy would leave less free disk than its size (free under twice its
  size; read only when the server's files are on this machine): ``concurrent`` where a usable
  unique index exists (it writes changed rows in place, no second copy), else free disk
  (``regular`` writes a whole second copy too);
- a view refreshed more often than its sources change (the source versions each refresh
  recorded): refresh it only when they change;
- a view read less than once per refresh on average (``pg_stat_all_tables`` scans between
  refreshes at least ``STATS_LAG_S`` apart, plus the readers a refresh blocked, over at least
  half of its intervals; its refreshes a small part of that time): a plain view runs the query
  only when read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from statistics import median
from typing import Any

from .source_versions import unchanged

MIN_RUNS = 3
"""Successful refreshes with the current strategy before the advisor speaks."""


@dataclass(frozen=True)
class Advice:
    """One piece of advice: ``recommended`` is a strategy, or ``"view"`` (a plain view), or the
    current one (refresh less often, give it disk); ``evidence`` holds the figures (run ids,
    medians in ms, bytes, rows); ``change`` is the one line to change."""

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

    @property
    def summary(self) -> str:
        """The advice in a few words (a check's description)."""
        if self.recommended == "view":
            return f"a plain view would serve better ({self.change})"
        if self.recommended == self.current:
            return f"keep {self.current}, but {self.change}"
        return f"{self.recommended} would serve better ({self.change})"


@dataclass(frozen=True)
class Facts:
    """What the catalog says of a deployed view: its usable unique index (``None``: none), the
    materialized views built on it (which a swap recreates while readers wait), and the bytes
    free on the disk of its tablespace (``None`` when the server's files are not on this
    machine, or the role may not see where they are)."""

    unique_index: str | None = None
    materialized_dependents: tuple[str, ...] = ()
    free_bytes: int | None = None
    location: str | None = None


@dataclass
class Runs:
    """A view's successful refreshes with one strategy, newest first (run-table rows)."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def ids(self) -> list[int]:
        return [int(row["id"]) for row in self.rows]

    def median(self, column: str) -> int | None:
        values = [row[column] for row in self.rows if row.get(column) is not None]
        return int(median(values)) if values else None

    def own_cost(self, column: str) -> int | None:
        """The median of a cost the server's or database's counters hold (WAL before PostgreSQL
        18, buffers, temporary bytes), over the runs no other refresh of the process overlapped
        when there are such runs."""
        alone = Runs([row for row in self.rows if not (row.get("costs") or {}).get("overlapped")])
        return (alone if alone.rows else self).median(column)


MOST_ROWS = 0.5
"""The share of rows a concurrent refresh replaces above which a swap writes less."""
STATS_LAG_S = 10.0
"""How late another session's scans may reach the statistics (an idle session flushes them
within ``PGSTAT_IDLE_INTERVAL``, 10 s): refreshes closer than this do not count reads between."""
BUSY_SHARE = 0.1
"""Reads during a swap's build land on the copy it drops: the rule speaks only when refreshes
took under this share of the time between them."""


def _blocked_readers(view: str, current: str, runs: Runs, facts: Facts) -> Advice | None:
    if current != "regular":
        return None
    blocked = Runs([row for row in runs.rows if (row.get("readers_blocked") or 0) > 0])
    if not blocked.rows:
        return None
    recommended = "swap"
    effect = (
        "a swap refreshes at about the same cost (1.1-1.2x a regular refresh at 1,000,000 rows) and makes readers "
        f"wait only for its rename, milliseconds instead of {runs.median('duration_ms')} ms"
    )
    if facts.materialized_dependents:  # a swap recreates them in its renaming transaction
        if not facts.unique_index:
            return None
        recommended = "concurrent"
        effect = (
            "a concurrent refresh never blocks readers; a swap would recreate "
            f"{', '.join(facts.materialized_dependents)} (built on it) while readers wait; concurrent costs more "
            "(5-16x a swap at 1,000,000 rows)"
        )
    sessions = sum(int(row["readers_blocked"]) for row in blocked.rows)
    waits = blocked.median("reader_wait_ms")
    longest = max(int((row.get("costs") or {}).get("reader_wait_max_ms") or 0) for row in blocked.rows)
    return Advice(
        view,
        current,
        recommended,
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
            "materialized_views_built_on_it": list(facts.materialized_dependents),
        },
        effect,
        f"refresh_strategy: {recommended}",
    )


def _rows(row: dict[str, object]) -> float | None:
    """The view's rows at a run: counted, else the estimate read after it (``reltuples``)."""
    counted = row.get("rows_count")
    estimate = (row.get("costs") or {}).get("rows_estimate")  # type: ignore[union-attr]
    value = counted if counted is not None else estimate
    return float(value) if isinstance(value, int | float) and value > 0 else None


def _most_rows_changed(view: str, current: str, runs: Runs, facts: Facts) -> Advice | None:
    if current != "concurrent":
        return None
    shares = [  # a replaced row is a delete and an insert in the diff: all rows replaced is a share of 1
        min(int(row["rows_changed"]) / (2 * rows), 1.0)
        for row in runs.rows
        if row.get("rows_changed") is not None and (rows := _rows(row))
    ]
    if len(shares) < MIN_RUNS or median(shares) < MOST_ROWS:
        return None
    share = median(shares)
    return Advice(
        view,
        current,
        "swap",
        f"the last {len(shares)} concurrent refreshes replaced {share:.0%} of the rows (median; a diff of "
        f"{runs.median('rows_changed')} rows, a replaced row being a delete and an insert), taking "
        f"{runs.median('duration_ms')} ms: a concurrent refresh compares every row and writes each change, so with "
        "most rows replaced it costs many times a swap",
        {
            "runs": runs.ids(),
            "median_changed_share": round(share, 3),
            "median_rows_changed": runs.median("rows_changed"),
            "median_rows": int(median(rows for row in runs.rows if (rows := _rows(row)))),
            "median_duration_ms": runs.median("duration_ms"),
            "median_wal_bytes": runs.own_cost("wal_bytes"),
            "median_temp_bytes": runs.own_cost("temp_bytes"),
        },
        "a swap builds the new copy in one pass (concurrent cost 5-16x a swap at 1,000,000 rows) and readers "
        "still wait only for its rename, milliseconds",
        "refresh_strategy: swap",
    )


def _no_room_for_a_copy(view: str, current: str, runs: Runs, facts: Facts) -> Advice | None:
    size = runs.median("size_after_bytes")
    if current != "swap" or facts.free_bytes is None or size is None or 2 * size <= facts.free_bytes:
        return None
    evidence = {
        "runs": runs.ids(),
        "median_size_bytes": size,
        "free_bytes": facts.free_bytes,
        "location": facts.location,
    }
    reason = (
        f"a swap builds a second copy of the view ({size:,} bytes, median) beside it, and the disk of its tablespace "
        f"({facts.location}) has {facts.free_bytes:,} bytes free: less than twice its size, so a copy leaves less "
        "than one more view's worth"
    )
    if facts.unique_index:
        effect = (
            f"a concurrent refresh (unique index {facts.unique_index}) writes the changed rows in place, no second "
            "copy (it grows by the rows it replaces until vacuum, and spills its diff to temporary files)"
        )
        return Advice(view, current, "concurrent", reason, evidence, effect, "refresh_strategy: concurrent")
    effect = "no strategy avoids the copy without a unique index (a regular refresh writes a whole second copy too)"
    change = f"free disk in {facts.location}, or move the view (ALTER MATERIALIZED VIEW ... SET TABLESPACE ...)"
    return Advice(view, current, current, reason, evidence, effect, change)


def _refreshed_unchanged(view: str, current: str, runs: Runs, facts: Facts) -> Advice | None:
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


def _rarely_read(view: str, current: str, runs: Runs, facts: Facts) -> Advice | None:
    reads, used, window_s, busy_ms = [], [], 0.0, 0
    pairs = list(zip(runs.rows, runs.rows[1:], strict=False))
    for newer, older in pairs:  # scans by others between two refreshes, and the readers one blocked
        now, then = (
            (newer.get("costs") or {}).get("view_scans_before"),
            (older.get("costs") or {}).get("view_scans_after"),
        )
        apart = (newer["started_at"] - older["started_at"]).total_seconds()
        if now is not None and then is not None and now >= then and apart >= STATS_LAG_S:
            reads.append(now - then + int(newer.get("readers_blocked") or 0))
            used.append(int(newer["id"]))
            window_s += apart
            busy_ms += int(older.get("duration_ms") or 0)
    enough = len(reads) >= MIN_RUNS - 1 and 2 * len(reads) >= len(pairs)
    if not enough or not any(reads) or sum(reads) >= len(reads) or busy_ms > BUSY_SHARE * window_s * 1000:
        return None  # no reads at all: the statistics may not be collected (track_counts); say nothing
    mean = sum(reads) / len(reads)
    return Advice(
        view,
        current,
        "view",
        f"it was read {mean:.2g} times per refresh on average over {len(reads)} intervals between its refreshes "
        f"(pg_stat_all_tables scans, and readers a refresh blocked): each refresh, {runs.median('duration_ms')} ms "
        "(median), runs its query more often than its readers would",
        {
            "runs": used,
            "reads_between_refreshes": reads,
            "median_duration_ms": runs.median("duration_ms"),
        },
        "a plain view runs the query only when it is read",
        "define it as a plain view (CREATE VIEW ... AS its query), or refresh it only before it is read",
    )


RULES: tuple[Callable[[str, str, Runs, Facts], Advice | None], ...] = (
    _blocked_readers,
    _most_rows_changed,
    _no_room_for_a_copy,
    _refreshed_unchanged,
    _rarely_read,
)
"""Every rule, in the order their advice is listed."""
