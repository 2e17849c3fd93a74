"""matviews-dagster: PostgreSQL materialized views as first-class Dagster assets.

The core names import no Dagster, so scripts and the ``matviews`` CLI start fast; the
Dagster-facing names load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .core.definition import MatViewDefinition, load_definitions
from .core.operations import DatabaseUnavailable, MatViews
from .core.runs import RunStore
from .core.services import ServiceResponse
from .version import __version__

_LAZY = {
    "build_definitions": "build",
    "build_matview_assets": "assets",
    "source_asset_specs": "assets",
    "RefreshConfig": "assets",
    "build_matview_checks": "checks",
    "build_matview_schedules": "automation",
    "nightly_refresh_schedule": "automation",
    "build_create_job": "ops",
    "build_delete_job": "ops",
    "CreateViewJob": "ops",
    "RefreshViewJob": "ops",
    "DeleteViewJob": "ops",
    "PostgresResource": "resources",
    "RunStoreResource": "resources",
    "DagsterMatViewTranslator": "translator",
}

__all__ = [
    "DatabaseUnavailable",
    "MatViewDefinition",
    "MatViews",
    "RunStore",
    "ServiceResponse",
    "__version__",
    "load_definitions",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
