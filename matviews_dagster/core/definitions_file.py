"""A definitions file (or a mapping of the same shape) read into ``DefinitionsFile``: the
``views:`` list, the top-level fields shared by its views, and the ``databases:`` of an estate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from . import definition_cache
from .analysis import facts_as_json, remember
from .definition import MatViewDefinition, describe_error
from .estate_fields import DatabaseSpec, check_database_name
from .timing_fields import Freshness, OnCron
from .vocabulary import RowCountStrategy, Strategy

_DOCUMENT_KEYS = {"views", "databases", "search_path", "schema_change_severity", "strategy_advice"}
_SHARED_KEYS = ("search_path", "schema_change_severity", "strategy_advice")
"""Top-level keys that apply to every view that sets none of its own."""


@dataclass(frozen=True)
class DefinitionsFile:
    """What a definitions file defines: ``views`` in file order, and ``databases`` (the
    ``databases:`` map by name, empty for a file of one database)."""

    views: list[MatViewDefinition]
    databases: dict[str, DatabaseSpec] = field(default_factory=dict)


def definitions_from_mapping(document: Mapping[str, Any], source: str = "<mapping>") -> list[MatViewDefinition]:
    """The views of a ``{"views": [...], ...}`` document (``parse_definitions``)."""
    return parse_definitions(document, source).views


def parse_definitions(document: Mapping[str, Any], source: str = "<mapping>") -> DefinitionsFile:
    """Build definitions from a ``{"views": [...], "databases": {...}, "search_path": [...]}``
    document. A top-level ``search_path``, ``schema_change_severity`` or ``strategy_advice``
    applies to the views that set none. Raises ``ValueError`` naming the source, the view and
    the field: a view defined twice in one database, a ``database:`` or ``tenants: {databases}``
    not in ``databases:``, ``tenants`` on a schema-qualified name."""
    if not isinstance(document, Mapping) or "views" not in document:
        raise ValueError(f"{source}: expected a mapping with a 'views:' list")
    unknown = sorted(set(document) - _DOCUMENT_KEYS)
    if unknown:
        raise ValueError(
            f"{source}: unknown top-level key {', '.join(map(repr, unknown))}; "
            f"use views, databases, {', '.join(_SHARED_KEYS)}"
        )
    views = document["views"]
    if not isinstance(views, list):
        raise ValueError(f"{source}: 'views' must be a list, got {type(views).__name__}")
    databases = _databases(document.get("databases"), source)
    shared = {key: document[key] for key in _SHARED_KEYS if document.get(key) is not None}
    definitions: list[MatViewDefinition] = []
    seen: dict[tuple[str | None, str], MatViewDefinition] = {}
    for index, entry in enumerate(views):
        if not isinstance(entry, Mapping):
            raise ValueError(f"{source}: views[{index}] must be a mapping of fields")
        label = entry.get("name", index)
        try:
            definition = MatViewDefinition(**{**shared, **entry})
        except ValidationError as exc:
            raise ValueError(f"{source}: views[{index}] ({label}): {describe_error(exc)}") from None
        problem = _estate_problem(definition, entry, databases)
        if problem:
            raise ValueError(f"{source}: views[{index}] ({label}): {problem}")
        for database in _databases_of(definition):
            other = seen.setdefault((database, definition.name), definition)
            if other is not definition:
                where = f" in database {database}" if database else ""
                tenant = next((d for d in (other, definition) if d.tenants is not None and d.tenants.by_schema), None)
                also = (
                    f" (a view with tenant schemas takes its name in public too: rename {tenant.qualified.name})"
                    if tenant is not None
                    else ""
                )
                raise ValueError(
                    f"{source}: view {definition.name} is defined twice{where}; names must be unique{also}"
                )
        definitions.append(definition)
    return DefinitionsFile(definitions, databases)


def _databases(value: object, source: str) -> dict[str, DatabaseSpec]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not value:
        raise ValueError(f'{source}: databases must map a name to a connection, e.g. warehouse: {{dsn: "${{VAR}}"}}')
    databases = {}
    for name, spec in value.items():
        try:
            check_database_name(name)
            if isinstance(spec, str):  # warehouse: "${WAREHOUSE_DSN}"
                spec = {"dsn": spec}
            if not isinstance(spec, Mapping):
                raise ValueError("must be {dsn: ..., max_parallel: N, runs: central|local}")
            databases[name] = DatabaseSpec(**spec)
        except ValidationError as exc:
            raise ValueError(f"{source}: databases.{name}: {describe_error(exc)}") from None
        except ValueError as exc:
            raise ValueError(f"{source}: databases.{name}: {exc}") from None
    return databases


def _estate_problem(
    definition: MatViewDefinition, entry: Mapping[str, Any], databases: Mapping[str, DatabaseSpec]
) -> str | None:
    """What is wrong with a view's ``database:`` and ``tenants:`` in this file, else None."""
    known = ", ".join(databases) or "none"
    for database in _databases_of(definition):
        if database is not None and database not in databases:
            return f"database {database} is not in databases: ({known}); add it there, or fix the name"
    tenants = definition.tenants
    if tenants is not None and tenants.by_schema and "." in str(entry.get("name", "")):
        return (
            f"tenants: {{{'schemas_like' if tenants.dynamic else 'schemas'}: ...}} needs an unqualified name "
            f"(each tenant's view is <tenant>.{definition.qualified.name}); write name: {definition.qualified.name}"
        )
    return None


def _databases_of(definition: MatViewDefinition) -> list[str | None]:
    """The databases a view is defined in: its tenant databases, else its ``database`` (None:
    the default connection)."""
    if definition.tenants is not None and definition.tenants.databases is not None:
        return list(definition.tenants.databases)
    return [definition.database]


def _constructed(fields: dict[str, Any]) -> MatViewDefinition:
    """A definition from fields validated before (the cache): no validation, nested models too."""
    from .estate_fields import Tenants

    nested = {"automation": OnCron, "freshness": Freshness, "tenants": Tenants}
    for key, model in nested.items():
        if isinstance(fields.get(key), dict):
            fields = {**fields, key: model.model_construct(**fields[key])}
    enums = {"refresh_strategy": Strategy, "row_count_strategy": RowCountStrategy}  # stored as their values
    fields = {**fields, **{key: kind(fields[key]) for key, kind in enums.items() if key in fields}}
    return MatViewDefinition.model_construct(**fields)


def load_definitions(path: str | Path) -> list[MatViewDefinition]:
    """The views of a YAML definitions file (``read_definitions_file``)."""
    return read_definitions_file(path).views


def read_definitions_file(path: str | Path) -> DefinitionsFile:
    """Load and validate a YAML definitions file; raises ``ValueError`` naming the file, the
    view and the field. A file validated before, unchanged, comes from the definitions cache
    (``core.definition_cache``) without parsing YAML or SQL again."""
    path = Path(path)
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read definitions file {path}: {exc.strerror}") from None
    cached = definition_cache.load(path, content)
    if cached is not None:
        for entry in cached["views"]:
            remember(entry["fields"]["sql"], entry["facts"])
        views = [_constructed(entry["fields"]) for entry in cached["views"]]
        databases = {name: DatabaseSpec.model_construct(**spec) for name, spec in cached["databases"].items()}
        return DefinitionsFile(views, databases)
    import yaml  # only for a file not in the cache

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's safe loader, ~8x faster
    try:
        document = yaml.load(content, Loader=loader)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None
    parsed = parse_definitions(document, str(path))
    definition_cache.store(
        path,
        content,
        {
            "views": [{"fields": d.stored_fields(), "facts": facts_as_json(d.sql)} for d in parsed.views],
            "databases": {name: spec.model_dump(mode="json") for name, spec in parsed.databases.items()},
        },
    )
    return parsed
