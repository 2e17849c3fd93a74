"""matviews-dagster: PostgreSQL materialized views as first-class Dagster assets.

The core names import no Dagster, so scripts and the ``matviews`` CLI start fast.
"""

from .core.definition import MatViewDefinition, load_definitions
from .core.operations import DatabaseUnavailable, MatViews
from .core.runs import RunStore
from .core.services import ServiceResponse

__all__ = [
    "DatabaseUnavailable",
    "MatViewDefinition",
    "MatViews",
    "RunStore",
    "ServiceResponse",
    "load_definitions",
]
