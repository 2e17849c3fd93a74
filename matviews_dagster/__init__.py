"""matviews-dagster: PostgreSQL materialized views as first-class Dagster assets.

Every public name loads on first use: the core names import no Dagster, so scripts and the
``matviews`` CLI start fast, and ``matviews --help`` imports neither psycopg nor Dagster.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:
    from .core.definition import MatViewDefinition, load_definitions
    from .core.operations import DatabaseUnavailable, MatViews
    from .core.runs import RunStore
    from .core.services import ServiceResponse

_LAZY = {
    "MatViewDefinition": "core.definition",
    "load_definitions": "core.definition",
    "MatViews": "core.operations",
    "DatabaseUnavailable": "core.operations",
    "RunStore": "core.runs",
    "ServiceResponse": "core.services",
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
    "MatViewsAdapter": "adapter",
    "EnqueuedRun": "adapter",
    "build_queue_sensor": "automation",
    "PostgresResource": "resources",
    "RunStoreResource": "resources",
    "DagsterMatViewTranslator": "translator",
}

__all__ = [
    "CreateViewJob",
    "DagsterMatViewTranslator",
    "DatabaseUnavailable",
    "DeleteViewJob",
    "EnqueuedRun",
    "MatViewDefinition",
    "MatViews",
    "MatViewsAdapter",
    "PostgresResource",
    "RefreshConfig",
    "RefreshViewJob",
    "RunStore",
    "RunStoreResource",
    "ServiceResponse",
    "__version__",
    "build_create_job",
    "build_definitions",
    "build_delete_job",
    "build_matview_assets",
    "build_matview_checks",
    "build_matview_schedules",
    "build_queue_sensor",
    "load_definitions",
    "nightly_refresh_schedule",
    "source_asset_specs",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
