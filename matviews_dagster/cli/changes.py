"""Definition changes from the command line: ``plan`` (what would change), ``apply`` (make the
views match their definitions) and ``import`` (definitions for views that already exist)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import render, tables
from .context import (
    EXIT_FAILED,
    EXIT_USAGE,
    CliOptions,
    InputError,
    confirm,
    estate_options,
    pass_options,
    require_selection,
)

if TYPE_CHECKING:
    from ..core.drift import ViewPlan
    from ..core.estate_runs import Part


def _plans(parts: list[Part], everything: bool) -> list[tuple[Part, list[ViewPlan]]]:
    """Each database's plans (with ``everything``, its orphans too); a database that cannot be
    read is said on stderr and left out."""
    from ..core.connection import DatabaseUnavailable

    planned = []
    for part in parts:
        if part.unexpanded:
            click.echo(f"warning: {part.member.unavailable}; its views with tenant schemas are not planned", err=True)
        try:
            views = None if everything else [d.name for d in part.definitions]
            planned.append((part, part.member.matviews.plan(views) if part.definitions else []))
        except DatabaseUnavailable as exc:
            click.echo(f"warning: {exc}; its views are not planned", err=True)
    return planned


@click.command()
@click.argument("names", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per view.")
@estate_options
@pass_options
def plan(
    options: CliOptions, names: tuple[str, ...], as_json: bool, databases: tuple[str, ...], tenants: tuple[str, ...]
) -> int:
    """What apply would do to each view: create, unchanged, change (with the query diff and
    index changes), orphan (run history here, no definition), error (cannot be compared, e.g.
    its query does not compile). Exit 0 when nothing would change, 1 when something would, 2
    when a view could not be compared."""
    everything = not names and not databases and not options.estate().spans_databases  # orphans: one database only
    planned = _plans(options.parts(names or None, databases, tenants), everything=everything)
    plans = [p for _, found in planned for p in found]
    if as_json:
        render.emit_json([{**p.to_dict(), **render.estate_keys(part)} for part, found in planned for p in found])
    else:
        for part, found in planned:
            tables.print_plans(found, None if len(planned) == 1 else part.member.label)
    if any(p.action == "error" for p in plans):
        return EXIT_USAGE
    return EXIT_FAILED if any(p.action in ("create", "change") for p in plans) else 0


@click.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_views", is_flag=True, help="Every view in the definitions file.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per view.")
@click.option("--parallel", type=click.IntRange(min=1), default=4, show_default=True, help="Views at once.")
@estate_options
@pass_options
def apply(options: CliOptions, names: tuple[str, ...], all_views: bool, yes: bool, **out: Any) -> int:
    """Make views match their definitions: create the missing, rebuild those whose query
    changed (owner, grants, comments, other indexes and the views built on them are kept),
    add and drop declared indexes; asks first, like delete."""
    from dataclasses import replace

    from ..core.estate_runs import run_parts

    parts = options.parts(require_selection(names, all_views), out["databases"], out["tenants"])
    planned = _plans(parts, everything=False)
    pending = [(part, p) for part, found in planned for p in found if p.action in ("create", "change", "error")]
    if not pending:
        click.echo("nothing to apply: every view matches its definition", err=out["as_json"])
        return 0
    listed = "; ".join(
        f"{p.action} {render.view_label(p.view, part.member.name)}" + (f" ({p.summary()})" if p.summary() else "")
        for part, p in pending
    )
    confirm(f"Apply {len(pending)} change(s): {listed}", yes)
    changing = {(id(part), p.view) for part, p in pending}
    parts = [
        replace(part, definitions=[d for d in part.definitions if (id(part), d.name) in changing])
        for part, _ in planned
    ]
    results = run_parts("create", parts, lambda mv, views, n: mv.apply_many(views, max_parallel=n), out["parallel"])
    names_ = [render.view_label(p.view, part.member.name) for part, p in pending]
    return render.stream_results(results, json_lines=out["as_json"], names=names_, progress_label="applying")


@click.command("import")
@click.option("--schema", "schemas", multiple=True, help="Only this schema (repeatable; default: all but system).")
@click.option(
    "--out", type=click.Path(path_type=Path, dir_okay=False), help="Write the definitions here (default: stdout)."
)
@pass_options
def import_views(options: CliOptions, schemas: tuple[str, ...], out: Path | None) -> int:
    """Write definitions for the materialized views that already exist, to adopt them."""
    from ..core.import_views import definitions_yaml, import_definitions

    if out is not None and out.exists():
        raise InputError(f"{out} exists; pass another --out, or remove it first (nothing was written)")
    if out is not None and not out.parent.is_dir():
        raise InputError(f"no directory {out.parent} for --out {out}; create it first (nothing was written)")
    with options.database().connect("import") as conn:
        definitions, notes = import_definitions(conn, schemas)
    text = definitions_yaml(definitions, notes)
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text)
        click.echo(f"wrote {len(definitions)} definition(s) to {out}", err=True)
    for note in notes:
        click.echo(f"note: {note}", err=True)
    return 0


COMMANDS = [plan, apply, import_views]
