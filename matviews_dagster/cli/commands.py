"""The operation commands: ``create``, ``refresh`` and ``delete``, run now (each database of an
estate side by side, ``core/estate_runs.py``) or ``--enqueue``d; the showing is ``render``'s."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from ..core.messages import counted
from ..core.vocabulary import (
    DEFAULT_MAX_PARALLEL,
    REFRESH_STRATEGIES,
    ROW_COUNT_STRATEGIES,
    CreateViewJob,
    DeleteViewJob,
    RefreshViewJob,
)
from . import render
from .context import CliOptions, InputError, confirm, estate_options, pass_options, require_selection
from .queue import enqueue_all

if TYPE_CHECKING:
    from ..core.definition import MatViewDefinition
    from ..core.estate_runs import Part


def _operation_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--json``, ``--enqueue``, ``--queue`` and ``--parallel``, shared by create, refresh and delete."""
    command = click.option(
        "--parallel",
        type=click.IntRange(min=1),
        default=DEFAULT_MAX_PARALLEL,
        show_default=True,
        help="Views at once, one connection each; upstream views always finish first.",
    )(command)
    command = click.option("--queue", help="Queue for --enqueue (default: MATVIEWS_JOB_QUEUE or 'default').")(command)
    command = click.option("--enqueue", is_flag=True, help="Enqueue through the adapter instead of running now.")(
        command
    )
    return click.option("--json", "as_json", is_flag=True, help="One JSON object per view.")(command)


@click.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_views", is_flag=True, help="Every view in the definitions file.")
@click.option("--force", is_flag=True, help="Drop and recreate views that exist.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_operation_options
@estate_options
@pass_options
def create(options: CliOptions, names: tuple[str, ...], all_views: bool, force: bool, yes: bool, **out: Any) -> int:
    """Create views (and their indexes), upstream views first; each database's at once."""
    from ..core.estate_runs import run_parts

    parts = options.parts(require_selection(names, all_views), out["databases"], out["tenants"])
    if force:
        confirm(f"Recreate (force) {counted(len(_names(parts)), 'view')}: {', '.join(_names(parts))}", yes)
    if out["enqueue"]:
        return enqueue_all(options, CreateViewJob, _enqueued(parts), force, out["queue"], out["as_json"])
    results = run_parts(
        "create", parts, lambda mv, views, n: mv.create_many(views, force, max_parallel=n), out["parallel"]
    )
    return render.stream_results(results, json_lines=out["as_json"], names=_names(parts), progress_label="creating")


@click.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_views", is_flag=True, help="Every view, in dependency order.")
@click.option("--rows", type=click.Choice(ROW_COUNT_STRATEGIES), help="Row count strategy (default: each view's).")
@click.option("--strategy", type=click.Choice(REFRESH_STRATEGIES), help="Strategy, this time only.")
@click.option("--downstream", is_flag=True, help="Also refresh every view built on the named ones, after them.")
@click.option("--if-changed", is_flag=True, help="Skip views whose sources are unchanged since their last refresh.")
@_operation_options
@estate_options
@pass_options
def refresh(
    options: CliOptions,
    names: tuple[str, ...],
    all_views: bool,
    rows: str | None,
    strategy: str | None,
    downstream: bool,
    if_changed: bool,
    **out: Any,
) -> int:
    """Refresh views with their strategies, upstream views first, several at once; a view
    with tenants in every tenant, each database's views side by side."""
    from ..core.arguments import UNSET
    from ..core.estate_runs import run_parts

    selection = require_selection(names, all_views)
    if out["enqueue"]:
        if strategy or if_changed:
            flag = "--strategy" if strategy else "--if-changed"
            raise InputError(f"{flag} cannot be enqueued; run the refresh here, without --enqueue")
        option: dict[str, Any] = {"row_count_strategy": rows} if rows else {}
        if downstream:  # one request, one run: the views built on it refresh after it, in that run
            option["downstream"] = True
        definitions = _enqueued(options.parts(selection, out["databases"], out["tenants"]))
        return enqueue_all(options, RefreshViewJob, definitions, option or None, out["queue"], out["as_json"])
    parts = options.parts(selection, out["databases"], out["tenants"], downstream=downstream)
    row_count = rows if rows is not None else UNSET

    def call(mv: Any, views: list[MatViewDefinition], parallel: int) -> Any:
        return mv.refresh_many(views, row_count, strategy=strategy, max_parallel=parallel, if_changed=if_changed)

    results = run_parts("refresh", parts, call, out["parallel"])
    return render.stream_results(results, json_lines=out["as_json"], names=_names(parts), progress_label="refreshing")


@click.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_views", is_flag=True, help="Every view (dependents first).")
@click.option("--cascade", is_flag=True, help="Also drop views that depend on them.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_operation_options
@estate_options
@pass_options
def delete(options: CliOptions, names: tuple[str, ...], all_views: bool, cascade: bool, yes: bool, **out: Any) -> int:
    """Drop views, the views built on others first."""
    from ..core.estate_runs import run_parts

    parts = options.parts(require_selection(names, all_views), out["databases"], out["tenants"], reverse=True)
    suffix = " with CASCADE" if cascade else ""
    confirm(f"Delete {counted(len(_names(parts)), 'view')}{suffix}: {', '.join(_names(parts))}", yes)
    if out["enqueue"]:
        return enqueue_all(options, DeleteViewJob, _enqueued(parts), cascade, out["queue"], out["as_json"])
    results = run_parts(
        "delete", parts, lambda mv, views, n: mv.delete_many(views, cascade, max_parallel=n), out["parallel"]
    )
    return render.stream_results(results, json_lines=out["as_json"], names=_names(parts), progress_label="deleting")


def _names(parts: list[Part]) -> list[str]:
    """The views of ``parts`` as the command shows them (``view (database)`` in a named database)."""
    return [render.view_label(d.name, part.member.name) for part in parts for d in part.definitions]


def _enqueued(parts: list[Part]) -> list[MatViewDefinition]:
    """The views ``--enqueue`` may hand to the adapter: the default connection's, without
    tenants (a queued run is a run of the code location, which serves that database)."""
    if any(part.member.name is not None or part.member.tenant_of for part in parts if part.definitions):
        raise InputError(
            "--enqueue covers the views of the default connection without tenants; run these here, without "
            "--enqueue, or materialize them (and their partitions) in Dagster"
        )
    return [d for part in parts for d in part.definitions]


COMMANDS = [create, refresh, delete]
