"""Validated definitions files, cached by content, so a CLI call or a code-location load does
not parse the YAML and analyse every query with pglast again when nothing changed.

An entry is keyed by the file's bytes and by everything validation depends on: this
package's version, the source files of its validation code (so an edited checkout cannot
use a stale entry), and the installed pydantic and pglast. Any change makes a new key; a
missing, unreadable or foreign entry is a miss. ``MATVIEWS_CACHE=off`` turns the cache off;
``MATVIEWS_CACHE_DIR`` moves it (default ``$XDG_CACHE_HOME/matviews``, else
``~/.cache/matviews``). Nothing fails because of the cache: errors reading or writing it are
misses.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import sys
from functools import cache
from pathlib import Path
from typing import Any

from ..version import __version__

FORMAT = 2
_VALIDATION_MODULES = (
    "definition.py",
    "definitions_file.py",
    "estate_fields.py",
    "analysis.py",
    "names.py",
    "vocabulary.py",
    "definition_cache.py",
)


def cache_dir() -> Path | None:
    if os.environ.get("MATVIEWS_CACHE", "").lower() in ("off", "0", "false", "no"):
        return None
    configured = os.environ.get("MATVIEWS_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "matviews"


@cache
def _fingerprint() -> str:
    parts = [str(FORMAT), __version__, sys.version]
    here = Path(__file__).parent
    files = [here / name for name in _VALIDATION_MODULES]
    for package in ("pglast", "pydantic", "pydantic_core"):
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            return ""  # cannot tell what validated an entry: never cache
        files.append(Path(spec.origin))
    for file in files:
        stat = file.stat()
        parts.append(f"{file}:{stat.st_mtime_ns}:{stat.st_size}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _entry(path: Path, content: bytes) -> Path | None:
    directory = cache_dir()
    fingerprint = _fingerprint() if directory is not None else ""
    if directory is None or not fingerprint:
        return None
    source = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    key = hashlib.sha256(content + fingerprint.encode()).hexdigest()[:32]
    return directory / f"definitions-{source}-{key}.json"


def load(path: Path, content: bytes) -> dict[str, Any] | None:
    """What was stored for this file's ``content`` (``{"views": [...], "databases": {...}}``),
    or ``None``."""
    entry = _entry(path, content)
    if entry is None:
        return None
    try:
        stored = json.loads(entry.read_text())
    except (OSError, ValueError):
        return None
    return stored if isinstance(stored, dict) and {"views", "databases"} <= set(stored) else None


def store(path: Path, content: bytes, entries: dict[str, Any]) -> None:
    """Keep what was validated for this ``content``; older entries of the file go."""
    entry = _entry(path, content)
    if entry is None:
        return
    import tempfile  # only when an entry is written

    with contextlib.suppress(OSError):
        entry.parent.mkdir(parents=True, exist_ok=True)
        for old in entry.parent.glob(entry.name.rsplit("-", 1)[0] + "-*.json"):
            if old != entry:
                old.unlink(missing_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=entry.parent, suffix=".tmp", delete=False) as handle:
            json.dump(entries, handle)
        os.replace(handle.name, entry)  # readers see a whole file or none
