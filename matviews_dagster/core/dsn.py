"""Resolve the DSN the same way everywhere, and mask passwords wherever one is shown."""

from __future__ import annotations

import os
import re

from psycopg.conninfo import conninfo_to_dict

_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<password>[^@\s]*)(?=@)", re.I)
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<password>'(?:[^'\\]|\\.)*'|\S+)", re.I)


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
    """``dsn`` with any password replaced by ``***`` (URL or key=value form)."""
    if "://" in dsn:
        return _URL_PASSWORD.sub(r"\g<head>***", dsn)
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
        match = _URL_PASSWORD.search(dsn) or _KV_PASSWORD.search(dsn)
        return match.group("password") if match else None
