"""The inspection commands: ``migrate``, ``info``, ``list`` and ``runs`` (of every database of an
estate), ``validate``, ``demo seed``. Each reads through ``MatViews`` (``info`` and
``validate`` also read the catalog on its connection) and leaves the showing to ``render`` and
``tables``."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import click

from ..core.messages import counted
from ..core.vocabulary import RUN_KINDS
from . import render, tables
from .context import EXIT_FAILED, CliOptions, InputError, confirm, estate_options, pass_options


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
@estate_options
@pass_options
def list_views(options: CliOptions, as_json: bool, databases: tuple[str, ...], tenants: tuple[str, ...]) -> int:
    """Views with strategy, existence, population, estimated rows, size and last run (and, in
    an estate, database and tenant)."""
    from ..core.connection import DatabaseUnavailable

    estate, rows, code = options.estate(), [], 0
    for part in options.parts(None, databases, tenants):
        member = part.member
        if part.unexpanded or (not part.definitions and member.unavailable):
            click.echo(f"warning: {member.unavailable}; its views with tenant schemas are not listed", err=True)
            code = EXIT_FAILED
        try:
            found = member.matviews.status() if part.definitions else []
        except DatabaseUnavailable as exc:
            click.echo(f"warning: {exc}; its views are not listed", err=True)
            code = EXIT_FAILED
            continue
        if estate.spans_databases:
            found = [{**row, "database": member.label, "tenant": member.tenant_of.get(row["name"])} for row in found]
        rows.extend(found)
    if as_json:
        render.emit_rows(rows)
    else:
        tables.print_views(rows)
    return code


@click.command()
@click.option("--kind", type=click.Choice(RUN_KINDS))
@click.option("--view", help="Only this view (schema defaults to public).")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of run rows.")
@estate_options
@pass_options
def runs(
    options: CliOptions,
    kind: str | None,
    view: str | None,
    limit: int,
    as_json: bool,
    databases: tuple[str, ...],
    tenants: tuple[str, ...],
) -> int:
    """Run history, newest first: of every database of the estate (one query per run store)."""
    if not options.definitions_path.exists() or not (options.estate().spans_databases or databases or tenants):
        mv = options.matviews() if options.definitions_path.exists() else options.database()
        rows = mv.history(kind=kind, view=view, limit=limit)  # with definitions, `mv_x` finds reporting.mv_x
        unread = False
    else:
        rows, unread = _estate_history(options, kind, view, limit, databases, tenants)
    if as_json:
        render.emit_rows(rows)
    else:
        tables.print_runs(rows, databases=bool(options.definitions_path.exists() and options.estate().spans_databases))
    return EXIT_FAILED if unread else 0


def _estate_history(
    options: CliOptions,
    kind: str | None,
    view: str | None,
    limit: int,
    databases: tuple[str, ...],
    tenants: tuple[str, ...],
) -> tuple[list[dict[str, Any]], bool]:
    """The newest ``limit`` run rows of the narrowed estate (each run store read once, each
    named database's rows by their ``database_name``, a tenant's by its views), and whether a
    database's run tables could not be read."""
    from ..core.connection import DatabaseUnavailable

    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    unread: list[str] = []
    for part in options.parts(None, databases, tenants):
        member = part.member
        settings = member.matviews.db.settings
        store = (settings.runs_dsn or member.matviews.dsn, settings.runs_schema)
        views = {d.name for d in part.definitions} if tenants else None
        try:
            found = member.matviews.history(kind=kind, view=view, limit=limit, database=member.name)
        except DatabaseUnavailable as exc:  # its own run tables, on a server that is down: say so, show the rest
            said = str(exc) if str(exc).startswith("database ") else f"database {member.label}: {exc}"
            click.echo(f"warning: {said}; its runs are not shown", err=True)
            unread.append(member.label)
            continue
        for row in found:
            if views is None or row["view_name"] in views:
                rows[(*store, row["kind"], row["id"])] = row
    found = sorted(rows.values(), key=lambda row: (row["started_at"], row["id"]), reverse=True)[:limit]
    return found, bool(unread)


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
    tables.print_validation(results)
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


COMMANDS = [migrate, info, list_views, runs, validate, demo]
