"""Dependency order: views that read other views come after them."""

from __future__ import annotations

from collections.abc import Sequence
from graphlib import CycleError, TopologicalSorter

from .analysis import referenced_relations
from .definition import MatViewDefinition
from .names import DEFAULT_SCHEMA


def upstream_names(definition: MatViewDefinition) -> set[str]:
    """Qualified names the view reads (unqualified relations taken as ``public``)."""
    names = {f"{schema or DEFAULT_SCHEMA}.{name}" for schema, name in referenced_relations(definition.sql)}
    return names | set(definition.dependencies)


def dependency_order(definitions: Sequence[MatViewDefinition]) -> list[MatViewDefinition]:
    """``definitions`` sorted so every view follows the defined views it reads; stable otherwise."""
    by_name = {definition.name: definition for definition in definitions}
    graph = {name: sorted(upstream_names(d) & by_name.keys() - {name}) for name, d in by_name.items()}
    sorter = TopologicalSorter(graph)
    try:
        sorter.prepare()
    except CycleError as exc:
        raise ValueError(f"views depend on each other in a cycle: {' -> '.join(exc.args[1])}") from None
    order: list[str] = []
    position = {name: index for index, name in enumerate(by_name)}
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        order.extend(ready)
        sorter.done(*ready)
    return [by_name[name] for name in order]
