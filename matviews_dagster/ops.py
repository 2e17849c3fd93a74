"""Create and delete jobs: one op each, attempting every selected view."""

from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg
from pydantic import Field

from .core.definition import MatViewDefinition
from .core.operations import MatViews
from .resources import PostgresResource, RunStoreResource, matviews_client

CreateViewJob = "create_mat_views"
RefreshViewJob = "refresh_mat_views"
DeleteViewJob = "delete_mat_views"
_SUMMARY_COLUMNS = ("view", "status", "outcome", "duration_ms", "run_id", "error")


class CreateViewsConfig(dg.Config):
    views: list[str] = Field(default_factory=list, description="Views to create; empty: all.")
    force: bool = Field(default=False, description="Drop and recreate views that exist.")


class DeleteViewsConfig(dg.Config):
    views: list[str] = Field(default_factory=list, description="Views to delete; empty: all.")
    cascade: bool = Field(default=False, description="Also drop views that depend on them.")


def _selected(mv: MatViews, names: Sequence[str]) -> list[MatViewDefinition]:
    try:
        return [mv.definition(name) for name in names] if names else mv.definitions
    except ValueError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None


def _run_each(
    context: dg.OpExecutionContext,
    mv: MatViews,
    names: Sequence[str],
    operation: Callable[[MatViewDefinition], dict[str, Any]],
) -> dg.Output[list[dict[str, Any]]]:
    """Run ``operation`` on every view, report a summary, then fail naming each failed view."""
    results = []
    for definition in _selected(mv, names):
        result = operation(definition)
        log = context.log.info if result["status"] == "success" else context.log.error
        error = f": {result['error']}" if result["error"] else ""
        log(f"{definition.name}: {result['outcome']} ({result['duration_ms']} ms){error}")
        results.append(result)
    rows = ["| " + " | ".join(str(r[k] if r[k] is not None else "") for k in _SUMMARY_COLUMNS) + " |" for r in results]
    summary = "\n".join(["| view | status | outcome | ms | run | error |", "|---|---|---|---|---|---|", *rows])
    failed = [r for r in results if r["status"] != "success"]
    if failed:
        raise dg.Failure(
            description="; ".join(f"{r['view']}: {r['error']}" for r in failed),
            metadata={"summary": dg.MetadataValue.md(summary), "failed_views": [r["view"] for r in failed]},
            allow_retries=False,
        )
    return dg.Output(results, metadata={"summary": dg.MetadataValue.md(summary), "views": len(results)})


def _build_job(
    definitions: Sequence[MatViewDefinition],
    *,
    job_name: str,
    op_name: str,
    config_class: type[CreateViewsConfig] | type[DeleteViewsConfig],
    description: str,
    operation: Callable[[MatViews, MatViewDefinition, Any, str], dict[str, Any]],
) -> dg.JobDefinition:
    """One op that runs ``operation`` on each selected view, in a job of its own."""

    @dg.op(name=op_name, out=dg.Out(list, io_manager_key="io_manager"))
    def views_op(
        context: dg.OpExecutionContext,
        config: config_class,  # type: ignore[valid-type]
        matviews_postgres: PostgresResource,
        matviews_run_store: RunStoreResource,
    ) -> dg.Output[list[dict[str, Any]]]:
        with matviews_client(matviews_postgres, matviews_run_store, definitions) as mv:
            return _run_each(context, mv, config.views, lambda d: operation(mv, d, config, context.run.run_id))

    @dg.job(name=job_name, description=description)
    def views_job() -> None:
        views_op()

    return views_job


def build_create_job(definitions: Sequence[MatViewDefinition]) -> dg.JobDefinition:
    """``create_mat_views``: op ``create_views``, config ``views`` (empty: all) and ``force``."""
    return _build_job(
        definitions,
        job_name=CreateViewJob,
        op_name="create_views",
        config_class=CreateViewsConfig,
        description="Create materialized views (force: recreate).",
        operation=lambda mv, d, config, run_id: mv.create(d, config.force, dagster_run_id=run_id),
    )


def build_delete_job(definitions: Sequence[MatViewDefinition]) -> dg.JobDefinition:
    """``delete_mat_views``: op ``delete_views``, config ``views`` (empty: all) and ``cascade``."""
    return _build_job(
        definitions,
        job_name=DeleteViewJob,
        op_name="delete_views",
        config_class=DeleteViewsConfig,
        description="Delete materialized views (cascade: with dependents).",
        operation=lambda mv, d, config, run_id: mv.delete(d, config.cascade, dagster_run_id=run_id),
    )
