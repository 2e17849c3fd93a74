"""Resolve the DSN the same way everywhere, and mask passwords wherever one is shown."""

from __future__ import annotations

import os
import re

from psycopg.conninfo import conninfo_to_dict

_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<password>[^@\s]*)(?=@)", re.I)
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<password>'(?:[^'\\]|\\.)*'|\S+)", re.I)
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&]password=)(?P<password>[^&#\s]*)", re.I)
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class UnsetVariable(ValueError):
    """A DSN reads ``${VAR}`` and ``VAR`` is not set (or empty) in the environment."""


def expand_env(dsn: str) -> str:
    """``dsn`` with each ``${VAR}`` replaced by the variable's value, read now (the one place a
    connection opens calls it, so a ``databases:`` entry's DSN is read when a connection
    opens and its value is never kept, logged or shown). Raises ``UnsetVariable`` naming
    the variable when it is not set or empty."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        found = os.environ.get(name)
        if not found:
            raise UnsetVariable(
                f"environment variable {name} is not set (the DSN reads ${{{name}}}); set {name} to the "
                "database's DSN, e.g. postgresql://user@host/db"
            )
        return found

    return _ENV.sub(value, dsn) if "${" in dsn else dsn


def configured_dsn(explicit: str | None = None) -> str | None:
    """The explicit DSN, else ``MATVIEWS_DSN``, else ``DATABASE_URL``, else ``None``."""
    for candidate in (explicit, os.environ.get("MATVIEWS_DSN"), os.environ.get("DATABASE_URL")):
        if candidate:
            return candidate
    return None


def resolve_dsn(explicit: str | None = None) -> str:
    """A usable DSN: the configured one, or the embedded Postgres when none is configured."""
    dsn = configured_dsn(explicit)
    if dsn is not None:
        return dsn
    from .embedded import embedded_dsn

    return embedded_dsn()


def mask_dsn(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***``: a URL's ``user:password@`` and its
    ``?password=`` parameter (libpq's URI form), or the key=value form's ``password=``."""
    if "://" in dsn:
        return _QUERY_PASSWORD.sub(r"\g<head>***", _URL_PASSWORD.sub(r"\g<head>***", dsn))
    return _KV_PASSWORD.sub(r"\g<head>***", dsn)


def scrub(text: str, dsn: str | None) -> str:
    """Remove ``dsn``'s password from ``text`` (for error messages that may echo it)."""
    if not dsn:
        return text
    password = _password_of(dsn)
    text = text.replace(dsn, mask_dsn(dsn))
    if password:
        text = text.replace(password, "***")
    return text


def _password_of(dsn: str) -> str | None:
    try:
        return conninfo_to_dict(dsn).get("password") or None
    except Exception:
        match = _URL_PASSWORD.search(dsn) or _QUERY_PASSWORD.search(dsn) or _KV_PASSWORD.search(dsn)
        return match.group("password") if match else None
