"""The tables the views read, as observable source assets: their data version is what
``core.source_versions`` reads from Postgres's counters, so Dagster's declarative automation
(``automation: eager``) refreshes a view when a table it reads changed, and not otherwise."""

import uuid
import warnings
from collections.abc import Iterator, Mapping

import dagster as dg

from .core.source_versions import relation_versions
from .resources import MatViewsResource

SOURCES_ASSET = "matviews_sources"
DEFAULT_OBSERVE_CRON = "* * * * *"
"""How often the automation sensor observes the source tables when a view uses automation."""


def observable_sources(
    relations: Mapping[dg.AssetKey, str], *, observe_cron: str | None = DEFAULT_OBSERVE_CRON
) -> dg.AssetsDefinition:
    """``matviews_sources``: one observable source asset per table (``{asset key: schema.table}``),
    each observation reporting the table's version as its ``DataVersion`` (one catalog query for
    all, no table scanned). A table whose version cannot be known (never written, statistics
    reset, a plain view) gets a new random version each time: doubt counts as changed.
    ``observe_cron``: the source assets' automation condition (``cron_tick_passed``), so the
    ``default_automation_condition_sensor`` observes them; ``None``: observe on demand."""
    condition = dg.AutomationCondition.cron_tick_passed(observe_cron) if observe_cron else None
    specs = [
        dg.AssetSpec(
            key,
            kinds={"postgres"},
            description=f"Source table {relation}, observed from Postgres's statistics",
            automation_condition=condition,
        )
        for key, relation in sorted(relations.items(), key=lambda item: item[0].to_user_string())
    ]

    def matviews_sources(context: dg.AssetExecutionContext, matviews: MatViewsResource) -> Iterator[dg.ObserveResult]:
        selected = [key for key in relations if key in context.selected_asset_keys]
        with matviews.get_connection() as conn:
            versions = relation_versions(conn, [relations[key] for key in selected])
        for key in selected:
            version = versions.get(relations[key])
            yield dg.ObserveResult(
                asset_key=key,
                data_version=dg.DataVersion(version or f"unknown-{uuid.uuid4().hex}"),
                metadata={"version": version or "unknown (counted as changed)"},
            )

    with warnings.catch_warnings():  # a beta API of Dagster's, used on purpose: not the user's concern
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.multi_observable_source_asset(specs=specs, name=SOURCES_ASSET, can_subset=True)(matviews_sources)
