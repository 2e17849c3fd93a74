"""``matviews list``: each defined view's state in the catalog and its last run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .catalog import describe_view

if TYPE_CHECKING:
    from .database import Database
    from .definition import MatViewDefinition

_LAST_RUN_FIELDS = ("kind", "run_id", "status", "finished_at", "duration_ms")


def view_status(db: Database, definitions: Sequence[MatViewDefinition]) -> list[dict[str, Any]]:
    """Every defined view: ``name``, ``strategy``, ``exists``, ``populated``, ``rows_estimate``
    (``pg_class.reltuples``; where Postgres has no estimate, the count of the last refresh
    that counted), ``size_bytes`` and ``last_run`` (``{kind, run_id, status, finished_at,
    duration_ms}`` of the newest run of any kind, or None)."""
    with db.connect("list") as conn:
        described = [(d, describe_view(conn, d.qualified)) for d in definitions]
        database = db.name_of(conn)
    names = [d.name for d in definitions]
    latest = db.runs.latest(database_name=database, view_names=names)
    counted = db.runs.last_row_counts(database_name=database, view_names=names)
    rows = []
    for definition, description in described:
        last = latest.get(definition.name)
        estimate = description.rows_estimate
        if estimate is None and description.exists:
            estimate = counted.get(definition.name)
        rows.append(
            {
                "name": definition.name,
                "strategy": definition.refresh_strategy,
                "exists": description.exists,
                "populated": description.populated,
                "rows_estimate": estimate,
                "size_bytes": description.size_bytes,
                "last_run": None if last is None else {k: last[k] for k in _LAST_RUN_FIELDS},
            }
        )
    return rows
