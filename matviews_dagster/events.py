"""Core results as Dagster events: one ``MaterializeResult`` and one check result per view,
the create job's materializations, the steps' failures and outputs, hints in run-config words.

The invocations (``invocation``) stream these as each view finishes, as dagster-dbt's
``DbtEventIterator`` does for models; this module only translates.
"""

from collections.abc import Sequence
from typing import Any

import dagster as dg

from .check_specs import CHECK_NAME
from .core.catalog import ViewDescription
from .core.health_checks import CheckOutcome
from .core.messages import in_words
from .core.result import OperationResult
from .core.store.migrations import COST_COLUMNS

RefreshEvent = dg.MaterializeResult | dg.AssetCheckResult
_CONFIG_WORDS = {
    "create_missing": " (materializing the asset creates it)",
    "create_all": "(the create_mat_views job with no views named)",
    "cascade": "cascade: true in the op's config",
    "force": "force: true in the op's config",
    "strategy": r"strategy: \1 in the step's run config",
    "apply": "the create_mat_views job with force: true",
}


def config_words(text: str) -> str:
    """A hint in Dagster's words: the core speaks Python (``cascade=True``), a Dagster user
    sets run config (``cascade: true``)."""
    return in_words(text, _CONFIG_WORDS)


def view_metadata(description: ViewDescription, database: str) -> dict[str, Any]:
    """Materialization metadata read from the catalog: table name, column schema, size."""
    schema = dg.TableSchema(columns=[dg.TableColumn(name, type_) for name, type_ in description.columns])
    return {
        "dagster/table_name": f"{database}.{description.name}",
        "dagster/column_schema": schema,
        "size_bytes": dg.MetadataValue.int(description.size_bytes or 0),
    }


PLOTTED_COSTS = (*COST_COLUMNS, "reader_wait_max_ms")
"""What a refresh cost and whom it blocked, as materialization metadata (``core/costs.py``);
the scan counters and the watcher's sample count stay in the run row's ``meta``."""


def materialize_result(
    key: dg.AssetKey, result: OperationResult, strategy: str, extra: dict[str, Any] | None = None
) -> dg.MaterializeResult:
    """The materialization of one refreshed view (``extra``: more metadata, e.g. its column
    lineage); run record ids are text, so the UI does not plot them as a series."""
    metadata: dict[str, Any] = {
        "duration_ms": dg.MetadataValue.int(result.total_duration_ms),
        "lock_wait_ms": dg.MetadataValue.int(result.lock_wait_ms or 0),
        "strategy": str(strategy),
        "run_record_id": dg.MetadataValue.text(str(result.run_id)),
        "outcome": result.outcome,
        "what_happened": result.what_happened,
    }
    if result.created is not None:
        metadata["create_run_record_id"] = dg.MetadataValue.text(str(result.created.run_id))
    if result.rows_count is not None:
        metadata["dagster/row_count"] = dg.MetadataValue.int(result.rows_count)
    if result.readings_source:
        metadata["readings_source"] = ", ".join(f"{k}: {v}" for k, v in result.readings_source.items())
    for name in PLOTTED_COSTS:  # plotted by the UI beside duration and rows
        if result.costs.get(name) is not None:
            metadata[name] = dg.MetadataValue.int(int(result.costs[name]))  # type: ignore[arg-type]
    if result.warnings:
        metadata["warnings"] = dg.MetadataValue.text("\n".join(config_words(w) for w in result.warnings))
    if result.description is not None and result.database is not None:
        metadata.update(view_metadata(result.description, result.database))
    metadata.update(extra or {})
    return dg.MaterializeResult(asset_key=key, metadata=metadata)


def check_result(key: dg.AssetKey, outcomes: Sequence[CheckOutcome]) -> dg.AssetCheckResult:
    """The view's one ``deployed_as_defined`` result from its verdicts: passed when every one
    passed; ``ERROR`` when a failed verdict is an error, else ``WARN``; the description of each
    failed verdict; each verdict, its details and its SQL texts as metadata."""
    failed = [outcome for outcome in outcomes if not outcome.passed]
    metadata: dict[str, Any] = {}
    for outcome in outcomes:
        metadata[outcome.name] = "passed" if outcome.passed else f"failed ({outcome.severity})"
        metadata.update(outcome.details)
        metadata.update({name: dg.MetadataValue.md(f"```sql\n{text}\n```") for name, text in outcome.sql.items()})
    warning_only = bool(failed) and all(outcome.severity == "warn" for outcome in failed)
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=CHECK_NAME,
        passed=not failed,
        severity=dg.AssetCheckSeverity.WARN if warning_only else dg.AssetCheckSeverity.ERROR,
        description="; ".join(outcome.description or outcome.name for outcome in failed) or None,
        metadata=metadata,
    )


def in_partition(
    event: dg.MaterializeResult | dg.AssetCheckResult, partition: str | None
) -> dg.MaterializeResult | dg.AssetCheckResult | dg.AssetMaterialization | dg.AssetCheckEvaluation:
    """``event`` of a partitioned asset's ``partition`` (a tenant): an ``AssetMaterialization`` or
    ``AssetCheckEvaluation`` naming it, as a step over several partitions (a single-run
    backfill) must report each one; ``event`` itself for an unpartitioned asset."""
    if partition is None:
        return event
    if isinstance(event, dg.MaterializeResult):
        return dg.AssetMaterialization(asset_key=event.asset_key, partition=partition, metadata=event.metadata)
    return dg.AssetCheckEvaluation(
        asset_key=event.asset_key,
        check_name=event.check_name,
        passed=event.passed,
        metadata=event.metadata,
        severity=event.severity,
        description=event.description,
        partition=partition,
    )


def failure_reason(result: OperationResult) -> str:
    """Why a view's operation did not succeed, in Dagster config words (a skip names its upstream)."""
    if result.status == "skipped":
        return f"skipped: upstream {', '.join(result.skipped_because)} failed"
    return config_words(result.error or result.status)


def step_failure(failures: list[OperationResult]) -> dg.Failure:
    failed = [r for r in failures if r.status == "failed"]
    skipped = [r for r in failures if r.status == "skipped"]
    parts = [
        f"refresh of {r.view} failed: {config_words(r.error or '')}"
        + (f" Hint: {config_words(r.hint)}." if r.hint else "")
        for r in failed
    ]
    if skipped:
        parts.append(
            "skipped because an upstream view failed: "
            + ", ".join(f"{r.view} (after {', '.join(r.skipped_because)})" for r in skipped)
        )
    return dg.Failure(
        description="; ".join(parts),
        metadata={
            "failed_views": [r.view for r in failed],
            "skipped_views": [r.view for r in skipped],
            "run_record_ids": dg.MetadataValue.text(", ".join(str(r.run_id) for r in failed)),
        },
        allow_retries=False,
    )


_SUMMARY_COLUMNS = ("view", "status", "outcome", "duration_ms", "run_id", "error")


def created_materialization(key: dg.AssetKey, result: OperationResult) -> dg.AssetMaterialization:
    """A view the create job made, as a materialization of its asset."""
    return dg.AssetMaterialization(
        asset_key=key,
        metadata={
            "run_record_id": dg.MetadataValue.text(str(result.run_id)),
            "outcome": "created",
            "duration_ms": dg.MetadataValue.int(result.duration_ms or 0),
            **({"dagster/row_count": result.rows_count} if result.rows_count is not None else {}),
        },
    )


def _summary(results: list[OperationResult]) -> dg.MetadataValue:
    rows = [
        "| " + " | ".join("" if (v := getattr(r, column)) is None else str(v) for column in _SUMMARY_COLUMNS) + " |"
        for r in results
    ]
    return dg.MetadataValue.md(
        "\n".join(["| view | status | outcome | ms | run | error |", "|---|---|---|---|---|---|", *rows])
    )


def job_output(results: list[OperationResult]) -> dg.Output:
    """The create or delete op's output: every result as a dict, and a summary table."""
    return dg.Output([r.to_dict() for r in results], metadata={"summary": _summary(results), "views": len(results)})


def job_failure(results: list[OperationResult], failed: list[OperationResult]) -> dg.Failure:
    """The create or delete op's failure: each view that failed or was skipped, and why."""
    return dg.Failure(
        description="; ".join(
            f"{r.view}: {config_words(r.error or '')}" + (f" Hint: {config_words(r.hint)}." if r.hint else "")
            for r in failed
        ),
        metadata={"summary": _summary(results), "failed_views": [r.view for r in failed]},
        allow_retries=False,
    )
