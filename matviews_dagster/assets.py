"""One Dagster asset per materialized view: materializing it refreshes the view."""

from collections.abc import Sequence
from enum import Enum
from functools import cache
from typing import Any

import dagster as dg
from pydantic import Field

from .core.arguments import UNSET
from .core.catalog import ViewDescription, describe_view
from .core.definition import MatViewDefinition
from .resources import PostgresResource, RunStoreResource, matviews_client
from .translator import DagsterMatViewTranslator

POSTGRES_KEY = "matviews_postgres"
RUN_STORE_KEY = "matviews_run_store"
ADAPTER_KEY = "matviews_adapter"
DEFAULT_POOL = "matviews"


class Strategy(Enum):
    regular = "regular"
    concurrent = "concurrent"
    swap = "swap"


class RowCount(Enum):
    estimated = "estimated"
    exact = "exact"
    none = "none"


class RefreshConfig(dg.Config):
    """Run config for one materialization; ``None`` keeps the definition's choice."""

    strategy: Strategy | None = Field(default=None, description="Refresh strategy for this run only.")
    row_count_strategy: RowCount | None = Field(default=None, description="Row counting for this run only.")


def view_metadata(description: ViewDescription, database: str) -> dict[str, Any]:
    """Materialization metadata read from the catalog: table name, column schema, size."""
    schema = dg.TableSchema(columns=[dg.TableColumn(name, type_) for name, type_ in description.columns])
    return {
        "dagster/table_name": f"{database}.{description.name}",
        "dagster/column_schema": schema,
        "size_bytes": dg.MetadataValue.int(description.size_bytes or 0),
    }


def refresh_op_name(definition: MatViewDefinition) -> str:
    """The op (step) name of a view's asset, used to address its run config."""
    return f"refresh_{definition.qualified.schema}__{definition.qualified.name}"


@cache
def _refresh_config_schema() -> Any:
    """``RefreshConfig``'s schema, inferred once: inferring it per asset was a third of the load time."""
    return RefreshConfig.to_fields_dict()


def _build_asset(definition: MatViewDefinition, spec: dg.AssetSpec, pool: str | None) -> dg.AssetsDefinition:
    @dg.multi_asset(name=refresh_op_name(definition), specs=[spec], pool=pool, config_schema=_refresh_config_schema())
    def _refresh(
        context: dg.AssetExecutionContext,
        matviews_postgres: PostgresResource,
        matviews_run_store: RunStoreResource,
    ) -> dg.MaterializeResult:
        config = RefreshConfig(**(context.op_execution_context.op_config or {}))
        with matviews_client(matviews_postgres, matviews_run_store, [definition]) as mv:
            result = mv.refresh(
                definition,
                config.row_count_strategy.value if config.row_count_strategy else UNSET,
                strategy=config.strategy.value if config.strategy else None,
                create_if_missing=True,
                dagster_run_id=context.run.run_id,
                describe=True,
            )
            if result["status"] != "success":
                hint = f" Hint: {result['hint']}." if result.get("hint") else ""
                raise dg.Failure(
                    description=f"refresh of {definition.name} failed: {result['error']}.{hint}",
                    metadata={"run_record_id": result["run_id"], "view": definition.name},
                    allow_retries=False,
                )
            if "description" in result:
                description, database = result["description"], result["database"]
            else:  # the description could not be read on the refresh's connection
                with mv.connect("metadata") as conn:
                    description, database = describe_view(conn, definition.qualified), conn.info.dbname
        strategy = config.strategy.value if config.strategy else definition.refresh_strategy
        created = result.get("created")
        duration_ms = result["duration_ms"] + (created["duration_ms"] if created else 0)
        metadata: dict[str, Any] = {
            "duration_ms": dg.MetadataValue.int(duration_ms),
            "strategy": strategy,
            "run_record_id": dg.MetadataValue.int(result["run_id"]),
            "outcome": result["outcome"],
            **view_metadata(description, database),
        }
        if created:
            metadata["create_run_record_id"] = dg.MetadataValue.int(created["run_id"])
        if result["rows_count"] is not None:
            metadata["dagster/row_count"] = dg.MetadataValue.int(result["rows_count"])
        return dg.MaterializeResult(asset_key=spec.key, metadata=metadata)

    return _refresh


def build_matview_assets(
    definitions: Sequence[MatViewDefinition],
    *,
    translator: DagsterMatViewTranslator | None = None,
    pool: str | None = DEFAULT_POOL,
) -> list[dg.AssetsDefinition]:
    """One asset per definition; they run in parallel under the multiprocess executor, at most
    as many at once as the ``pool`` allows (set a limit with ``dagster instance concurrency``)."""
    translator = translator or DagsterMatViewTranslator()
    return [_build_asset(d, translator.get_asset_spec(d), pool) for d in definitions]


def source_asset_specs(
    assets: Sequence[dg.AssetsDefinition], *, also_defined: Sequence[dg.AssetKey] = ()
) -> list[dg.AssetSpec]:
    """External specs for upstream tables that no asset produces, so lineage shows them."""
    produced = {key for asset in assets for key in asset.keys} | set(also_defined)
    upstream = {dep for asset in assets for deps in asset.asset_deps.values() for dep in deps}
    return [
        dg.AssetSpec(key=key, kinds={"postgres"}, description=f"Source table {'.'.join(key.path)}")
        for key in sorted(upstream - produced, key=lambda k: k.to_user_string())
    ]
