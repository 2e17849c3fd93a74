"""The create and delete jobs: one op each, attempting every selected view."""

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dagster as dg
from pydantic import Field

from .core.definition import MatViewDefinition
from .core.vocabulary import (
    JOB_NAMES,
    OP_NAMES,
    RunKind,
)
from .resources import MatViewsResource

_SUMMARY_COLUMNS = ("view", "status", "outcome", "duration_ms", "run_id", "error")


class CreateViewsConfig(dg.Config):
    views: list[str] = Field(default_factory=list, description="Views to create; empty: all.")
    force: bool = Field(default=False, description="Drop and recreate views that exist.")


class DeleteViewsConfig(dg.Config):
    views: list[str] = Field(default_factory=list, description="Views to delete; empty: all.")
    cascade: bool = Field(default=False, description="Also drop views that depend on them.")


def _build_job(
    definitions: Sequence[MatViewDefinition],
    kind: RunKind,
    description: str,
    keys: Mapping[str, dg.AssetKey],
    resource_defs: Mapping[str, Any] | None,
) -> dg.JobDefinition:
    """One op that runs ``kind`` on each selected view (dependency order, ``max_parallel`` at
    once), reports a summary, then fails naming each view that failed or was skipped. A view
    created by the op is reported as a materialization of its asset.

    ``resource_defs`` binds the job's resources up front. A job left for ``Definitions`` to
    bind is copied there, and so is every sensor targeting it: Dagster 1.13 copies a sensor
    passing its beta ``owners`` parameter, which warns (``BetaWarning``) on every load."""
    config_class = CreateViewsConfig if kind == "create" else DeleteViewsConfig

    @dg.op(name=OP_NAMES[kind], out=dg.Out(list, io_manager_key="io_manager"))
    def views_op(
        context: dg.OpExecutionContext,
        config: config_class,  # type: ignore[valid-type]
        matviews: MatViewsResource,
    ) -> Iterator[Any]:
        if kind == "create":
            yield from matviews.create(context, definitions, config.views, force=config.force, keys=keys).stream()
        else:
            yield from matviews.delete(context, definitions, config.views, cascade=config.cascade).stream()

    @dg.job(name=JOB_NAMES[kind], description=description, resource_defs=dict(resource_defs or {}))
    def views_job() -> None:
        views_op()

    return views_job


def build_create_job(
    definitions: Sequence[MatViewDefinition],
    keys: Mapping[str, dg.AssetKey] | None = None,
    resource_defs: Mapping[str, Any] | None = None,
) -> dg.JobDefinition:
    """``create_mat_views``: op ``create_views``, config ``views`` (empty: all) and ``force``;
    ``keys`` (``{view name: asset key}``) names the assets its creates materialize;
    ``resource_defs`` (``{"matviews": MatViewsResource(...)}``) binds its resource, else the
    ``Definitions`` it is part of does."""
    description = "Create materialized views (force: recreate)."
    return _build_job(definitions, "create", description, keys or {}, resource_defs)


def build_delete_job(
    definitions: Sequence[MatViewDefinition], resource_defs: Mapping[str, Any] | None = None
) -> dg.JobDefinition:
    """``delete_mat_views``: op ``delete_views``, config ``views`` (empty: all) and ``cascade``;
    ``resource_defs`` as for ``build_create_job``."""
    description = "Delete materialized views (cascade: with dependents)."
    return _build_job(definitions, "delete", description, {}, resource_defs)
