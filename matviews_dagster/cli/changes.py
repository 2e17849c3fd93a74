"""Definition changes from the command line: ``plan`` (what would change), ``apply`` (make the
views match their definitions) and ``import`` (definitions for views that already exist)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from . import render
from .context import EXIT_FAILED, EXIT_USAGE, CliOptions, InputError, confirm, pass_options


@click.command()
@click.argument("names", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per view.")
@pass_options
def plan(options: CliOptions, names: tuple[str, ...], as_json: bool) -> int:
    """What apply would do to each view: create, unchanged, change (with the query diff and
    index changes), orphan (run history here, no definition), error (cannot be compared, e.g.
    its query does not compile). Exit 0 when nothing would change, 1 when something would, 2
    when a view could not be compared."""
    mv = options.matviews()
    plans = mv.plan(list(dict.fromkeys(names)) or None)
    if as_json:
        render.emit_json([p.to_dict() for p in plans])
    else:
        render.print_plans(plans)
    if any(p.action == "error" for p in plans):
        return EXIT_USAGE
    return EXIT_FAILED if any(p.action in ("create", "change") for p in plans) else 0


@click.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_views", is_flag=True, help="Every view in the definitions file.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per view.")
@click.option("--parallel", type=click.IntRange(min=1), default=4, show_default=True, help="Views at once.")
@pass_options
def apply(options: CliOptions, names: tuple[str, ...], all_views: bool, yes: bool, **out: Any) -> int:
    """Make views match their definitions: create the missing, rebuild those whose query
    changed (owner, grants, comments, other indexes and the views built on them are kept),
    add and drop declared indexes; asks first, like delete."""
    mv = options.matviews()
    selected = [d.name for d in options.select(names, all_views)]
    plans = mv.plan(selected)
    pending = [p for p in plans if p.action in ("create", "change", "error")]
    if not pending:
        click.echo("nothing to apply: every view matches its definition", err=out["as_json"])
        return 0
    listed = "; ".join(f"{p.action} {p.view}" + (f" ({p.summary()})" if p.summary() else "") for p in pending)
    confirm(f"Apply {len(pending)} change(s): {listed}", yes)
    results = mv.apply_many([p.view for p in pending], max_parallel=out["parallel"])
    names_ = [p.view for p in pending]
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
