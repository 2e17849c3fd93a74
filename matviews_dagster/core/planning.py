"""``matviews plan``: for each defined view, what ``apply`` would do (``drift.ViewPlan``), and
the orphans: materialized views with run history in this database and no definition any more.
Nothing is kept: the plan's transaction is rolled back, and nothing is written to the run store."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import psycopg

from .catalog import NotAMaterializedView, matview_state
from .definition import MatViewDefinition
from .drift import ViewPlan, plan_view
from .names import QualifiedName
from .services.binding import bind_search_path, create_statement
from .services.response import ServiceError

if TYPE_CHECKING:
    from .database import Database
    from .defined_views import DefinedViews
    from .graph import ViewGraph


def plan_views(
    db: Database, views: DefinedViews, definitions: Sequence[MatViewDefinition], *, orphans: bool
) -> list[ViewPlan]:
    """One plan per definition, in the order given (a dependency order), then (with
    ``orphans``) one per orphan. Every definition is checked as ``create`` and ``apply`` would
    check it; a view to be created that others read is created empty inside the plan's
    transaction, which is rolled back, so the views planned after it compile against it as
    ``apply`` will."""
    with db.connect("plan") as conn:
        database = db.name_of(conn)
        applied = db.runs.read_applied([d.name for d in definitions], database)
        plans = []
        graph = views.graph_of(definitions)
        with conn.transaction() as transaction:
            for definition in definitions:
                previous = applied.get(definition.name)
                try:
                    plans.append(plan_view(conn, definition, previous.indexes if previous else ()))
                except ServiceError as exc:  # what create and apply would refuse, in their words
                    plans.append(ViewPlan(definition.name, "error", error=str(exc), hint=exc.hint))
                    continue
                if plans[-1].action == "create" and graph.downstream(definition.name):
                    _stand_in(conn, definition)
            raise psycopg.Rollback(transaction)
        if any(plan.columns is not None and plan.columns.breaking for plan in plans):
            plans = _with_impact(conn, views.graph, plans)
        if orphans:
            for name in db.runs.views_with_runs(database_name=database):
                if not views.is_defined(name) and _is_matview(conn, name):
                    plans.append(ViewPlan(name, "orphan"))
    return plans


def _with_impact(conn: psycopg.Connection, graph: ViewGraph, plans: list[ViewPlan]) -> list[ViewPlan]:
    """Each plan whose new query removes or retypes columns, with the defined views' columns
    built on them at any depth (column lineage, one catalog query for the whole file)."""
    from .lineage import ColumnSource, readers
    from .lineage_catalog import read_lineage

    reader = read_lineage(conn, graph, [definition.name for definition in graph])
    lineages = [reader.of(definition) for definition in graph]
    found = []
    for plan in plans:
        if plan.columns is None or not plan.columns.breaking:
            found.append(plan)
            continue
        changed = [*plan.columns.removed, *(name for name, _, _ in plan.columns.retyped)]
        built_on = readers(lineages, [ColumnSource(QualifiedName.parse(plan.view), column) for column in changed])
        impact = tuple(f"{view}.{column}" for view, columns in built_on.items() for column in columns)
        found.append(replace(plan, impact=impact))
    return found


def _stand_in(conn: psycopg.Connection, definition: MatViewDefinition) -> None:
    """The view to be created, empty, for the rest of the plan's rolled-back transaction; a role
    that may not create it leaves the views built on it to say they cannot compile."""
    with contextlib.suppress(psycopg.Error), conn.transaction():
        bind_search_path(conn, definition)
        conn.execute(create_statement(definition.qualified, definition, data=False))


def _is_matview(conn: psycopg.Connection, name: str) -> bool:
    try:
        return matview_state(conn, QualifiedName.parse(name)) is not None
    except (NotAMaterializedView, ValueError):
        return False
