"""Identifier validation and quoting for view, schema and column names."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from psycopg import sql

from .messages import shown

DEFAULT_SCHEMA = "public"
MAX_IDENTIFIER_BYTES = 63
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def validate_identifier(value: object, what: str = "identifier") -> str:
    """Return ``value`` if it is a safe SQL identifier, else raise ``ValueError``.

    The rule: ``[A-Za-z_][A-Za-z0-9_]*`` and at most 63 bytes (Postgres' NAMEDATALEN - 1).
    """
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{what} must not be empty")
    if not _IDENTIFIER.fullmatch(value):
        raise ValueError(
            f"{what} {shown(value)} is invalid: use letters, digits and underscores, "
            "starting with a letter or underscore ([A-Za-z_][A-Za-z0-9_]*)"
        )
    if len(value.encode()) > MAX_IDENTIFIER_BYTES:
        raise ValueError(
            f"{what} {shown(value)} is {len(value.encode())} bytes; "
            f"Postgres identifiers are at most {MAX_IDENTIFIER_BYTES} bytes"
        )
    return value


@dataclass(frozen=True, order=True)
class QualifiedName:
    """A schema-qualified relation name, e.g. ``public.mv_users``."""

    schema: str
    name: str

    @classmethod
    def parse(cls, value: object, what: str = "name") -> QualifiedName:
        """Parse ``view`` or ``schema.view``; the schema defaults to ``public``."""
        if isinstance(value, QualifiedName):
            return value
        if not isinstance(value, str):
            raise ValueError(f"{what} must be a string, got {type(value).__name__}")
        parts = value.split(".")
        if len(parts) == 1:
            return cls(DEFAULT_SCHEMA, validate_identifier(parts[0], what))
        if len(parts) == 2:
            schema = validate_identifier(parts[0], f"schema of {what}")
            return cls(schema, validate_identifier(parts[1], what))
        raise ValueError(f"{what} {shown(value)} is invalid: write 'view' or 'schema.view'")

    @property
    def identifier(self) -> sql.Identifier:
        """The quoted ``"schema"."name"`` for composing SQL."""
        return sql.Identifier(self.schema, self.name)

    def sibling(self, name: str) -> QualifiedName:
        """Another relation in the same schema."""
        return QualifiedName(self.schema, name)

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


def user_relation(name: QualifiedName) -> QualifiedName:
    """``name`` if it may be created by a user, else ``ValueError``: PostgreSQL reserves
    ``information_schema`` and the schemas beginning with ``pg_`` for the system."""
    if name.schema.startswith("pg_") or name.schema == "information_schema":
        raise ValueError(
            f"schema {name.schema} is the system's (PostgreSQL reserves information_schema and the schemas "
            "beginning with pg_); put the view in a schema of your own"
        )
    return name


def derived_name(base: str, suffix: str) -> str:
    """A deterministic name ``<base>_<suffix>_<hash>`` that fits in 63 bytes.

    Used for the swap's temporary objects, so the next operation can find leftovers.
    """
    digest = hashlib.sha256(base.encode()).hexdigest()[:8]
    tail = f"_{suffix}_{digest}"
    head = base.encode()[: MAX_IDENTIFIER_BYTES - len(tail)].decode(errors="ignore")
    return head + tail
