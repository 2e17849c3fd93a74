"""What a refresh step works on: its views grouped by database, each with its asset key and,
for a step of views with tenants, its partition (the tenant: each tenant's copy of the view,
``core/tenants.py``'s ``for_tenant``)."""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import dagster as dg

from .core.definition import MatViewDefinition
from .core.estate_fields import DatabaseSpec
from .core.matviews import MatViews
from .core.tenants import for_tenant


@dataclass
class StepTarget:
    """The views of one database a step refreshes: ``definitions`` by view name, each view's
    asset ``keys`` and ``partitions`` (None: an unpartitioned asset); ``database`` is the
    ``databases:`` key (None: the default connection) and ``spec`` its entry."""

    database: str | None
    spec: DatabaseSpec | None
    definitions: dict[str, MatViewDefinition] = field(default_factory=dict)
    keys: dict[str, dg.AssetKey] = field(default_factory=dict)
    partitions: dict[str, str | None] = field(default_factory=dict)

    def add(self, definition: MatViewDefinition, key: dg.AssetKey, partition: str | None) -> None:
        self.definitions[definition.name] = definition
        self.keys[definition.name] = key
        self.partitions[definition.name] = partition

    def max_parallel(self, wanted: int) -> int:
        """``wanted``, capped by the database's ``max_parallel``."""
        return min(wanted, self.spec.max_parallel) if self.spec and self.spec.max_parallel else wanted


def step_targets(
    context: dg.AssetExecutionContext,
    definitions: Mapping[dg.AssetKey, MatViewDefinition],
    databases: Mapping[str, DatabaseSpec],
) -> list[StepTarget]:
    """The step's views by database (the default connection first). A partitioned step's
    views are each asset's copy in each of the run's partitions (one partition, or a range in
    a single-run backfill); its database is the view's, or the tenant for tenant databases."""
    partitioned = context.assets_def.partitions_def is not None
    tenants = list(context.partition_keys) if partitioned else []
    targets: dict[str | None, StepTarget] = {}

    def target(database: str | None) -> StepTarget:
        if database not in targets:
            targets[database] = StepTarget(database, databases.get(database) if database else None)
        return targets[database]

    for key, definition in definitions.items():
        if not partitioned:
            target(definition.database).add(definition, key, None)
            continue
        for tenant in tenants:
            view = for_tenant(definition, tenant)
            target(view.database).add(view, key, tenant)
    return sorted(targets.values(), key=lambda t: (t.database is not None, t.database or ""))


def refreshed_by_parent_runs(
    open_matviews: Callable[[], MatViews], context: dg.AssetExecutionContext, definitions: Iterable[MatViewDefinition]
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
    with open_matviews() as mv:
        return {
            row["view_name"]
            for run_id in ancestors
            for row in mv.runs.for_dagster_run(run_id)
            if row["kind"] == "refresh" and row["status"] == "success" and row["view_name"] in names
        }
