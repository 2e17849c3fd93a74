"""Column lineage: which columns of which relations each column of a view is computed from.

The query's parse tree comes from pglast (PostgreSQL's own parser, the JSON tree parsed once
per query text); the columns a ``*`` expands to, and the queries of plain views the lineage is
followed through, come from the catalog (``catalog.relation_columns``, one query per batch).

The rule, the one dbt's column lineage follows: a column depends on every column its own
expression mentions (through aliases, subqueries in ``FROM``, CTEs, set operations, plain
views), including the arguments of aggregates and window functions and a window's
``PARTITION BY`` / ``ORDER BY``, and the output columns of a scalar subquery in it. Columns a
query uses only to choose or order rows (``WHERE``, ``JOIN ... ON``, ``GROUP BY``, ``HAVING``,
``ORDER BY``, ``DISTINCT ON``) are not deps. ``JOIN ... USING`` / ``NATURAL JOIN`` columns come
from the side PostgreSQL takes them from (left for inner and left joins, right for right
joins, both for full joins). A column whose source cannot be known (a function of the
database that may read relations its arguments do not name, a ``*`` over columns the catalog
does not list) gets no deps and a reason in ``unresolved``; nothing here raises on a query
pglast parses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .analysis import referenced_relations
from .graph import resolve_relation
from .lineage_resolver import Resolver, query_columns
from .lineage_sql import Col, ColumnSource, RelationColumns, first
from .names import QualifiedName

if TYPE_CHECKING:
    from .definition import MatViewDefinition
    from .graph import ViewGraph

__all__ = ["ColumnSource", "LineageReader", "RelationColumns", "ViewLineage", "readers"]


@dataclass(frozen=True)
class ViewLineage:
    """The lineage of one view: ``columns`` maps each of its columns, in order, to the upstream
    columns it is computed from (sorted; empty for a constant or an unresolved column);
    ``unresolved`` maps a column to why its sources are not known."""

    view: str
    columns: dict[str, tuple[ColumnSource, ...]]
    unresolved: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``matviews lineage --json``: ``{"view": "schema.name", "columns":
        {"col": [{"relation": "schema.table", "column": "c"}, ...]}, "unresolved": {"col": "why"}}``."""
        return {
            "view": self.view,
            "columns": {
                name: [{"relation": str(s.relation), "column": s.column} for s in sources]
                for name, sources in self.columns.items()
            },
            "unresolved": dict(self.unresolved),
        }


def _lineage(view: str, found: list[Col] | None, columns: Sequence[str] | None) -> ViewLineage:
    """The lineage of ``view`` from its query's columns (``found``; ``None``: the query could
    not be followed) and its columns as the catalog lists them (``None``: as the query names
    them). A column that cannot be followed gets no sources and a reason in ``unresolved``."""
    if found is None:
        names = list(columns or [])
        why = "the query's lineage could not be followed"
        return ViewLineage(view, {n: () for n in names}, dict.fromkeys(names, why))
    names = list(columns) if columns is not None else [c.name for c in found]
    aligned = _align(found, len(names))
    result: dict[str, tuple[ColumnSource, ...]] = {}
    unresolved: dict[str, str] = {}
    for name, col in zip(names, aligned, strict=True):
        result[name] = tuple(sorted(col.deps)) if not col.why else ()
        if col.why:
            unresolved[name] = col.why
    return ViewLineage(view, result, unresolved)


def _align(found: list[Col], width: int) -> list[Col]:
    """The query's columns matched to the view's ``width`` columns by position: around a ``*``
    of unknown width, those before it from the start and those after it from the end."""
    if not any(c.unknown_width for c in found) and len(found) == width:
        return found
    stars = [i for i, c in enumerate(found) if c.unknown_width]
    if len(stars) == 1:
        head, tail = found[: stars[0]], found[stars[0] + 1 :]
        middle = width - len(head) - len(tail)
        if middle >= 0:
            return [*head, *[found[stars[0]]] * middle, *tail]
    why = first([c.why for c in found if c.unknown_width]) or (
        f"the query's {len(found)} columns do not match the view's {width}"
    )
    return [Col("?", frozenset(), why)] * width


class LineageReader:
    """Lineage of defined views from one reading of the catalog (``catalog.relation_columns``).

    A view's relation names bind as PostgreSQL binds them when the view is created: a defined
    view along the view's search path first, then the first schema of the path that has the
    relation in the catalog. ``described`` replaces what the catalog said of a relation (a view
    rebuilt in the batch since the catalog was read)."""

    def __init__(self, graph: ViewGraph, catalog: Mapping[QualifiedName, RelationColumns]) -> None:
        self.graph, self.catalog = graph, dict(catalog)
        self._defined = {d.name for d in graph}

    @staticmethod
    def relations_to_read(graph: ViewGraph, names: Iterable[str]) -> set[QualifiedName]:
        """The relations whose columns the lineage of ``names`` needs: the views themselves and
        each relation their queries name, in every schema of the view's search path an
        unqualified name could bind to."""
        wanted: set[QualifiedName] = set()
        for name in names:
            definition = graph[name]
            wanted.add(definition.qualified)
            path = definition.resolution_path
            for schema, relation in referenced_relations(definition.sql):
                if schema is not None:
                    wanted.add(QualifiedName(schema, relation))
                else:
                    wanted.update(QualifiedName(candidate, relation) for candidate in path)
        return wanted

    def described(self, name: QualifiedName, columns: Sequence[str]) -> None:
        """The view ``name`` now has ``columns`` (read after its refresh)."""
        known = self.catalog.get(name)
        self.catalog[name] = replace(known, columns=tuple(columns)) if known else RelationColumns(name, tuple(columns))

    def of(self, definition: MatViewDefinition, stop_at: Iterable[QualifiedName] = ()) -> ViewLineage:
        """The lineage of a defined view, its columns as the catalog lists them. A view not
        deployed gets its query's lineage and names; a deployed one whose columns are not those
        of its definition's query (a change not applied yet) gets the lineage of the query it
        was built with. Plain views in ``stop_at`` are sources themselves, not followed."""
        path, stop = definition.resolution_path, frozenset(stop_at)

        def bind(schema: str | None, name: str) -> QualifiedName:
            bound = resolve_relation(schema, name, path, self._defined)
            if schema is None and str(bound) not in self._defined and bound not in self.catalog:
                return next(
                    (QualifiedName(s, name) for s in path if QualifiedName(s, name) in self.catalog),
                    bound,
                )
            return bound

        own = self.catalog.get(definition.qualified)
        found = query_columns(definition.sql, Resolver(bind, self.catalog, stop_at=stop))
        if own is not None and own.deployed_sql and not _same_columns(found, own.columns):
            found = query_columns(own.deployed_sql, Resolver(own.bind, self.catalog, stop_at=stop))
        return _lineage(definition.name, found, own.columns if own else None)


def _same_columns(found: list[Col] | None, columns: Sequence[str]) -> bool:
    """Whether the query's columns are the deployed view's, by name where the query names them
    surely (around a ``*`` of unknown width, nothing to compare: taken as the same)."""
    if found is None:
        return False
    if any(c.unknown_width for c in found):
        return True
    return len(found) == len(columns) and all(
        c.name in (name, "?column?") for c, name in zip(found, columns, strict=True)
    )


def readers(
    lineages: Sequence[ViewLineage], start: Iterable[ColumnSource]
) -> dict[str, dict[str, tuple[ColumnSource, ...]]]:
    """Every view column built on the ``start`` columns, at any depth (a view over a view that
    reads them too): ``{view: {column: its own sources}}``, views in the order of ``lineages``.
    What breaks, or changes meaning, when a ``start`` column is dropped or altered."""
    index: dict[ColumnSource, list[tuple[str, str]]] = {}
    for lineage in lineages:
        for column, sources in lineage.columns.items():
            for source in sources:
                index.setdefault(source, []).append((lineage.view, column))
    found: set[tuple[str, str]] = set()
    frontier = list(start)
    while frontier:
        for view, column in index.get(frontier.pop(), ()):
            if (view, column) not in found:
                found.add((view, column))
                frontier.append(ColumnSource(QualifiedName.parse(view), column))
    return {
        lineage.view: {
            column: sources for column, sources in lineage.columns.items() if (lineage.view, column) in found
        }
        for lineage in lineages
        if any(view == lineage.view for view, _ in found)
    }
