"""``Estate``: the databases of a definitions file and the views each holds, tenants expanded.

A file without ``databases:`` or ``tenants:`` is an estate of one database, the default
connection (``MATVIEWS_DSN``, ``DATABASE_URL``, embedded), and behaves as it always did. Each
database is a ``Member``: a ``MatViews`` over the views placed in it (a view's ``database:``,
the databases of ``tenants: {databases}``, each tenant schema's copy of a
``tenants: {schemas...}`` view), so every operation on one database is the core's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from .connection import DatabaseUnavailable
from .database import Database
from .definition import MatViewDefinition
from .definitions_file import DefinitionsFile
from .estate_fields import DEFAULT_DATABASE, DatabaseSpec
from .graph import ViewGraph
from .matviews import MatViews
from .settings import DEFAULTS, MatViewsSettings
from .tenants import for_tenant, read_tenant_schemas


@dataclass
class Member:
    """One database of the estate: ``name`` (its ``databases:`` key; None: the default
    connection), ``matviews`` over the views placed in it, ``max_parallel`` (None: no cap of
    its own), each view's ``tenant`` and the name of the definition it comes from
    (``template_of``). ``unavailable`` says why views with tenant schemas (``unexpanded``) could
    not be expanded: the database could not be read."""

    name: str | None
    matviews: MatViews
    max_parallel: int | None = None
    tenant_of: dict[str, str] = field(default_factory=dict)
    template_of: dict[str, str] = field(default_factory=dict)
    unavailable: str | None = None
    unexpanded: list[MatViewDefinition] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.name or DEFAULT_DATABASE

    def parallel(self, wanted: int) -> int:
        """``wanted`` views at once, capped by this database's ``max_parallel``."""
        return min(wanted, self.max_parallel) if self.max_parallel else wanted


def database_settings(settings: MatViewsSettings, name: str | None, spec: DatabaseSpec | None) -> MatViewsSettings:
    """The settings of database ``name`` of an estate, from the default connection's
    ``settings``: its DSN as the file writes it (``${VAR}`` read when a connection opens), its
    run rows in the central store (``settings.runs_dsn``) unless ``runs: local`` or none is
    set, then in its own database. None (the default connection): ``settings`` as they are."""
    if name is None or spec is None:
        return settings
    runs_dsn = settings.runs_dsn if spec.runs != "local" else None
    return replace(settings, dsn=spec.dsn, database_name=name, runs_dsn=runs_dsn)


class Estate:
    """The views of a definitions file placed in their databases, with the settings of the
    default connection and the central run store (``settings.runs_dsn``).

    >>> estate = Estate(read_definitions_file("matviews.yaml"))          # doctest: +SKIP
    >>> members, warnings = estate.members(tenants=["acme"])             # doctest: +SKIP

    Raises ``ValueError`` at construction for a view that reads a view of another database
    (naming both) and for ``runs: central`` without a central run store.
    """

    def __init__(self, file: DefinitionsFile, settings: MatViewsSettings | None = None) -> None:
        self.file = file
        self.settings = settings or DEFAULTS
        self.databases: dict[str, DatabaseSpec] = dict(file.databases)
        self.placed: dict[str | None, list[MatViewDefinition]] = {}
        for definition in file.views:
            tenants = definition.tenants
            if tenants is not None and not tenants.by_schema:
                for database in tenants.listed:
                    self.placed.setdefault(database, []).append(definition)
            else:
                self.placed.setdefault(definition.database, []).append(definition)
        for name, spec in self.databases.items():
            if spec.runs == "central" and not self.settings.runs_dsn:
                raise ValueError(
                    f"database {name} has runs: central but no central run store is set; set runs_dsn "
                    "(--runs-dsn, MATVIEWS_RUNS_DSN, RunStoreResource(dsn=...)) or write runs: local"
                )
        if len(self.placed) > 1:
            self._refuse_cross_database_reads()

    @property
    def spans_databases(self) -> bool:
        """Whether any view is outside the default connection or repeated per tenant."""
        return bool(self.databases) or any(d.tenants is not None for d in self.file.views)

    def settings_for(self, name: str | None) -> MatViewsSettings:
        """The settings of database ``name`` (None: the default connection's): its DSN as the
        file writes it (``${VAR}`` read when a connection opens), its runs' store."""
        if name is None:
            return self.settings
        spec = self.databases[name]
        central = spec.runs != "local" and bool(self.settings.runs_dsn)
        return replace(
            self.settings, dsn=spec.dsn, database_name=name, runs_dsn=self.settings.runs_dsn if central else None
        )

    def graph(self, name: str | None) -> ViewGraph:
        """The dependency graph of the views placed in database ``name`` (views with tenants
        as the file defines them), built once."""
        graphs = self.__dict__.setdefault("_graphs", {})
        if name not in graphs:
            graphs[name] = ViewGraph(self.placed[name])
        return graphs[name]

    def database_names(self) -> list[str | None]:
        """The databases that hold views: the default connection first, then in file order."""
        named = [name for name in self.databases if name in self.placed]
        return [None, *named] if None in self.placed else named

    def check_databases(self, names: Sequence[str]) -> list[str | None]:
        """``--database`` names as database keys (``default``: the default connection);
        ``ValueError`` naming the known ones."""
        known = {name or DEFAULT_DATABASE: name for name in self.database_names()}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ValueError(f"unknown database {', '.join(unknown)}; databases with views: {', '.join(known)}")
        return [known[name] for name in dict.fromkeys(names)]

    def members(
        self, databases: Sequence[str] | None = None, tenants: Sequence[str] | None = None
    ) -> tuple[list[Member], list[str]]:
        """The databases (all, or the ``databases`` named), each with its views; with
        ``tenants``, only the views of those tenants. Tenant schemas are read from each database
        now (one statement; a database that cannot be read is ``unavailable``, the others are
        not held up). Returns the members and the warnings (a pattern matching no schema, a
        listed schema gone). ``ValueError`` for an unknown database or a tenant no view has."""
        chosen = self.database_names() if databases is None else self.check_databases(databases)
        wanted = set(tenants) if tenants else None
        members, warnings, seen_tenants = [], [], set()
        for name in chosen:
            member = self._member(name, wanted, warnings)
            seen_tenants.update(member.tenant_of.values())
            members.append(member)
        if wanted and not wanted <= seen_tenants and not any(m.unexpanded for m in members):
            missing = ", ".join(sorted(wanted - seen_tenants))
            known = self.members(databases)[0] if len(wanted) else []
            tenants_now = sorted({t for member in known for t in member.tenant_of.values()})
            listed = ", ".join(tenants_now[:10]) + (
                f" and {len(tenants_now) - 10} more" if len(tenants_now) > 10 else ""
            )
            raise ValueError(f"no view has tenant {missing}; the tenants: {listed or 'none'}")
        return members, warnings

    def _member(self, name: str | None, wanted: set[str] | None, warnings: list[str]) -> Member:
        settings = self.settings_for(name)
        spec = self.databases.get(name) if name else None
        placed: list[tuple[MatViewDefinition, str | None]] = []  # each view, and its tenant
        templates = [d for d in self.placed[name] if d.tenants is not None and d.tenants.by_schema]
        for definition in self.placed[name]:
            tenants = definition.tenants
            if tenants is None:
                if wanted is None:
                    placed.append((definition.model_copy(update={"database": name}) if name else definition, None))
            elif not tenants.by_schema and (wanted is None or name in wanted):
                placed.append((definition, name or DEFAULT_DATABASE))
        unavailable, unexpanded = None, []
        if templates:
            database = Database(settings)
            try:
                with database.connect("tenants") as conn:
                    found = read_tenant_schemas(conn, templates)
            except DatabaseUnavailable as exc:
                unavailable, unexpanded = str(exc), templates
            else:
                warnings.extend(found.warnings)
                placed += [
                    (template, tenant)
                    for template in templates
                    for tenant in found.by_template[template.name]
                    if wanted is None or tenant in wanted
                ]
            finally:
                database.close()
        views, tenant_of, template_of = [], {}, {}
        for definition, tenant in placed:
            view = definition if tenant is None else for_tenant(definition, tenant)
            if name is None and view.database is not None:
                view = view.model_copy(update={"database": None})
            views.append(view)
            if tenant is not None:
                tenant_of[view.name] = tenant
                by_schema = definition.tenants is not None and definition.tenants.by_schema
                template_of[view.name] = definition.qualified.name if by_schema else definition.name
        max_parallel = spec.max_parallel if spec else None
        matviews = MatViews(definitions=views, settings=settings)
        return Member(name, matviews, max_parallel, tenant_of, template_of, unavailable, unexpanded)

    def _refuse_cross_database_reads(self) -> None:
        """A view reads only views of its own database: the relations it reads that no view of
        its database defines must not be views of another (``ValueError`` naming both)."""
        owner: dict[str, str | None] = {}
        for name, definitions in self.placed.items():
            for definition in definitions:
                owner.setdefault(definition.name, name)
        for name, definitions in self.placed.items():
            graph = self.graph(name)
            for definition in definitions:
                for relation in graph.sources(definition.name):
                    other = owner.get(str(relation), name)
                    if other != name and str(relation) not in {d.name for d in definitions}:
                        raise ValueError(
                            f"view {definition.name} (database {name or DEFAULT_DATABASE}) reads {relation}, a view of "
                            f"database {other or DEFAULT_DATABASE}; a view may read only views of its own database"
                        )
