"""``--enqueue`` (hand views to the adapter's backend) and ``matviews requests`` (what became
of each request enqueued with the queue backend)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import click

from ..core.vocabulary import REQUEST_STATUSES
from . import render, tables
from .context import EXIT_FAILED, CliOptions, pass_options

if TYPE_CHECKING:
    from ..core.definition import MatViewDefinition


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
        tables.print_requests(rows)
    return 0


def enqueue_all(
    options: CliOptions,
    job: str,
    definitions: Iterable[MatViewDefinition],
    option: object,
    queue: str | None,
    as_json: bool = False,
) -> int:
    """``--enqueue``: hand each view to the configured adapter backend; nothing runs here. With
    ``--json``, one object per view: ``{backend, job, queue, view, request_id, dagster_run_id,
    status, run_record_ids}``."""
    from dataclasses import asdict

    from ..adapter import MatViewsAdapter

    adapter = MatViewsAdapter(
        dsn=options.dsn, definitions_path=str(options.definitions_path), runs_schema=options.runs_schema
    )
    failed = False
    for definition in definitions:  # an omitted option stays omitted: the definition decides
        args = [definition.name] if option is None else [definition.name, option]
        enqueued = adapter.enqueue(job, queue=queue, args=args)
        click.echo(render.as_json(asdict(enqueued)) if as_json else enqueued.describe())
        failed = failed or enqueued.status == "failure"  # the inline backend ran it, and it failed
    return EXIT_FAILED if failed else 0


COMMANDS = [requests]
