"""Dagster events from core results: one ``MaterializeResult`` and its check results per view.

The step of a ``@matview_assets`` definition streams these as each view finishes, as
dagster-dbt's ``DbtEventIterator`` does for models.
"""

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from enum import Enum
from typing import TYPE_CHECKING, Any

import dagster as dg

from .core.arguments import UNSET
from .core.catalog import ViewDescription
from .core.checks import CheckOutcome
from .core.result import OperationResult
from .core.vocabulary import RUN_KEY_TAG
from .core.wording import in_words
from .translator import definitions_of

if TYPE_CHECKING:
    from .core.matviews import MatViews
    from .resources import MatViewsResource

RefreshEvent = dg.MaterializeResult | dg.AssetCheckResult
_CONFIG_WORDS = {
    "create_missing": " (materializing the asset creates it)",
    "create_all": "(the create_mat_views job with no views named)",
    "cascade": "cascade: true in the op's config",
    "force": "force: true in the op's config",
    "strategy": r"strategy: \1 in the step's run config",
}


def config_words(text: str) -> str:
    """A hint in Dagster's words: the core speaks Python (``cascade=True``), a Dagster user
    sets run config (``cascade: true``)."""
    return in_words(text, _CONFIG_WORDS)


_SEVERITY = {"error": dg.AssetCheckSeverity.ERROR, "warn": dg.AssetCheckSeverity.WARN}


def view_metadata(description: ViewDescription, database: str) -> dict[str, Any]:
    """Materialization metadata read from the catalog: table name, column schema, size."""
    schema = dg.TableSchema(columns=[dg.TableColumn(name, type_) for name, type_ in description.columns])
    return {
        "dagster/table_name": f"{database}.{description.name}",
        "dagster/column_schema": schema,
        "size_bytes": dg.MetadataValue.int(description.size_bytes or 0),
    }


def materialize_result(key: dg.AssetKey, result: OperationResult, strategy: str) -> dg.MaterializeResult:
    """The materialization of one refreshed view; run record ids are text, so the UI does not
    plot them as a series."""
    metadata: dict[str, Any] = {
        "duration_ms": dg.MetadataValue.int(result.total_duration_ms),
        "lock_wait_ms": dg.MetadataValue.int(result.lock_wait_ms or 0),
        "strategy": strategy,
        "run_record_id": dg.MetadataValue.text(str(result.run_id)),
        "outcome": result.outcome,
    }
    if result.created is not None:
        metadata["create_run_record_id"] = dg.MetadataValue.text(str(result.created.run_id))
    if result.rows_count is not None:
        metadata["dagster/row_count"] = dg.MetadataValue.int(result.rows_count)
    if result.warnings:
        metadata["warnings"] = dg.MetadataValue.text("\n".join(result.warnings))
    if result.description is not None and result.database is not None:
        metadata.update(view_metadata(result.description, result.database))
    return dg.MaterializeResult(asset_key=key, metadata=metadata)


def check_result(key: dg.AssetKey, outcome: CheckOutcome) -> dg.AssetCheckResult:
    metadata: dict[str, Any] = dict(outcome.details)
    metadata.update({name: dg.MetadataValue.md(f"```sql\n{text}\n```") for name, text in outcome.sql.items()})
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=outcome.name,
        passed=outcome.passed,
        severity=_SEVERITY[outcome.severity],
        description=outcome.description,
        metadata=metadata,
    )


def refresh_events(
    resource: "MatViewsResource", context: dg.AssetExecutionContext, *, strategy: str | None, row_count: Any
) -> Iterator[RefreshEvent]:
    """``MatViewsResource.refresh``: the selected views and checks of the step, as events."""
    definitions = definitions_of(context.assets_def)
    names = {key: definition.name for key, definition in definitions.items()}
    keys = {name: key for key, name in names.items()}
    refresh = [names[key] for key in context.selected_asset_keys if key in names]
    checks: dict[str, list[str]] = {}
    for check_key in context.selected_asset_check_keys:
        if check_key.asset_key in names:
            checks.setdefault(names[check_key.asset_key], []).append(check_key.name)
    done = _refreshed_by_parent_runs(resource, context, definitions.values())
    if done:
        context.log.info(f"re-execution from failure: {len(done)} view(s) refreshed by the parent run(s) are skipped")
    refresh = [name for name in refresh if name not in done]
    config = _run_config(context)
    chosen = strategy or config.get("strategy")
    rows = row_count if row_count is not UNSET else config.get("row_count_strategy", UNSET)
    failures: list[OperationResult] = []
    with (
        resource.matviews(definitions.values()) as mv,
        serving_requests(context, mv, [*refresh, *done]) as settle,
    ):
        for result in mv.refresh_many(
            refresh,
            rows,
            strategy=chosen,
            max_parallel=resource.max_parallel,
            create_if_missing=True,
            dagster_run_id=context.run.run_id,
            describe=True,
            checks={name: checks[name] for name in refresh if name in checks},
        ):
            key = keys[result.view]
            if not result.ok:
                failures.append(result)
                hint = f" (hint: {config_words(result.hint)})" if result.hint else ""
                context.log.error(f"{result.view}: {config_words(result.error or '')}{hint}")
                continue
            yield materialize_result(key, result, chosen or mv.definition(result.view).refresh_strategy)
            yield from (check_result(key, outcome) for outcome in result.checks)
        settle({r.view: failure_reason(r) for r in failures})
        checks_only = {name: names_ for name, names_ in checks.items() if name not in refresh and name not in done}
        if checks_only:
            for definition, outcomes in mv.check_many(checks_only, max_parallel=resource.max_parallel):
                yield from (check_result(keys[definition.name], outcome) for outcome in outcomes)
    if failures:
        raise _step_failure(failures)


def failure_reason(result: OperationResult) -> str:
    """Why a view's operation did not succeed, in Dagster config words (a skip names its upstream)."""
    if result.status == "skipped":
        return f"skipped: upstream {', '.join(result.skipped_because)} failed"
    return config_words(result.error or result.status)


@contextmanager
def serving_requests(
    context: dg.OpExecutionContext | dg.AssetExecutionContext, mv: "MatViews", views: Iterable[str]
) -> Iterator[Callable[[Mapping[str, str]], None]]:
    """In a run the queue sensor launched (tag ``matviews/run_key``): hold the run key's
    liveness lock while the step works on ``views`` (the sensor fails the requests of a run
    whose worker died holding it), and yield ``settle(failed)``, which ends the requests whose
    views all lie in ``views`` as soon as the step is done instead of on the sensor's next
    tick: ``success``, or ``failed`` with the reasons in ``failed`` (``{view: reason}``).
    Outside such a run, ``settle`` does nothing."""
    run_key = context.run.tags.get(RUN_KEY_TAG)
    if not run_key:
        yield lambda failed: None
        return
    from .core.store.requests import RunRequestQueue

    queue = RunRequestQueue(mv.runs)
    scope = list(views)

    def settle(failed: Mapping[str, str]) -> None:
        done = {view: failed.get(view) for view in scope}
        settled = queue.settle_run(run_key, context.run.run_id, done, scope)
        context.log.info(f"{settled} queued request(s) of {run_key} settled")

    with queue.serving(run_key, context.run.run_id, scope):
        yield settle


def _step_failure(failures: list[OperationResult]) -> dg.Failure:
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


def _run_config(context: dg.AssetExecutionContext) -> dict[str, Any]:
    """``strategy`` and ``row_count_strategy`` of the step's run config, when it has them."""
    config = context.op_execution_context.op_config
    if not isinstance(config, dict):
        return {}
    found = {}
    for key in ("strategy", "row_count_strategy"):
        value = config.get(key)
        if value is not None:
            found[key] = value.value if isinstance(value, Enum) else value
    return found


def _refreshed_by_parent_runs(
    resource: "MatViewsResource", context: dg.AssetExecutionContext, definitions: Iterable[Any]
) -> set[str]:
    """In a re-execution of a failed run's step (from failure, from the UI, a run retry or
    ``ReexecutionOptions.from_failure``): the views the failed ancestors already refreshed."""
    run = context.run
    ancestors: list[str] = []
    while run is not None and run.parent_run_id and (run.is_resume_retry or run.step_keys_to_execute is not None):
        parent = context.instance.get_run_by_id(run.parent_run_id)
        if parent is None or not parent.is_failure:
            break
        ancestors.append(parent.run_id)
        run = parent
    if not ancestors:
        return set()
    names = {definition.name for definition in definitions}
    with resource.matviews() as mv:
        return {
            row["view_name"]
            for run_id in ancestors
            for row in mv.runs.for_dagster_run(run_id)
            if row["kind"] == "refresh" and row["status"] == "success" and row["view_name"] in names
        }
