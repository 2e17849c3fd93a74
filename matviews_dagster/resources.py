"""Dagster resources: ``MatViewsResource`` does the work, ``RunStoreResource`` keeps the record.

As ``DbtCliResource.cli(...).stream()`` and ``SlingResource.replicate(context=...)`` do, the
resource runs the selected views of a ``@matview_assets`` step and streams one event per view
as it finishes.
"""

import dataclasses
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import dagster as dg
import psycopg
from pydantic import Field

from .core.arguments import UNSET
from .core.definition import MatViewDefinition
from .core.dsn import resolve_dsn
from .core.estate import database_settings
from .core.estate_fields import DatabaseSpec
from .core.matviews import MatViews
from .core.settings import DEFAULTS, MatViewsSettings
from .core.vocabulary import DEFAULT_MAX_PARALLEL
from .invocation import JobInvocation, RefreshInvocation
from .version import __version__

dg.DagsterLibraryRegistry.register("matviews-dagster", __version__, is_dagster_package=False)


def quiet_dagster_warnings() -> None:
    """Silence, by exact message only, a warning Dagster 1.13 raises from its own code about an
    argument nobody passed: initializing a nested resource (``run_store``) reads the deprecated
    ``InitResourceContext.dagster_run``, once per run. Called on import and by
    ``build_definitions``."""
    warnings.filterwarnings(
        "ignore", message=r"InitResourceContext\.dagster_run is deprecated", category=DeprecationWarning
    )


quiet_dagster_warnings()


def config_value(value: str | None) -> str | None:
    """A field's value outside a run too: Dagster resolves ``EnvVar`` fields only when it
    initializes the resource for a run, so a script reading one gets the variable's name."""
    return value.get_value() if isinstance(value, dg.EnvVar) else value


class RunStoreResource(dg.ConfigurableResource):
    """Where run history lives: by default the views' database, schema ``public``.

    >>> RunStoreResource(dsn=dg.EnvVar("OPS_DSN"), schema_name="matviews_ops")  # doctest: +SKIP
    """

    dsn: str | None = Field(default=None, description="Another database for the run tables; None: the views'.")
    schema_name: str = Field(default=DEFAULTS.runs_schema, description="Schema of the run tables.")


_SHARED_SETTINGS = tuple(
    field.name
    for field in dataclasses.fields(MatViewsSettings)
    if field.name not in ("dsn", "runs_dsn", "runs_schema", "database_name")
)
"""The settings ``MatViewsResource`` declares as fields of the same name (Dagster config needs
them declared; their defaults are ``DEFAULTS``'s); the DSNs and schema come from it and its
run store."""


class MatViewsResource(dg.ConfigurableResource):
    """The database that holds the materialized views, and the work done on them.

    >>> MatViewsResource(dsn=dg.EnvVar("DATABASE_URL"), max_parallel=4)  # doctest: +SKIP

    With no ``dsn`` (and no ``MATVIEWS_DSN``/``DATABASE_URL``), the embedded Postgres is used.
    ``max_parallel`` views refresh at once, each on its own connection: keep it under what
    the server's ``max_connections`` and cores allow (see docs/deployment.md).
    """

    dsn: str | None = Field(default=None, description="libpq DSN or URL; use EnvVar for secrets.")
    max_parallel: int = Field(
        default=DEFAULT_MAX_PARALLEL, ge=1, description="Views refreshed at once, one connection each."
    )
    lock_timeout: float = Field(
        default=DEFAULTS.lock_timeout, description="Seconds each attempt waits for a table lock."
    )
    lock_retries: int = Field(default=DEFAULTS.lock_retries, description="Attempts before a lock wait fails the view.")
    lock_wait_timeout: float = Field(
        default=DEFAULTS.lock_wait_timeout,
        description="Seconds an operation waits for another operation on the same view.",
    )
    statement_timeout: float | None = Field(
        default=DEFAULTS.statement_timeout, description="Seconds before a statement is cancelled."
    )
    application_name: str = Field(default=DEFAULTS.application_name, description="Shown in pg_stat_activity.")
    run_store: RunStoreResource | None = Field(
        default=None, description="Where the run rows go; None: the views' database, schema public."
    )
    column_lineage: bool = Field(
        default=True,
        description="Report each view's column lineage (dagster/column_lineage) with its materialization.",
    )

    def resolved_dsn(self) -> str:
        """The DSN: this resource's (an ``EnvVar`` read now), else ``MATVIEWS_DSN``,
        ``DATABASE_URL``, else the embedded Postgres."""
        return resolve_dsn(config_value(self.dsn))

    def settings(self) -> MatViewsSettings:
        """The core's settings: this resource's fields of the same names, its run store's, and
        its DSN (an ``EnvVar`` read now)."""
        run_store = self.run_store or RunStoreResource()
        own = {name: getattr(self, name) for name in _SHARED_SETTINGS}
        return MatViewsSettings(
            **own, dsn=self.resolved_dsn(), runs_dsn=config_value(run_store.dsn), runs_schema=run_store.schema_name
        )

    def matviews(
        self,
        definitions: Iterable[MatViewDefinition] = (),
        *,
        database: str | None = None,
        spec: DatabaseSpec | None = None,
    ) -> MatViews:
        """The core ``MatViews`` configured from this resource and its run store: of the default
        connection, or of ``database`` of an estate (``spec``, its ``databases:`` entry; its
        DSN's ``${VAR}`` read when a connection opens, its run rows in the run store's database
        unless ``runs: local``)."""
        return MatViews(definitions=definitions, settings=database_settings(self.settings(), database, spec))

    @contextmanager
    def get_connection(self) -> Iterator[psycopg.Connection]:
        """An autocommit connection to the views' database."""
        with self.matviews().connect() as conn:
            yield conn

    def refresh(
        self,
        context: dg.AssetExecutionContext,
        *,
        strategy: str | None = None,
        row_count_strategy: Any = UNSET,
    ) -> RefreshInvocation:
        """The refresh step of this ``@matview_assets`` definition: ``yield from
        matviews.refresh(context).stream()`` (or iterate it) refreshes the selected views and runs
        their checks, yielding a ``MaterializeResult`` and its ``AssetCheckResult``s as each view
        finishes (``invocation.RefreshInvocation``).

        Views refresh upstream first, ``max_parallel`` at once. ``strategy`` and
        ``row_count_strategy`` override the definitions' for this run; left out, the step's run
        config (``strategy``, ``row_count_strategy``) decides, then each definition. A missing
        view is created first. After every view that can run has run, the step fails naming
        each view that failed and each one skipped because an upstream view failed; the others
        keep their materializations. A re-execution from failure refreshes only the views its
        parent runs did not.
        """
        return RefreshInvocation(
            self.matviews,
            self.max_parallel,
            context,
            strategy=strategy,
            row_count_strategy=row_count_strategy,
            column_lineage=self.column_lineage,
        )

    def create(
        self,
        context: dg.OpExecutionContext,
        definitions: Sequence[MatViewDefinition],
        views: Sequence[str | int] = (),
        *,
        force: bool = False,
        keys: Mapping[str, dg.AssetKey] | None = None,
    ) -> JobInvocation:
        """The create op's work (``invocation.JobInvocation``): create ``views`` (names or
        definition ids; empty: every one of ``definitions``), upstream first, ``max_parallel``
        at once; ``keys`` (``{view name: asset key}``) names the assets its creates materialize."""
        return JobInvocation(
            self.matviews, self.max_parallel, context, definitions, "create", views, flag=force, keys=keys
        )

    def delete(
        self,
        context: dg.OpExecutionContext,
        definitions: Sequence[MatViewDefinition],
        views: Sequence[str | int] = (),
        *,
        cascade: bool = False,
    ) -> JobInvocation:
        """The delete op's work (``invocation.JobInvocation``): drop ``views`` (empty: every one
        of ``definitions``), dependents first, ``max_parallel`` at once."""
        return JobInvocation(self.matviews, self.max_parallel, context, definitions, "delete", views, flag=cascade)
