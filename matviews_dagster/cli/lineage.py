"""``matviews lineage``: where each column of a view comes from, and which view columns a
column feeds (``--downstream``, ``--source``), from ``core.lineage`` over the whole
definitions file (one catalog query)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from . import render
from .context import CliOptions, InputError, pass_options

if TYPE_CHECKING:
    from ..core.lineage import ViewLineage


@click.command()
@click.argument("name", required=False)
@click.option("--column", help="Only this column (of NAME, or of --source).")
@click.option("--downstream", is_flag=True, help="The defined views' columns built on NAME's columns, at any depth.")
@click.option("--source", help="A table or view (schema.table): every defined view column built on --column of it.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_options
def lineage(
    options: CliOptions, name: str | None, column: str | None, downstream: bool, source: str | None, as_json: bool
) -> int:
    """Column lineage: for each column of NAME, the upstream columns it is computed from."""
    from ..core.lineage import ColumnSource, readers
    from ..core.names import QualifiedName

    if bool(name) == bool(source):
        raise InputError("name one view, or pass --source schema.table --column C (not both)")
    if source and not column:
        raise InputError("--source needs --column C: the column whose readers to list")
    if source and downstream:
        raise InputError("--downstream goes with a view NAME; --source already lists the readers")
    mv = options.matviews()
    if source:
        relation = QualifiedName.parse(source.replace('"', ""), "--source")
        reader = mv.lineage_reader(also=[relation])
        known = reader.catalog.get(relation)
        if known is not None:
            has = list(known.columns)
        elif str(relation) in mv.graph:  # a defined view not created yet: the columns its query names
            has = list(reader.of(mv.graph[str(relation)]).columns)
        else:
            raise InputError(f"no relation {relation} in the database (names are case-sensitive: schema.Table)")
        if column not in has:
            raise InputError(f"{relation} has no column {column}; its columns: {', '.join(has) or 'none'}")
        every = [reader.of(definition, [relation]) for definition in mv.graph]
        start = ColumnSource(relation, str(column))
        used = [{"view": view, "column": col} for view, columns in readers(every, [start]).items() for col in columns]
        if as_json:
            render.emit_json({"source": str(relation), "column": column, "used_by": used})
        else:
            print_readers(f"{relation}.{column}", used)
        return 0
    every = mv.column_lineage()
    definition = mv.definition(str(name))
    own = next(item for item in every if item.view == definition.name)
    if column is not None and column not in own.columns:
        raise InputError(f"{definition.name} has no column {column}; its columns: {', '.join(own.columns) or 'none'}")
    columns = [column] if column else list(own.columns)
    if downstream:
        start = [ColumnSource(definition.qualified, c) for c in columns]
        found = [_only(item, readers(every, start)[item.view]) for item in every if item.view in readers(every, start)]
    else:
        found = [_only(own, {c: own.columns[c] for c in columns})]
    if as_json:
        render.emit_json([item.to_dict() for item in found])
    else:
        print_lineage(found, downstream_of=definition.name if downstream else None)
    return 0


def _only(lineage: ViewLineage, columns: dict[str, tuple[object, ...]]) -> ViewLineage:
    from ..core.lineage import ViewLineage

    return ViewLineage(
        lineage.view,
        {c: lineage.columns[c] for c in columns},
        {c: why for c, why in lineage.unresolved.items() if c in columns},
    )


def print_lineage(found: list[ViewLineage], downstream_of: str | None = None) -> None:
    """``matviews lineage``: each view's columns with the columns they come from; a column
    whose sources are not known says why. ``downstream_of``: the views listed read that view."""
    if downstream_of is not None and not found:
        click.echo(f"no defined view reads the columns of {downstream_of}")
    for lineage in found:
        click.echo(lineage.view)
        width = max((len(c) for c in lineage.columns), default=0)
        for column, sources in lineage.columns.items():
            if column in lineage.unresolved:
                text = f"? ({lineage.unresolved[column]})"
            else:
                text = ", ".join(str(s) for s in sources) or "(no source column: constants only)"
            click.echo(f"  {column:{width}}  <- {text}")


def print_readers(source: str, used: list[dict[str, str]]) -> None:
    """``matviews lineage --source``: every view column built on ``source``."""
    if not used:
        click.echo(f"no defined view column is built on {source}")
        return
    click.echo(f"built on {source}:")
    for item in used:
        click.echo(f"  {item['view']}.{item['column']}")


COMMANDS = [lineage]
