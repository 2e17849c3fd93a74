"""The results file, ``docs/performance.json``: the one source of every generated table and of the chart.

Its shape is ``{KEY: Entry}``, one entry per ``<!-- bench:KEY -->`` block of performance.md (a suite's
``Section.key``: ``"overhead"``, ``"dagster"``, ``"tools"`` ...), in the order the keys were first
measured. A run, whole or ``--only``, replaces the entries of the suites it ran and keeps the others;
performance.md and performance.png are then regenerated from the whole file (``report.publish``).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

from .harness import Section

FILENAME = "performance.json"


class Entry(TypedDict):
    """One suite's last measurement, everything its table and its chart panel are drawn from."""

    title: str  # the section heading, used when the block is appended to a file that lacks it
    data: dict[str, Any]  # the suite's raw numbers (``Section.data``): what the chart plots
    markdown: str  # the table block, written verbatim between the block's markers
    measured_at: str  # ISO 8601 date-time in UTC when the suite finished, e.g. "2026-12-04T14:52:07+00:00"
    repeats: int  # timed runs behind every figure (after a warm-up)
    machine: str  # what it ran on and with: cores, memory, OS, Python, PostgreSQL, dagster, psycopg, dbt
    smoke: bool  # a smoke run: tiny sizes, not for comparison
    elapsed_s: float  # how long the suite took, in seconds


Results = dict[str, Entry]
"""``{section key: Entry}``, as stored in the results file."""

REQUIRED: frozenset[str] = Entry.__required_keys__


def entry(section: Section, *, repeats: int, machine: str, smoke: bool, elapsed_s: float) -> Entry:
    """The entry for a suite that just finished; ``measured_at`` is now, in UTC, to the second."""
    return Entry(
        title=section.title,
        data=section.data,
        markdown=section.markdown,
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        repeats=repeats,
        machine=machine,
        smoke=smoke,
        elapsed_s=round(elapsed_s, 1),
    )


def measured_at(item: Entry) -> datetime:
    """When the entry was measured, as an aware UTC datetime."""
    when = datetime.fromisoformat(item["measured_at"])
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)


def load(path: Path) -> Results:
    """The results stored at ``path`` (``{}`` when there is no file yet).

    A malformed file raises ``ValueError`` naming the file and the entry: a run checks it
    before measuring, so it never measures for an hour to fail at the end.
    """
    if not path.exists():
        return {}
    stored = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(stored, dict):
        raise ValueError(f"{path}: expected an object of entries by block key, found {type(stored).__name__}")
    for key, item in stored.items():
        missing = sorted(REQUIRED - set(item)) if isinstance(item, dict) else sorted(REQUIRED)
        if missing:
            raise ValueError(f"{path}: entry {key!r} lacks {', '.join(missing)}")
        measured_at(item)  # an unreadable date fails here, not in the chart
    return stored


def save(path: Path, results: Results) -> None:
    """Write ``results`` to ``path`` atomically (a killed run never leaves half a file)."""
    text = json.dumps(results, indent=1, ensure_ascii=False, default=str) + "\n"
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
