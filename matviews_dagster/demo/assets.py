"""The demo's source data as a Dagster asset, upstream of the demo views; its keys are the
translator's source keys, so the views' deps point at it whatever the translator does."""

from collections.abc import Iterator

import dagster as dg
from pydantic import Field

from ..core.names import QualifiedName
from ..resources import MatViewsResource
from ..translator import DagsterMatViewTranslator
from .data import TABLES, USERS_PER_SCALE, seed_demo_data


class DemoDataConfig(dg.Config):
    scale: int = Field(default=1, ge=1, description=f"{USERS_PER_SCALE} users per unit.")


def build_demo_source_data(translator: DagsterMatViewTranslator | None = None) -> dg.AssetsDefinition:
    """``demo_source_data``: one asset per demo table (users, accounts, events, sessions), keyed
    by ``translator.get_source_asset_key`` as the views that read them."""
    translator = translator or DagsterMatViewTranslator()
    keys = {table: translator.get_source_asset_key(QualifiedName("public", table)) for table in TABLES}

    @dg.multi_asset(
        name="demo_source_data",
        specs=[
            dg.AssetSpec(
                key,
                kinds={"postgres"},
                group_name="demo_sources",
                description=f"The demo's `{table}` table, loaded again at the run config's `scale` "
                f"({USERS_PER_SCALE} users per unit).",
            )
            for table, key in keys.items()
        ],
        description="Load the demo's tables (users, accounts, events, sessions) at the run config's `scale`.",
    )
    def demo_source_data(config: DemoDataConfig, matviews: MatViewsResource) -> Iterator[dg.MaterializeResult]:
        with matviews.get_connection() as conn:
            counts = seed_demo_data(conn, config.scale)
        for table, rows in counts.items():
            yield dg.MaterializeResult(
                asset_key=keys[table], metadata={"dagster/row_count": dg.MetadataValue.int(rows)}
            )

    return demo_source_data


demo_source_data = build_demo_source_data()
"""The demo's source data with the default translator's keys (``[public, users]``, ...)."""
