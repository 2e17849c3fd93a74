"""What is there, read without changing anything: the views in the catalog with their last
runs, the run history, the adapter's queue, the views' columns and their column lineage.
``MatViews`` has these methods (this class is its reading half)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .arguments import positive_integer
from .defined_views import DefinedViews, ViewRef
from .lineage import LineageReader, ViewLineage
from .listing import view_status
from .messages import shown
from .names import QualifiedName
from .vocabulary import REQUEST_STATUSES, RunKind

if TYPE_CHECKING:
    from .advice_rules import Advice
    from .catalog import ViewDescription
    from .database import Database
    from .store.requests import RunRequestRow


class Readings(DefinedViews):
    """The reading methods of ``MatViews`` over its definitions and its ``db``."""

    db: Database

    def lineage_reader(
        self, views: Iterable[ViewRef] | None = None, *, also: Iterable[QualifiedName] = ()
    ) -> LineageReader:
        """Column lineage of ``views`` (default: all) from one catalog query
        (``lineage_catalog.read_lineage``; ``also``: more relations to read the columns of);
        ``reader.of(definition)`` resolves one view."""
        from .lineage_catalog import read_lineage

        with self.db.connect("lineage") as conn:
            return read_lineage(conn, self.graph, [definition.name for definition in self.select(views)], also)

    def column_lineage(
        self, views: Iterable[ViewRef] | None = None, *, stop_at: Iterable[QualifiedName] = ()
    ) -> list[ViewLineage]:
        """The column lineage of ``views`` (default: all), in dependency order; plain views in
        ``stop_at`` are sources themselves, not followed to their tables."""
        stop = list(stop_at)
        reader, selected = self.lineage_reader(views, also=stop), self.select(views)
        return [reader.of(definition, stop) for definition in self.graph.order(d.name for d in selected)]

    def describe(self, views: Iterable[ViewRef] | None = None) -> list[ViewDescription]:
        """Each of ``views`` (default: all) in the catalog now, on one connection
        (``catalog.describe_if_view``: ``exists`` False when not deployed)."""
        from .catalog import describe_if_view

        with self.db.connect("describe") as conn:
            return [describe_if_view(conn, definition.qualified) for definition in self.select(views)]

    def status(self) -> list[dict[str, Any]]:
        """Every defined view's state in the catalog and its last run (``listing.view_status``)."""
        return view_status(self.db, self.definitions)

    def history(
        self, *, kind: RunKind | None = None, view: str | None = None, limit: int = 20, database: str | None = None
    ) -> list[dict[str, Any]]:
        """Run rows newest first, each with ``kind``; ``view`` may omit the ``public.`` schema;
        ``database`` keeps the rows of that ``database_name`` (a run store several serve)."""
        positive_integer(limit, "limit")
        name = None
        if view is not None:
            known = self._known(view)
            name = known.name if known is not None else str(QualifiedName.parse(view, "view name"))
        return self.runs.history(kind=kind, view=name, limit=limit, database=database)

    def advise(self, views: Iterable[ViewRef] | None = None) -> list[Advice]:
        """Where another refresh strategy, or none, would serve ``views`` (default: all) better,
        from their last refreshes' costs and waits (``core/advisor.py``: at least 3 runs of the
        current strategy, each piece of advice with its evidence); empty when nothing applies.
        One history query and one catalog connection. Raises ``DatabaseUnavailable``."""
        from .advisor import MIN_RUNS, advise, read_facts

        selected = self.select(views)
        if not selected:
            return []
        with self.db.connect("advise") as conn:
            names = [definition.name for definition in selected]
            history = self.runs.recent_refreshes(database_name=self.db.name_of(conn), view_names=names)
            speaking = [definition for definition in selected if len(history.get(definition.name, ())) >= MIN_RUNS]
            facts = read_facts(conn, speaking) if speaking else {}
        return advise(selected, history, facts)

    def requests(self, *, status: str | None = None, limit: int = 20) -> list[RunRequestRow]:
        """The adapter's queued requests newest first (``pending``, ``submitted``, ``success``
        or ``failed``), each with the Dagster run that served it and why it failed."""
        from .store.requests import RunRequestQueue

        if status is not None and status not in REQUEST_STATUSES:
            raise ValueError(f"status must be one of {', '.join(REQUEST_STATUSES)}, got {shown(status)}")
        positive_integer(limit, "limit")
        return RunRequestQueue(self.runs).recent(status=status, limit=limit)
