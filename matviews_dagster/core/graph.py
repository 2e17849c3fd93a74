"""The views' dependency graph, computed once and shared by every layer.

Which relations each view reads (from its SQL, through pglast, plus its ``dependencies``),
which of those are other defined views, and the dependency order: the CLI's ``--all``, the
Dagster assets' deps and ``MatViews.refresh_many`` all read this one graph.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from graphlib import CycleError, TopologicalSorter

from .analysis import referenced_relations
from .definition import MatViewDefinition
from .names import QualifiedName

CATALOG_SCHEMA = "pg_catalog"
SYSTEM_SCHEMAS = frozenset({CATALOG_SCHEMA, "information_schema"})


def resolve_relation(schema: str | None, name: str, path: list[str], defined: Collection[str]) -> QualifiedName:
    """The relation a name in a view's SQL means, as Postgres will bind it when the view is
    created with ``path`` first in its ``search_path``: a qualified name is itself; an
    unqualified ``pg_*`` name is in ``pg_catalog`` (searched first); any other is the first
    defined view along ``path``, else (a table the code location cannot see without the
    database) assumed in the first schema of ``path``. Creating the
    view checks the assumption against the catalog and warns when it was wrong."""
    if schema is not None:
        return QualifiedName(schema, name)
    if name.startswith("pg_"):  # pg_catalog is searched before any schema of the path
        return QualifiedName(CATALOG_SCHEMA, name)
    for candidate in path:
        if f"{candidate}.{name}" in defined:
            return QualifiedName(candidate, name)
    return QualifiedName(path[0], name)


class ViewGraph:
    """Definitions with their upstream relations, in dependency order.

    >>> graph = ViewGraph(load_definitions("matviews.yaml"))  # doctest: +SKIP
    >>> [d.name for d in graph]                               # doctest: +SKIP
    ['public.mv_users', 'public.mv_user_accounts']

    Raises ``ValueError`` when a name is defined twice or views read each other in a cycle.
    """

    def __init__(self, definitions: Iterable[MatViewDefinition]) -> None:
        self._by_name: dict[str, MatViewDefinition] = {}
        for definition in definitions:
            if definition.name in self._by_name:
                raise ValueError(f"view {definition.name} is defined twice; names must be unique")
            self._by_name[definition.name] = definition
        self._reads = {name: _reads(definition, self._by_name) for name, definition in self._by_name.items()}
        for name, reads in self._reads.items():
            if any(str(relation) == name for relation in reads):  # CREATE would find no such relation
                raise ValueError(f"views depend on each other in a cycle: {name} -> {name} (the view reads itself)")
        self._upstream = {
            name: tuple(str(r) for r in reads if str(r) in self._by_name and str(r) != name)
            for name, reads in self._reads.items()
        }
        downstream: dict[str, list[str]] = {name: [] for name in self._by_name}
        for name, upstream in self._upstream.items():
            for parent in upstream:
                downstream[parent].append(name)
        self._downstream = {name: tuple(children) for name, children in downstream.items()}
        self._order = _topological(self._by_name, self._upstream)
        self._position = {name: index for index, name in enumerate(self._order)}

    def __iter__(self) -> Iterator[MatViewDefinition]:
        """Every definition, upstream views first."""
        return (self._by_name[name] for name in self._order)

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> MatViewDefinition:
        return self._by_name[name]

    def reads(self, name: str) -> tuple[QualifiedName, ...]:
        """Every relation the view reads (defined views and source tables), sorted."""
        return self._reads[name]

    def upstream(self, name: str) -> tuple[str, ...]:
        """The defined views this view reads."""
        return self._upstream[name]

    def downstream(self, name: str) -> tuple[str, ...]:
        """The defined views that read this view."""
        return self._downstream[name]

    def sources(self, name: str) -> tuple[QualifiedName, ...]:
        """The relations the view reads that are not defined views (tables, plain views); the
        system catalogs (``pg_catalog``, ``information_schema``) are not sources."""
        return tuple(r for r in self._reads[name] if str(r) not in self._by_name and r.schema not in SYSTEM_SCHEMAS)

    def order(self, names: Iterable[str] | None = None) -> list[MatViewDefinition]:
        """``names`` (default: all) in dependency order, upstream views first."""
        if names is None:
            return list(self)
        return [self._by_name[name] for name in sorted(set(names), key=self._position.__getitem__)]

    def with_downstream(self, names: Iterable[str]) -> set[str]:
        """``names`` and every defined view built on them, at any depth."""
        found: set[str] = set()
        stack = list(names)
        while stack:
            name = stack.pop()
            if name not in found:
                found.add(name)
                stack.extend(self._downstream[name])
        return found


def _reads(definition: MatViewDefinition, defined: Collection[str]) -> tuple[QualifiedName, ...]:
    path = definition.resolution_path
    named = [*referenced_relations(definition.sql), *(_split(dependency) for dependency in definition.dependencies)]
    return tuple(sorted({resolve_relation(schema, name, path, defined) for schema, name in named}))


def _split(dependency: str) -> tuple[str | None, str]:
    schema, _, name = dependency.rpartition(".")
    return (schema or None), name


def _topological(by_name: dict[str, MatViewDefinition], upstream: dict[str, tuple[str, ...]]) -> list[str]:
    """Upstream first; among views that are ready together, the order they were defined in."""
    sorter = TopologicalSorter(upstream)
    try:
        sorter.prepare()
    except CycleError as exc:
        raise ValueError(f"views depend on each other in a cycle: {' -> '.join(exc.args[1])}") from None
    position = {name: index for index, name in enumerate(by_name)}
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        order.extend(ready)
        sorter.done(*ready)
    return order
