"""``matviews requests``: what became of each request enqueued with the adapter's queue backend."""

from __future__ import annotations

import click

from ..core.vocabulary import REQUEST_STATUSES
from . import render
from .context import CliOptions, pass_options


@click.command()
@click.option("--status", type=click.Choice(REQUEST_STATUSES), help="Only requests in this state.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of request rows.")
@pass_options
def requests(options: CliOptions, status: str | None, limit: int, as_json: bool) -> int:
    """Queued requests newest first: status, the Dagster run that served each, and why one failed."""
    from dataclasses import asdict

    mv = options.matviews() if options.definitions_path.exists() else options.database()
    rows = [asdict(row) for row in mv.requests(status=status, limit=limit)]
    if as_json:
        render.emit_rows(rows, id_word="request_id")
    else:
        render.print_requests(rows)
    return 0


COMMANDS = [requests]
