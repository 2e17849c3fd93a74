"""A step's work on its views as one object, as dagster-dbt's ``DbtCliInvocation`` is one dbt
command: ``MatViewsResource.refresh(context)`` returns a ``RefreshInvocation`` and its
``stream()`` yields the events; the create and delete ops' ``JobInvocation`` does the same.

The invocation owns what a step decides before the core runs: which views and checks are
selected, what a re-execution's failed parents already did, the run config's overrides, and
the queued requests the run serves. ``events`` only turns results into Dagster events.
"""

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from enum import Enum
from typing import Any

import dagster as dg

from .check_specs import CHECK_NAME
from .column_metadata import lineage_for, previous_column_schemas, read_lineage
from .core.advice_rules import Advice
from .core.arguments import UNSET
from .core.connection import DatabaseUnavailable
from .core.definition import MatViewDefinition
from .core.health_checks import CheckOutcome, checks_for, schema_change_outcome, strategy_outcome
from .core.matviews import MatViews
from .core.messages import counted
from .core.names import QualifiedName
from .core.result import OperationResult
from .core.schema_change import Columns
from .core.vocabulary import REFRESH_CONFIG_TAG, RUN_KEY_TAG, RunKind
from .events import (
    RefreshEvent,
    check_result,
    config_words,
    created_materialization,
    failure_reason,
    in_partition,
    job_failure,
    job_output,
    materialize_result,
    step_failure,
)
from .step_targets import StepTarget, refreshed_by_parent_runs, step_targets
from .translator import databases_of, definitions_of, translator_of

OpenMatViews = Callable[..., MatViews]
"""Opens the core ``MatViews`` over some definitions, of the default connection or of
``database=`` with its ``spec=`` (the resource's ``matviews``)."""


class RefreshInvocation:
    """The refresh step of a ``@matview_assets`` definition: ``stream()`` refreshes the selected
    views upstream first, ``max_parallel`` at once, and yields each view's ``MaterializeResult``
    and ``AssetCheckResult``s as it finishes; selected checks of views not refreshed run on
    their own. After every view that can run has run, it raises a ``dagster.Failure`` naming
    each view that failed and each one skipped because an upstream view failed.

    ``strategy`` and ``row_count_strategy`` override the definitions' for this run; left out,
    the step's run config decides, then each definition. A re-execution from failure refreshes
    only the views its failed parent runs did not. With ``column_lineage``, each
    materialization carries ``dagster/column_lineage`` (``core.lineage``, one catalog query per
    step); lineage that cannot be read is logged and left out, never a failed view.
    """

    def __init__(
        self,
        open_matviews: OpenMatViews,
        max_parallel: int,
        context: dg.AssetExecutionContext,
        *,
        strategy: str | None = None,
        row_count_strategy: Any = UNSET,
        column_lineage: bool = True,
    ) -> None:
        self.open_matviews, self.max_parallel, self.context = open_matviews, max_parallel, context
        self.column_lineage = column_lineage
        self.definitions = definitions_of(context.assets_def)
        config = run_config(context)
        self.strategy = strategy or config.get("strategy")
        self.row_count_strategy = (
            row_count_strategy if row_count_strategy is not UNSET else config.get("row_count_strategy", UNSET)
        )

    def __iter__(self) -> Iterator[RefreshEvent]:
        return self.stream()

    def stream(self) -> Iterator[RefreshEvent]:
        failures: list[OperationResult] = []
        for target in step_targets(self.context, self.definitions, databases_of(self.context.assets_def)):
            try:
                yield from self._refresh(target, failures)
            except DatabaseUnavailable as exc:  # that database only: the step's other databases go on
                self.context.log.error(str(exc))
                selected = set(self.context.selected_asset_keys)
                failures.extend(
                    OperationResult("refresh", name, "failed", "error", error=str(exc))
                    for name, key in target.keys.items()
                    if key in selected
                )
        if failures:
            raise step_failure(failures)

    def _refresh(self, target: StepTarget, failures: list[OperationResult]) -> Iterator[RefreshEvent]:
        """The selected views and checks of one database (``target``); failures are added to
        ``failures``, events of a partitioned asset name their partition."""
        context, keys, definitions = self.context, target.keys, target.definitions
        selected_keys, max_parallel = set(context.selected_asset_keys), target.max_parallel(self.max_parallel)
        selected = [name for name, key in keys.items() if key in selected_keys]
        checked = {
            check_key.asset_key for check_key in context.selected_asset_check_keys if check_key.name == CHECK_NAME
        }
        checks = {  # the selected views' checks, as the verdicts each carries
            name: checks_for(definition) for name, definition in definitions.items() if keys[name] in checked
        }

        def opened() -> MatViews:
            return self.open_matviews(definitions.values(), database=target.database, spec=target.spec)

        done = refreshed_by_parent_runs(opened, context, definitions.values())
        if done:
            context.log.info(
                f"re-execution from failure: {counted(len(done), 'view')} refreshed by the parent run(s) are skipped"
            )
        refresh = [name for name in selected if name not in done]
        schema_checked = {  # a tenant's copy is not compared: the asset's last materialization may be another tenant's
            name
            for name in checks
            if definitions[name].schema_change_severity != "off" and target.partitions[name] is None
        }
        previous = previous_column_schemas(context.instance, sorted({keys[name] for name in schema_checked}))
        with (
            opened() as mv,
            serving_requests(context, mv, [*refresh, *done]) as settle,
        ):
            lineage = read_lineage(mv, refresh, context.log) if self.column_lineage else None
            advised = [name for name in checks if definitions[name].strategy_advice != "off"]
            advice: dict[str, list[Advice]] = {name: [] for name in advised}
            for found in mv.advise(advised) if advised else ():  # from the runs before this one
                advice[found.view].append(found)
            translator = translator_of(context.assets_def)

            def step_verdicts(definition: MatViewDefinition, columns: Columns | None) -> list[CheckOutcome]:
                """The verdicts the step adds to a view's check: its columns against the last
                materialization's (unless ``schema_change_severity: off``), the advisor's
                (unless ``strategy_advice: off``)."""
                found = []
                if definition.name in schema_checked:
                    last = previous.get(keys[definition.name])
                    found.append(schema_change_outcome(last, columns, definition.schema_change_severity))
                if definition.name in advice:
                    found.append(strategy_outcome(advice[definition.name]))
                return found

            def key_of(relation: QualifiedName) -> dg.AssetKey:
                return keys.get(str(relation)) or translator.get_source_asset_key(relation)

            for result in mv.refresh_many(
                refresh,
                self.row_count_strategy,
                strategy=self.strategy,
                max_parallel=max_parallel,
                create_if_missing=True,
                dagster_run_id=context.run.run_id,
                describe=True,
                checks={name: checks[name] for name in refresh if name in checks},
            ):
                key, partition = keys[result.view], target.partitions[result.view]
                if not result.ok:
                    failures.append(result)
                    hint = f" (hint: {config_words(result.hint)})" if result.hint else ""
                    context.log.error(f"{result.view}: {config_words(result.error or '')}{hint}")
                    continue
                definition = mv.definition(result.view)
                extra = lineage_for(lineage, definition, result.description, key_of, context.log)
                yield in_partition(
                    materialize_result(key, result, self.strategy or definition.refresh_strategy, extra), partition
                )
                if result.checks:
                    columns = result.description.columns if result.description else None
                    verdicts = [*result.checks, *step_verdicts(definition, columns)]
                    yield in_partition(check_result(key, verdicts), partition)
            settle({r.view: failure_reason(r) for r in failures if r.view in definitions})
            checks_only = {name: names for name, names in checks.items() if name not in refresh and name not in done}
            if checks_only:
                compared = [name for name in checks_only if name in schema_checked]
                now = {
                    str(d.name): d.columns if d.exists else None for d in (mv.describe(compared) if compared else ())
                }
                for definition, outcomes in mv.check_many(checks_only, max_parallel=max_parallel):
                    columns = now.get(definition.name)
                    verdicts = [*outcomes, *step_verdicts(definition, columns)]
                    yield in_partition(
                        check_result(keys[definition.name], verdicts), target.partitions[definition.name]
                    )


class JobInvocation:
    """The create or delete op's work: ``kind`` on each of ``views`` (names or definition ids;
    empty: every one of ``definitions``) in dependency order, ``max_parallel`` at once, with the
    op's ``flag`` (``force`` / ``cascade``). ``stream()`` logs each result, reports a view the
    op created as a materialization of its asset (``keys``: ``{view name: asset key}``), then
    yields the op's output with a summary table, or raises a ``dagster.Failure`` naming each
    view that failed or was skipped. An unknown view fails the op before anything runs."""

    def __init__(
        self,
        open_matviews: OpenMatViews,
        max_parallel: int,
        context: dg.OpExecutionContext,
        definitions: Sequence[MatViewDefinition],
        kind: RunKind,
        views: Sequence[str | int] = (),
        *,
        flag: bool = False,
        keys: Mapping[str, dg.AssetKey] | None = None,
    ) -> None:
        self.open_matviews, self.max_parallel = open_matviews, max_parallel
        self.context, self.definitions = context, definitions
        self.kind, self.views, self.flag, self.keys = kind, list(views), flag, keys or {}

    def __iter__(self) -> Iterator[Any]:
        return self.stream()

    def stream(self) -> Iterator[Any]:
        context = self.context
        with self.open_matviews(self.definitions) as mv:
            try:
                selected = [definition.name for definition in mv.select(self.views or None)]
                run = mv.create_many if self.kind == "create" else mv.delete_many
                stream = run(
                    selected,
                    self.flag,
                    max_parallel=self.max_parallel,
                    dagster_run_id=context.run.run_id,
                )
            except ValueError as exc:
                raise dg.Failure(description=str(exc), allow_retries=False) from None
            results = []
            with serving_requests(context, mv, selected) as settle:
                for result in stream:
                    results.append(result)
                    log = context.log.info if result.ok else context.log.error
                    log(
                        f"{result.view}: {result.outcome} ({result.duration_ms} ms)"
                        + (f": {result.error}" if result.error else "")
                    )
                    if result.outcome == "created" and result.view in self.keys:
                        yield created_materialization(self.keys[result.view], result)
                failed = [r for r in results if not r.ok]
                settle({r.view: failure_reason(r) for r in failed})
        if failed:
            raise job_failure(results, failed)
        yield job_output(results)


@contextmanager
def serving_requests(
    context: dg.OpExecutionContext | dg.AssetExecutionContext, mv: MatViews, views: Iterable[str]
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


def run_config(context: dg.AssetExecutionContext) -> dict[str, Any]:
    """``strategy`` and ``row_count_strategy`` of the step's run config (``RefreshConfig``),
    when it has them; a body with a ``config`` of its own passes its overrides to ``refresh``."""
    config = context.op_execution_context.op_config
    if not isinstance(config, dict) or REFRESH_CONFIG_TAG not in context.op_execution_context.op_def.tags:
        return {}
    found = {}
    for key in ("strategy", "row_count_strategy"):
        value = config.get(key)
        if value is not None:
            found[key] = value.value if isinstance(value, Enum) else value
    return found
