"""``DefinedViews``: the views a program defines, by name or definition id, their selection and
their dependency graph."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING

from .arguments import definition_id
from .definition import MatViewDefinition
from .graph import ViewGraph
from .messages import shown
from .names import QualifiedName

if TYPE_CHECKING:
    from .store import RunStore

ViewRef = MatViewDefinition | str | int


class DefinedViews:
    """The defined views, by their qualified name (``schema.view``); a definition id is looked
    up in ``runs``, the run store that mirrors the definitions.

    Raises ``ValueError`` when a view is defined twice.
    """

    def __init__(self, definitions: Iterable[MatViewDefinition], runs: RunStore) -> None:
        self.runs = runs
        self._definitions: dict[str, MatViewDefinition] = {}
        for definition in definitions:
            if definition.name in self._definitions:
                raise ValueError(f"view {definition.name} is defined twice; names must be unique")
            self._definitions[definition.name] = definition

    @property
    def definitions(self) -> list[MatViewDefinition]:
        return list(self._definitions.values())

    @property
    def by_name(self) -> dict[str, MatViewDefinition]:
        """The definitions by qualified name (a copy)."""
        return dict(self._definitions)

    @cached_property
    def graph(self) -> ViewGraph:
        """The views' dependency graph; ``ValueError`` for a cycle."""
        return ViewGraph(self._definitions.values())

    def definition(self, view: ViewRef) -> MatViewDefinition:
        """A definition, a view name (``view`` or ``schema.view``; an unqualified name not in
        ``public`` finds the one defined view of that name) or a definition id."""
        if isinstance(view, MatViewDefinition):
            return view
        number = definition_id(view)
        if number is not None:
            return self._by_id(number)
        if not isinstance(view, str):
            raise ValueError(f"view must be a name, a definition id or a MatViewDefinition, got {shown(view)}")
        found = self._known(view)
        if found is None:
            raise ValueError(f"unknown view {shown(view)}; defined views: {self._names()}")
        return found

    def select(self, views: Iterable[ViewRef] | None) -> list[MatViewDefinition]:
        """The named views (each once, in the order given), or all for ``None``. Every name is
        checked first: one ``ValueError`` names every unknown view."""
        if views is None:
            return self.definitions
        chosen: dict[str, MatViewDefinition] = {}
        unknown = [v for v in views if isinstance(v, str) and definition_id(v) is None and self._known(v) is None]
        if unknown:
            names = ", ".join(shown(name) for name in unknown[:5]) + (
                f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            )
            raise ValueError(f"unknown view{'s' if len(unknown) > 1 else ''} {names}; defined views: {self._names()}")
        for view in views:
            definition = self.definition(view)
            chosen.setdefault(definition.name, definition)
        return list(chosen.values())

    def is_defined(self, name: str) -> bool:
        return name in self._definitions

    def find(self, view: str) -> MatViewDefinition | None:
        """The definition ``view`` (``view`` or ``schema.view``) names, None when none;
        ``ValueError`` for a bad name or an unqualified name two schemas define."""
        return self._known(view)

    def graph_of(self, definitions: Sequence[MatViewDefinition]) -> ViewGraph:
        """This instance's graph when the definitions are its own, else one of their own."""
        if all(self._definitions.get(d.name) is d for d in definitions):
            return self.graph
        return ViewGraph(definitions)

    def expected_reads(self, definition: MatViewDefinition) -> tuple[QualifiedName, ...] | None:
        """What the dependency graph says the view reads (None for a definition not its own)."""
        return self.graph.reads(definition.name) if self._definitions.get(definition.name) is definition else None

    def upstream_views(self, definition: MatViewDefinition) -> tuple[QualifiedName, ...]:
        """The defined views the view reads."""
        if self._definitions.get(definition.name) is not definition:
            return ()
        return tuple(QualifiedName.parse(name) for name in self.graph.upstream(definition.name))

    def _known(self, view: str) -> MatViewDefinition | None:
        """The definition a name refers to, ``None`` when none; ``ValueError`` for a bad name
        or an unqualified name two schemas define (write ``schema.view``)."""
        found = self._definitions.get(str(QualifiedName.parse(view, "view name")))
        if found is not None or "." in view:
            return found
        matches = [d for d in self._definitions.values() if d.qualified.name == view]
        if len(matches) > 1:
            raise ValueError(
                f"view {shown(view)} is ambiguous: {', '.join(d.name for d in matches)}; write schema.view"
            )
        return matches[0] if matches else None

    def _names(self, most: int = 10) -> str:
        """The defined views for a message: the first ``most`` by name, then how many more."""
        names = sorted(self._definitions)
        more = f" and {len(names) - most} more" if len(names) > most else ""
        return (", ".join(names[:most]) or "none") + more

    def _by_id(self, definition_id: int) -> MatViewDefinition:
        """The defined view whose id (in the run store's definitions mirror) is
        ``definition_id``; an id of a view mirrored by another program but not defined here is
        refused like an unknown name."""
        mirrored = self.runs.get_definition(definition_id)
        if mirrored is None:
            raise ValueError(f"unknown definition id {definition_id}")
        definition = self._definitions.get(mirrored.name)
        if definition is None:
            raise ValueError(
                f"definition id {definition_id} is {mirrored.name}, which is not among the defined views "
                f"({self._names()}); add it to the definitions or name a defined view"
            )
        return definition


def refuse_other_databases(definitions: list[MatViewDefinition], database: str | None) -> None:
    """A ``MatViews`` works on one database: a view of another (``database:``) or one repeated
    per tenant (``tenants:``) belongs to an estate (``core/estate.py``); ``ValueError``."""
    for definition in definitions:
        if definition.tenants is not None or definition.database != database:
            where = (
                "is repeated per tenant" if definition.tenants is not None else f"is in database {definition.database}"
            )
            raise ValueError(
                f"view {definition.name} {where}; a MatViews works on one database: open the definitions as an "
                "Estate (matviews_dagster.core.estate), as the matviews CLI and build_definitions do"
            )
