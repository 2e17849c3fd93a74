"""``MatViewDefinition``: what a materialized view is, validated before any SQL runs."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .analysis import statement_text, validate_query
from .estate_fields import Tenants, check_database_name
from .names import DEFAULT_SCHEMA, QualifiedName, user_relation, validate_identifier
from .timing_fields import Freshness, OnCron, check_cron_expression
from .vocabulary import DefinitionChangePolicy, RowCountStrategy, Strategy


class MatViewDefinition(BaseModel):
    """One materialized view: its name, query, refresh strategy and indexes.

    >>> MatViewDefinition(name="mv_users", sql="SELECT id, email FROM users",
    ...                   refresh_strategy="concurrent", unique_index_columns=["id"]).name
    'public.mv_users'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    sql: str
    refresh_strategy: Strategy = Strategy.regular
    unique_index_columns: list[str] = Field(default_factory=list)
    indexes: list[list[str]] = Field(default_factory=list)
    row_count_strategy: RowCountStrategy = RowCountStrategy.estimated
    schedule_cron: str | None = None
    statement_timeout: float | None = None
    dependencies: list[str] = Field(default_factory=list)
    description: str | None = None
    group_name: str | None = None
    owners: list[str] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)
    search_path: list[str] | None = None
    column_descriptions: dict[str, str] = Field(default_factory=dict)
    on_definition_change: DefinitionChangePolicy = "apply"
    automation: Literal["eager"] | OnCron | None = None
    freshness: Freshness | None = None
    schema_change_severity: Literal["warn", "error", "off"] = "warn"
    strategy_advice: Literal["warn", "off"] = "warn"
    database: str | None = None
    tenants: Tenants | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return str(user_relation(QualifiedName.parse(value, "name")))

    @field_validator("sql")
    @classmethod
    def _check_sql(cls, value: str) -> str:
        text = statement_text(value)  # no trailing comment or ';' to swallow what is appended
        validate_query(text)  # the text kept is the text parsed, so the parse is cached once
        return text

    @field_validator("database")
    @classmethod
    def _check_database(cls, value: str | None) -> str | None:
        return value if value is None else check_database_name(value)

    @field_validator("schema_change_severity", "strategy_advice", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        return "off" if value is False else value  # YAML reads a bare `off` as false

    @field_validator("search_path")
    @classmethod
    def _check_search_path(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        if not isinstance(value, list) or not value:
            raise ValueError("search_path must be a non-empty list of schema names")
        return [validate_identifier(schema, "search_path schema") for schema in value]

    @field_validator("column_descriptions")
    @classmethod
    def _check_column_descriptions(cls, value: dict[str, str]) -> dict[str, str]:
        for column in value:
            validate_identifier(column, "column_descriptions column")
        return value

    @field_validator("unique_index_columns")
    @classmethod
    def _check_unique_columns(cls, value: list[str]) -> list[str]:
        return _columns(value, "unique_index_columns") if value else value

    @field_validator("indexes")
    @classmethod
    def _check_indexes(cls, value: list[list[str]]) -> list[list[str]]:
        return [_columns(columns, f"indexes[{i}]") for i, columns in enumerate(value)]

    @field_validator("dependencies")
    @classmethod
    def _check_dependencies(cls, value: list[str]) -> list[str]:
        """Kept as written: an unqualified entry resolves along the search path, as SQL does."""
        for dependency in value:
            QualifiedName.parse(dependency, "dependencies entry")
        return value

    @field_validator("statement_timeout")
    @classmethod
    def _check_timeout(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError(f"statement_timeout must be a positive number of seconds, got {value}")
        return value

    @field_validator("schedule_cron")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        return value if value is None else check_cron_expression(value, "schedule_cron")

    @model_validator(mode="after")
    def _check_strategy(self) -> MatViewDefinition:
        if self.refresh_strategy == "concurrent" and not self.unique_index_columns:
            raise ValueError(
                "refresh_strategy 'concurrent' requires unique_index_columns: "
                "REFRESH ... CONCURRENTLY needs a unique index on the view"
            )
        if self.tenants is not None and self.tenants.databases is not None and self.database is not None:
            raise ValueError("a view with tenants: {databases: [...]} is in each listed database; drop database:")
        if self.tenants is not None and self.tenants.by_schema and self.search_path is not None:
            raise ValueError(
                "a view with tenant schemas resolves names in the tenant's schema, then public; drop search_path"
            )
        return self

    @property
    def qualified(self) -> QualifiedName:
        return QualifiedName.parse(self.name)

    @property
    def resolution_path(self) -> list[str]:
        """The schemas unqualified names in the SQL are looked up in, in order: ``search_path``
        when set, else the view's own schema, then ``public``. Views are created with exactly
        this path first, so Postgres binds the names as the dependency graph does."""
        return self.search_path or list(dict.fromkeys([self.qualified.schema, DEFAULT_SCHEMA]))

    @property
    def sql_sha256(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def fingerprint(self) -> str:
        """What the deployed view must match (query, search path, indexes, comments), hashed;
        recorded when the view is created or a change applied, so a refresh finds an
        unchanged definition without asking the server."""
        deployed = [
            self.sql,
            self.resolution_path,
            self.unique_index_columns,
            self.indexes,
            self.description,
            self.column_descriptions,
        ]
        return hashlib.sha256(json.dumps(deployed, sort_keys=True).encode()).hexdigest()

    def stored_fields(self) -> dict[str, Any]:
        """The fields persisted in ``mat_view_definitions`` (enough to rebuild the definition)."""
        return self.model_dump(mode="json")


def _columns(value: list[str], field: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{field} must be a non-empty list of column names")
    for column in value:
        validate_identifier(column, f"{field} column")
    if len(set(value)) != len(value):
        raise ValueError(f"{field} lists a column twice: {value}")
    return value


def describe_error(exc: ValidationError) -> str:
    """One line per problem, ``field: rule``, from a pydantic ``ValidationError``."""
    parts = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "definition"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{field}: {message}")
    return "; ".join(parts)
