"""The demo's source data as a Dagster asset, upstream of the demo views."""

from collections.abc import Iterator

import dagster as dg
from pydantic import Field

from ..core.names import QualifiedName
from ..resources import MatViewsResource
from ..translator import relation_key
from .data import TABLES, USERS_PER_SCALE, seed_demo_data


class DemoDataConfig(dg.Config):
    scale: int = Field(default=1, ge=1, description=f"{USERS_PER_SCALE} users per unit.")


@dg.multi_asset(
    name="demo_source_data",
    specs=[
        dg.AssetSpec(relation_key(QualifiedName("public", table)), kinds={"postgres"}, group_name="demo_sources")
        for table in TABLES
    ],
)
def demo_source_data(config: DemoDataConfig, matviews: MatViewsResource) -> Iterator[dg.MaterializeResult]:
    """(Re)load users, accounts, events and sessions at ``scale``."""
    with matviews.get_connection() as conn:
        counts = seed_demo_data(conn, config.scale)
    for table, rows in counts.items():
        yield dg.MaterializeResult(
            asset_key=relation_key(QualifiedName("public", table)),
            metadata={"dagster/row_count": dg.MetadataValue.int(rows)},
        )
