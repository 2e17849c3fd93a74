"""Tenants: which schemas of a database a view with ``tenants:`` is repeated in (read from
``pg_namespace``), and the view each tenant gets (``for_tenant``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg

from .definition import MatViewDefinition
from .names import DEFAULT_SCHEMA, validate_identifier

_SCHEMAS = """
SELECT p.pattern, n.nspname
  FROM unnest(%(patterns)s::text[]) AS p(pattern)
  JOIN pg_namespace n ON n.nspname LIKE p.pattern
 WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
UNION ALL
SELECT NULL, nspname FROM pg_namespace WHERE nspname = ANY(%(listed)s::text[])
"""
"""Tenant schemas in one statement: the schemas each ``LIKE`` pattern matches (the system's
excluded), and which of the listed schemas exist."""


@dataclass
class TenantSchemas:
    """The tenant schemas of one database, by template name (``tenants`` of its views), and
    what deserves a warning: a pattern matching no schema, a listed schema that is gone."""

    by_template: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def read_tenant_schemas(conn: psycopg.Connection, templates: Sequence[MatViewDefinition]) -> TenantSchemas:
    """The schemas each template with schema tenants is repeated in, sorted: its ``schemas``
    that exist, or the schemas matching its ``schemas_like`` minus ``exclude``. A schema whose
    name is not a plain identifier is left out with a warning. One round trip."""
    patterns = sorted({t.tenants.schemas_like for t in templates if t.tenants and t.tenants.schemas_like})
    listed = sorted({s for t in templates if t.tenants and t.tenants.schemas for s in t.tenants.schemas})
    matched: dict[str, set[str]] = {pattern: set() for pattern in patterns}
    existing: set[str] = set()
    for pattern, schema in conn.execute(_SCHEMAS, {"patterns": patterns, "listed": listed}).fetchall():
        (existing if pattern is None else matched[pattern]).add(schema)
    found = TenantSchemas()
    for template in templates:
        tenants = template.tenants
        if tenants is None or not tenants.by_schema:
            continue
        name = template.qualified.name
        if tenants.schemas_like is not None:
            schemas = sorted(matched[tenants.schemas_like] - set(tenants.exclude))
            if not schemas:
                found.warnings.append(f"{name}: no schema matches tenants {tenants.describe()}; no tenant has it")
        else:
            schemas = [s for s in tenants.listed if s in existing]
            gone = [s for s in tenants.listed if s not in existing]
            if gone:
                schemas = (
                    f"schemas {', '.join(gone)} do not exist" if len(gone) > 1 else f"schema {gone[0]} does not exist"
                )
                found.warnings.append(f"{name}: tenant {schemas}; left out")
        found.by_template[template.name] = _identifiers(schemas, name, found.warnings)
    found.warnings = list(dict.fromkeys(found.warnings))
    return found


def _identifiers(schemas: list[str], name: str, warnings: list[str]) -> list[str]:
    kept = []
    for schema in schemas:
        try:
            kept.append(validate_identifier(schema, "tenant schema"))
        except ValueError:
            warnings.append(f"{name}: tenant schema {schema!r} is not a plain identifier; left out")
    return kept


def for_tenant(template: MatViewDefinition, tenant: str) -> MatViewDefinition:
    """The view ``template`` (with ``tenants:``) is in ``tenant``: for schema tenants
    ``<tenant>.<name>``, its unqualified names resolved in the tenant's schema, then
    ``public``; for database tenants the same name in database ``tenant``. The result has no
    ``tenants`` (it is one view), and is built without validating again (the template was)."""
    tenants = template.tenants
    if tenants is None:
        raise ValueError(f"view {template.name} has no tenants")
    if tenants.by_schema:
        path = list(dict.fromkeys([tenant, DEFAULT_SCHEMA]))
        name = f"{tenant}.{template.qualified.name}"
        return template.model_copy(update={"name": name, "search_path": path, "tenants": None})
    return template.model_copy(update={"database": tenant, "tenants": None})
