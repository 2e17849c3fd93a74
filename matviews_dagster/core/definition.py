"""``MatViewDefinition``: what a materialized view is, validated before any SQL runs."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .analysis import validate_query
from .names import QualifiedName, validate_identifier
from .vocabulary import RefreshStrategy, RowCountStrategy

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's safe loader, ~8x faster


class MatViewDefinition(BaseModel):
    """One materialized view: its name, query, refresh strategy and indexes.

    >>> MatViewDefinition(name="mv_users", sql="SELECT id, email FROM users",
    ...                   refresh_strategy="concurrent", unique_index_columns=["id"]).qualified_name
    'public.mv_users'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    sql: str
    refresh_strategy: RefreshStrategy = "regular"
    unique_index_columns: list[str] = Field(default_factory=list)
    indexes: list[list[str]] = Field(default_factory=list)
    row_count_strategy: RowCountStrategy = "estimated"
    schedule_cron: str | None = None
    statement_timeout: float | None = None
    dependencies: list[str] = Field(default_factory=list)
    description: str | None = None
    group_name: str | None = None
    owners: list[str] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return str(QualifiedName.parse(value, "name"))

    @field_validator("sql")
    @classmethod
    def _check_sql(cls, value: str) -> str:
        normalized = value.strip().rstrip(";").strip() if isinstance(value, str) else value
        validate_query(normalized)  # the text kept is the text parsed, so the parse is cached once
        return normalized

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
        return [str(QualifiedName.parse(dep, "dependencies entry")) for dep in value]

    @field_validator("statement_timeout")
    @classmethod
    def _check_timeout(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError(f"statement_timeout must be a positive number of seconds, got {value}")
        return value

    @field_validator("schedule_cron")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        if value is not None and len(value.split()) not in (5, 6):
            raise ValueError(f"schedule_cron {value!r} must be a cron expression like '0 3 * * *'")
        return value

    @model_validator(mode="after")
    def _check_strategy(self) -> MatViewDefinition:
        if self.refresh_strategy == "concurrent" and not self.unique_index_columns:
            raise ValueError(
                "refresh_strategy 'concurrent' requires unique_index_columns: "
                "REFRESH ... CONCURRENTLY needs a unique index on the view"
            )
        return self

    @property
    def qualified(self) -> QualifiedName:
        return QualifiedName.parse(self.name)

    @property
    def qualified_name(self) -> str:
        return self.name

    @property
    def sql_sha256(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

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


def definitions_from_mapping(document: Mapping[str, Any], source: str = "<mapping>") -> list[MatViewDefinition]:
    """Build definitions from a ``{"views": [...]}`` document; names must be unique."""
    if not isinstance(document, Mapping) or "views" not in document:
        raise ValueError(f"{source}: expected a mapping with a 'views:' list")
    views = document["views"]
    if not isinstance(views, list):
        raise ValueError(f"{source}: 'views' must be a list, got {type(views).__name__}")
    definitions: list[MatViewDefinition] = []
    seen: set[str] = set()
    for index, entry in enumerate(views):
        if not isinstance(entry, Mapping):
            raise ValueError(f"{source}: views[{index}] must be a mapping of fields")
        try:
            definition = MatViewDefinition(**entry)
        except ValidationError as exc:
            label = entry.get("name", index)
            raise ValueError(f"{source}: views[{index}] ({label}): {describe_error(exc)}") from None
        if definition.name in seen:
            raise ValueError(f"{source}: view {definition.name} is defined twice; names must be unique")
        seen.add(definition.name)
        definitions.append(definition)
    return definitions


def load_definitions(path: str | Path) -> list[MatViewDefinition]:
    """Load and validate the ``views:`` list of a YAML file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read definitions file {path}: {exc.strerror}") from None
    try:
        document = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None
    return definitions_from_mapping(document, str(path))


def describe_error(exc: ValidationError) -> str:
    """One line per problem, ``field: rule``, from a pydantic ``ValidationError``."""
    parts = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "definition"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{field}: {message}")
    return "; ".join(parts)
