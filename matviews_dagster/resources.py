"""Dagster resources: the views' Postgres connection and the run store."""

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg
from dagster._core.libraries import DagsterLibraryRegistry
from pydantic import Field

from .core.definition import MatViewDefinition
from .core.dsn import resolve_dsn
from .core.operations import MatViews
from .version import __version__

DagsterLibraryRegistry.register("matviews-dagster", __version__, is_dagster_package=False)


class PostgresResource(dg.ConfigurableResource):
    """The database that holds the materialized views.

    >>> PostgresResource(dsn=dg.EnvVar("DATABASE_URL"))  # doctest: +SKIP

    With no ``dsn`` (and no ``MATVIEWS_DSN``/``DATABASE_URL``), the embedded Postgres is used.
    """

    dsn: str | None = Field(default=None, description="libpq DSN or URL; use EnvVar for secrets.")
    lock_timeout: float = Field(default=2.0, description="Seconds each attempt waits for a table lock.")
    lock_retries: int = Field(default=5, description="Attempts before a lock wait fails the run.")
    lock_wait_timeout: float = Field(
        default=60.0, description="Seconds an operation waits for another operation on the same view."
    )
    statement_timeout: float | None = Field(default=None, description="Seconds before a statement is cancelled.")
    application_name: str = Field(default="matviews", description="Shown in pg_stat_activity.")

    def resolved_dsn(self) -> str:
        return resolve_dsn(self.dsn)

    @contextmanager
    def get_connection(self) -> Iterator[psycopg.Connection]:
        """An autocommit connection to the views' database."""
        with psycopg.connect(self.resolved_dsn(), autocommit=True, application_name=self.application_name) as conn:
            yield conn


class RunStoreResource(dg.ConfigurableResource):
    """Where run history lives: by default the views' database, schema ``public``."""

    dsn: str | None = Field(default=None, description="Another database for the run tables; None: the views'.")
    schema_name: str = Field(default="public", description="Schema of the run tables.")


def matviews_client(
    postgres: PostgresResource, run_store: RunStoreResource, definitions: Iterable[MatViewDefinition]
) -> MatViews:
    """The core ``MatViews`` configured from the two resources."""
    return MatViews(
        dsn=postgres.resolved_dsn(),
        definitions=definitions,
        runs_dsn=run_store.dsn,
        runs_schema=run_store.schema_name,
        lock_wait_timeout=postgres.lock_wait_timeout,
        lock_timeout=postgres.lock_timeout,
        lock_retries=postgres.lock_retries,
        statement_timeout=postgres.statement_timeout,
        application_name=postgres.application_name,
    )
