"""The commands: ``create``, ``refresh`` and ``delete`` (run now or ``--enqueue``), and
``migrate``, ``info``, ``list``, ``runs``, ``validate``, ``demo seed``. Each works through
``MatViews`` (``info`` and ``validate`` also read the catalog on its connection) and leaves
the showing to ``render``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..core.messages import counted
from ..core.vocabulary import (
    DEFAULT_MAX_PARALLEL,
    REFRESH_STRATEGIES,
    ROW_COUNT_STRATEGIES,
    RUN_KINDS,
    CreateViewJob,
    DeleteViewJob,
    RefreshViewJob,
)
from . import render
from .context import EXIT_FAILED, CliOptions, InputError, confirm, pass_options
from .queue import enqueue_all

if TYPE_CHECKING:
    pass


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
@pass_options
def create(options: CliOptions, names: tuple[str, ...], all_views: bool, force: bool, yes: bool, **out: Any) -> int:
    """Create views (and their indexes), upstream views first."""
    mv = options.matviews()
    definitions = mv.graph.order(d.name for d in options.select(names, all_views))
    if force:
        confirm(f"Recreate (force) {counted(len(definitions), 'view')}: {', '.join(d.name for d in definitions)}", yes)
    if out["enqueue"]:
        return enqueue_all(options, CreateViewJob, definitions, force, out["queue"], out["as_json"])
    results = mv.create_many(definitions, force, max_parallel=out["parallel"])
    return render.stream_results(
        results, json_lines=out["as_json"], names=[d.name for d in definitions], progress_label="creating"
    )


@click.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_views", is_flag=True, help="Every view, in dependency order.")
@click.option("--rows", type=click.Choice(ROW_COUNT_STRATEGIES), help="Row count strategy (default: each view's).")
@click.option("--strategy", type=click.Choice(REFRESH_STRATEGIES), help="Strategy, this time only.")
@click.option("--downstream", is_flag=True, help="Also refresh every view built on the named ones, after them.")
@click.option("--if-changed", is_flag=True, help="Skip views whose sources are unchanged since their last refresh.")
@_operation_options
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
    """Refresh views with their strategies, upstream views first, several at once."""
    from ..core.arguments import UNSET

    mv = options.matviews()
    selected = [d.name for d in options.select(names, all_views)]
    if out["enqueue"]:
        if strategy or if_changed:
            flag = "--strategy" if strategy else "--if-changed"
            raise InputError(f"{flag} cannot be enqueued; run the refresh here, without --enqueue")
        option: dict[str, Any] = {"row_count_strategy": rows} if rows else {}
        if downstream:  # one request, one run: the views built on it refresh after it, in that run
            option["downstream"] = True
        definitions = mv.graph.order(selected)
        return enqueue_all(options, RefreshViewJob, definitions, option or None, out["queue"], out["as_json"])
    definitions = mv.graph.order(mv.graph.with_downstream(selected) if downstream else selected)
    results = mv.refresh_many(
        definitions,
        rows if rows is not None else UNSET,
        strategy=strategy,
        max_parallel=out["parallel"],
        if_changed=if_changed,
    )
    return render.stream_results(
        results, json_lines=out["as_json"], names=[d.name for d in definitions], progress_label="refreshing"
    )


@click.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_views", is_flag=True, help="Every view (dependents first).")
@click.option("--cascade", is_flag=True, help="Also drop views that depend on them.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_operation_options
@pass_options
def delete(options: CliOptions, names: tuple[str, ...], all_views: bool, cascade: bool, yes: bool, **out: Any) -> int:
    """Drop views, the views built on others first."""
    mv = options.matviews()
    definitions = list(reversed(mv.graph.order(d.name for d in options.select(names, all_views))))
    suffix = " with CASCADE" if cascade else ""
    confirm(f"Delete {counted(len(definitions), 'view')}{suffix}: {', '.join(d.name for d in definitions)}", yes)
    if out["enqueue"]:
        return enqueue_all(options, DeleteViewJob, definitions, cascade, out["queue"], out["as_json"])
    results = mv.delete_many(definitions, cascade, max_parallel=out["parallel"])
    return render.stream_results(
        results, json_lines=out["as_json"], names=[d.name for d in definitions], progress_label="deleting"
    )


@click.command()
@pass_options
def migrate(options: CliOptions) -> int:
    """Create or upgrade the run tables."""
    from ..core.dsn import configured_dsn, mask_dsn

    version = options.database().migrate()
    where = mask_dsn(configured_dsn(options.dsn) or "the embedded Postgres")
    click.echo(f"run tables at version {version} in schema {options.runs_schema} of {where}")
    return 0


@click.command()
@pass_options
def info(options: CliOptions) -> int:
    """Where the views live: the DSN (masked) and where it came from, the server, the run
    tables, the definitions file, and for the embedded server its data directory and a psql
    command line."""
    from ..core.dsn import configured_dsn, mask_dsn, resolve_dsn

    configured = configured_dsn(options.dsn)
    if not options.dsn:
        source = "the embedded Postgres (no --dsn, MATVIEWS_DSN or DATABASE_URL)"
    elif options.dsn not in (os.environ.get("MATVIEWS_DSN"), os.environ.get("DATABASE_URL")):
        source = "--dsn"
    else:
        source = "MATVIEWS_DSN" if options.dsn == os.environ.get("MATVIEWS_DSN") else "DATABASE_URL"
    dsn = configured or resolve_dsn(None)
    lines = [f"dsn:          {mask_dsn(dsn)}", f"from:         {source}"]
    if configured is None:
        from ..core.embedded import matviews_home

        lines.append(f"data dir:     {matviews_home() / 'pgdata'}")
        lines.append(f"psql:         psql '{mask_dsn(dsn)}'")
    with options.database().connect("info") as conn:
        row = conn.execute("SELECT current_setting('server_version'), current_database(), current_user").fetchone()
    assert row is not None
    lines += [
        f"server:       PostgreSQL {row[0]}, database {row[1]}, user {row[2]}",
        f"run tables:   schema {options.runs_schema}",
    ]
    if options.definitions_path.exists():
        lines.append(f"definitions:  {options.definitions_path} ({counted(len(options.definitions()), 'view')})")
    else:
        lines.append(f"definitions:  {options.definitions_path} (missing; --definitions PATH or --demo)")
    click.echo("\n".join(lines))
    return 0


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_options
def list_views(options: CliOptions, as_json: bool) -> int:
    """Views with strategy, existence, population, estimated rows, size and last run."""
    rows = options.matviews().status()
    if as_json:
        render.emit_rows(rows)
    else:
        render.print_views(rows)
    return 0


@click.command()
@click.option("--kind", type=click.Choice(RUN_KINDS))
@click.option("--view", help="Only this view (schema defaults to public).")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of run rows.")
@pass_options
def runs(options: CliOptions, kind: str | None, view: str | None, limit: int, as_json: bool) -> int:
    """Run history, newest first."""
    mv = options.matviews() if options.definitions_path.exists() else options.database()
    rows = mv.history(kind=kind, view=view, limit=limit)  # with definitions, `mv_x` finds reporting.mv_x
    if as_json:
        render.emit_rows(rows)
    else:
        render.print_runs(rows)
    return 0


@click.command()
@click.argument("names", nargs=-1)
@click.option("--iterations", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--csv", "csv_path", type=click.Path(path_type=Path, dir_okay=False), help="Also write a CSV.")
@pass_options
def validate(options: CliOptions, names: tuple[str, ...], iterations: int, csv_path: Path | None) -> int:
    """Time the defining query against the view and check both return the same rows."""
    import psycopg

    from ..core.catalog import matview_state
    from ..core.services.response import ServiceError, describe_db_error
    from ..core.validation import validate_view

    mv = options.matviews()
    definitions = mv.select(list(names) or None)
    results, errors = [], {}
    with mv.connect("validate") as conn:
        missing = [d.name for d in definitions if matview_state(conn, d.qualified) is None]
        if missing:
            raise InputError(f"not created yet: {', '.join(missing)}; run matviews create first")
        for definition in definitions:  # one view's error does not hide the others
            try:
                results.append(validate_view(conn, definition, iterations))
            except psycopg.Error as exc:
                errors[definition.name] = describe_db_error(exc)
            except ServiceError as exc:  # e.g. the role cannot act for the view's owner
                errors[definition.name] = render.cli_words(f"{exc}; {exc.hint}" if exc.hint else str(exc))
    render.print_validation(results)
    if csv_path:
        import csv

        with csv_path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(results[0].as_row()) if results else ["view"])
            writer.writeheader()
            writer.writerows(r.as_row() for r in results)
    for view, error in errors.items():
        click.echo(f"error: {view}: {error}", err=True)
    mismatched = [r.view for r in results if not r.matches]
    if mismatched:
        click.echo(f"mismatch: {', '.join(mismatched)} returned rows that differ from the query", err=True)
    return EXIT_FAILED if mismatched or errors else 0


@click.group()
def demo() -> None:
    """The demo data set."""


@demo.command()
@click.option("--scale", type=click.IntRange(min=1), default=1, show_default=True, help="500 users per unit.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_options
def seed(options: CliOptions, scale: int, yes: bool) -> int:
    """(Re)load the demo tables users, accounts, events and sessions."""
    from ..demo.data import USERS_PER_SCALE, seed_demo_data

    confirm(f"Replace the demo tables with {scale * USERS_PER_SCALE:,} users", yes)
    started = time.monotonic()
    with options.database().connect("demo seed") as conn:
        counts = seed_demo_data(conn, scale)
    summary = ", ".join(f"{table} {rows:,}" for table, rows in counts.items())
    click.echo(f"loaded {summary} in {time.monotonic() - started:.1f} s")
    return 0


COMMANDS = [migrate, info, list_views, create, refresh, delete, runs, validate, demo]
