"""matviews-dagster: PostgreSQL materialized views as first-class Dagster assets.

Every public name loads on first use: the core names import no Dagster, so scripts and the
``matviews`` CLI start fast, and ``matviews --help`` imports neither psycopg nor Dagster.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:
    from .core.connection import DatabaseUnavailable
    from .core.definition import MatViewDefinition
    from .core.definitions_file import load_definitions
    from .core.graph import ViewGraph
    from .core.matviews import MatViews
    from .core.result import OperationResult
    from .core.services.response import ServiceResponse
    from .core.settings import MatViewsSettings
    from .core.store import RunStore
    from .core.vocabulary import CreateViewJob, DeleteViewJob, RefreshViewJob, RowCountStrategy, Strategy

_LAZY = {
    "MatViewDefinition": "core.definition",
    "load_definitions": "core.definitions_file",
    "ViewGraph": "core.graph",
    "MatViews": "core.matviews",
    "MatViewsSettings": "core.settings",
    "DatabaseUnavailable": "core.connection",
    "OperationResult": "core.result",
    "RunStore": "core.store",
    "ServiceResponse": "core.services.response",
    "CreateViewJob": "core.vocabulary",
    "RefreshViewJob": "core.vocabulary",
    "DeleteViewJob": "core.vocabulary",
    "Strategy": "core.vocabulary",
    "RowCountStrategy": "core.vocabulary",
    "build_definitions": "build",
    "matview_assets": "assets",
    "build_matview_assets": "assets",
    "source_asset_specs": "assets",
    "RefreshConfig": "assets",
    "build_matview_checks": "check_specs",
    "build_matview_schedules": "schedules",
    "nightly_refresh_schedule": "schedules",
    "build_queue_sensor": "queue_sensor",
    "build_create_job": "jobs",
    "build_delete_job": "jobs",
    "MatViewsAdapter": "adapter",
    "EnqueuedRun": "adapter",
    "MatViewsResource": "resources",
    "RunStoreResource": "resources",
    "DagsterMatViewTranslator": "translator",
    "MatViewsComponent": "component",
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
    "MatViewsComponent",
    "MatViewsResource",
    "MatViewsSettings",
    "OperationResult",
    "RefreshConfig",
    "RefreshViewJob",
    "RowCountStrategy",
    "RunStore",
    "RunStoreResource",
    "ServiceResponse",
    "Strategy",
    "ViewGraph",
    "__version__",
    "build_create_job",
    "build_definitions",
    "build_delete_job",
    "build_matview_assets",
    "build_matview_checks",
    "build_matview_schedules",
    "build_queue_sensor",
    "load_definitions",
    "matview_assets",
    "nightly_refresh_schedule",
    "source_asset_specs",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names too (``dg`` finds ``MatViewsComponent`` by listing the package)."""
    return sorted({*globals(), *__all__})
