"""``matviews plan``: for each defined view, what ``apply`` would do (``drift.ViewPlan``), and
the orphans: materialized views with run history in this database and no definition any more.
Reads only; nothing is written, not even to the run store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import psycopg

from .catalog import NotAMaterializedView, matview_state
from .definition import MatViewDefinition
from .drift import ViewPlan, plan_view
from .names import QualifiedName
from .services.response import ServiceError

if TYPE_CHECKING:
    from .matviews import MatViews


def plan_views(mv: MatViews, definitions: Sequence[MatViewDefinition], *, orphans: bool) -> list[ViewPlan]:
    """One plan per definition, in the order given, then (with ``orphans``) one per orphan."""
    with mv.connect("plan") as conn:
        database = conn.info.dbname
        applied = mv.runs.read_applied([d.name for d in definitions], database)
        plans = []
        for definition in definitions:
            previous = applied.get(definition.name)
            try:
                plans.append(plan_view(conn, definition, previous.indexes if previous else ()))
            except ServiceError as exc:
                plans.append(ViewPlan(definition.name, "error", error=str(exc), hint=exc.hint))
        if orphans:
            for name in mv.runs.views_with_runs(database_name=database):
                if not mv.is_defined(name) and _is_matview(conn, name):
                    plans.append(ViewPlan(name, "orphan"))
    return plans


def _is_matview(conn: psycopg.Connection, name: str) -> bool:
    try:
        return matview_state(conn, QualifiedName.parse(name)) is not None
    except (NotAMaterializedView, ValueError):
        return False
