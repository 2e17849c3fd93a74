"""The estate fields of a definitions file: the ``databases:`` map (a name to a connection)
and a view's ``tenants:`` (the schemas or databases it is repeated in), checked before any
SQL runs. Which tenants exist is read from the catalog later (``core/tenants.py``)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .messages import shown
from .names import validate_identifier

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
DEFAULT_DATABASE = "default"
"""How ``--database`` (and a result's ``database``) names the default connection; reserved."""
_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class DatabaseSpec(BaseModel):
    """One entry of ``databases:``: ``warehouse: {dsn: "${WAREHOUSE_DSN}", max_parallel: 4,
    runs: local}``.

    ``dsn`` is a libpq DSN or URL in which ``${VAR}`` is read from the environment only when a
    connection opens (``core/dsn.py``, ``expand_env``), so a password kept in a variable is
    never in the file, a run row, a log or the UI. ``max_parallel`` (None: the caller's
    parallelism) caps the refreshes at once on this database, across a whole command.
    ``runs``: ``central`` writes its run rows to the central run store (``runs_dsn``),
    ``local`` to the run tables in this database; None: central when a ``runs_dsn`` is set,
    else local.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    dsn: str
    max_parallel: int | None = Field(default=None, ge=1)
    runs: Literal["central", "local"] | None = None

    @field_validator("dsn")
    @classmethod
    def _check_dsn(cls, value: str) -> str:
        if not value.strip():
            raise ValueError('dsn must be a DSN or URL, e.g. "${WAREHOUSE_DSN}" or "postgresql://host/db"')
        return value

    @property
    def variables(self) -> list[str]:
        """The environment variables ``dsn`` reads, in order."""
        return _ENV.findall(self.dsn)


def check_database_name(name: object) -> str:
    """A ``databases:`` key: lower-case letters, digits and ``_`` (it becomes part of asset keys,
    step names and the Dagster pool ``matviews/<name>``), not ``default`` (the default
    connection's name in ``--database``); ``ValueError`` otherwise."""
    if not isinstance(name, str) or not _DATABASE_NAME.fullmatch(name):
        raise ValueError(
            f"database name {shown(name)} must be lower-case letters, digits and _ (it names asset keys, "
            "steps and the pool matviews/<name>)"
        )
    if name == DEFAULT_DATABASE:
        raise ValueError(
            f"database name {DEFAULT_DATABASE} names the default connection (--database {DEFAULT_DATABASE}); "
            "pick another"
        )
    return name


class Tenants(BaseModel):
    """A view's ``tenants:``, one of three kinds:

    - ``{schemas: [acme, globex]}``: the view in each listed schema;
    - ``{schemas_like: "tenant_%", exclude: [tenant_test]}``: in each schema of the database
      whose name matches the ``LIKE`` pattern (read from ``pg_namespace`` when a command runs,
      and by ``matviews_tenants_sensor`` in Dagster), except those excluded;
    - ``{databases: [eu, us]}``: in each listed database of ``databases:`` (database per tenant).

    A tenant is a partition key in Dagster: a schema name, or a database name.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schemas: list[str] | None = None
    schemas_like: str | None = None
    exclude: list[str] = Field(default_factory=list)
    databases: list[str] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Tenants:
        given = [kind for kind in ("schemas", "schemas_like", "databases") if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError("tenants takes one of schemas: [...], schemas_like: 'pattern%' or databases: [...]")
        if self.exclude and self.schemas_like is None:
            raise ValueError("tenants exclude applies only to schemas_like; list the schemas you want instead")
        return self

    @field_validator("schemas", "exclude")
    @classmethod
    def _check_schemas(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        if not isinstance(value, list):
            raise ValueError("must be a list of schema names")
        for schema in value:
            validate_identifier(schema, "tenant schema")
            if schema.startswith("pg_") or schema == "information_schema":
                raise ValueError(f"tenant schema {schema} is reserved for the system")
        if len(set(value)) != len(value):
            raise ValueError(f"lists a schema twice: {value}")
        return value

    @field_validator("schemas")
    @classmethod
    def _some_schemas(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("tenants schemas must list at least one schema")
        return value

    @field_validator("schemas_like")
    @classmethod
    def _check_pattern(cls, value: str | None) -> str | None:
        if value is not None and (not value or len(value) > 63):
            raise ValueError("tenants schemas_like must be a LIKE pattern of at most 63 characters, e.g. 'tenant_%'")
        return value

    @field_validator("databases")
    @classmethod
    def _check_databases(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        if not isinstance(value, list) or not value:
            raise ValueError("tenants databases must list at least one name of databases:")
        if len(set(value)) != len(value):
            raise ValueError(f"tenants databases lists a database twice: {value}")
        return [check_database_name(name) for name in value]

    @property
    def by_schema(self) -> bool:
        """Tenants are schemas of one database (not databases)."""
        return self.databases is None

    @property
    def dynamic(self) -> bool:
        """The tenants are found in the catalog (``schemas_like``), not listed."""
        return self.schemas_like is not None

    @property
    def listed(self) -> list[str]:
        """The tenants listed in the file (empty for ``schemas_like``)."""
        return list(self.schemas or self.databases or [])

    def describe(self) -> str:
        """The tenants as the file says them, for messages."""
        if self.schemas_like is not None:
            excluded = f" except {', '.join(self.exclude)}" if self.exclude else ""
            return f"schemas like {self.schemas_like!r}{excluded}"
        kind = "schemas" if self.schemas is not None else "databases"
        return f"{kind} {', '.join(self.listed)}"
