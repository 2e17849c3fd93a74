"""How the CLI shows things: result lines in the CLI's words, JSON, rich tables, progress."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from ..core.messages import counted, in_words
from .context import EXIT_FAILED, Interrupted

if TYPE_CHECKING:
    from ..core.result import OperationResult

_CLI_WORDS = {
    "create_missing": " (matviews create)",
    "create_all": "(matviews create --all)",
    "cascade": "--cascade",
    "force": "--force",
    "strategy": r"--strategy \1",
    "apply": "matviews apply",
}


def cli_words(text: str) -> str:
    """A hint in this interface's words: the core speaks Python (``cascade=True``), the CLI
    has flags (``--cascade``)."""
    return in_words(text, _CLI_WORDS)


def _json_default(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def as_json(value: object) -> str:
    return json.dumps(value, default=_json_default)


def emit_json(value: object) -> None:
    click.echo(as_json(value))


JSON_WORDS = {"id": "run_id", "view_name": "view", "name": "view"}
"""The JSON of every command speaks one vocabulary: a run row's ``id`` is also ``run_id`` and
its ``view_name`` also ``view``, as in ``refresh --json``; ``list``'s ``name`` is also ``view``.
The table's own names stay (the design's contract: run rows as the table's columns)."""


def emit_rows(rows: list[dict[str, Any]], id_word: str = "run_id") -> None:
    """``rows`` as a JSON array, each with the one-vocabulary names added (``JSON_WORDS``;
    ``id_word`` names a row's ``id``: ``run_id`` for run rows, ``request_id`` for requests)."""
    words = {**JSON_WORDS, "id": id_word}
    emit_json([{**row, **{words[k]: v for k, v in row.items() if k in words and words[k] not in row}} for row in rows])


SHOWN_LOCK_WAIT_MS = 100
"""A wait for locks at least this long is shown beside the duration (it is never part of it)."""


def view_label(view: str, database: str | None) -> str:
    """A view as lines show it: ``public.mv_users``, or ``public.mv_users (warehouse)`` for a
    view of a named database of an estate."""
    return view if database is None else f"{view} ({database})"


def estate_keys(part: Any) -> dict[str, Any]:
    """``database`` (a ``databases:`` key) for a JSON object of a named database's view, else nothing."""
    return {"database": part.member.name} if part.member.name else {}


def describe_result(result: OperationResult) -> str:
    """``ok      public.mv_users: refreshed, 12 ms, 500 rows, run #7`` (``what_happened``; a
    refresh that built its view first shows the build's time and both runs) and, indented,
    what was dropped with it, warnings, the error and its hint."""
    mark = {"success": "ok", "skipped": "SKIPPED"}.get(result.status, "FAILED")
    parts = [f"{mark:7} {view_label(result.view, result.database)}: {result.what_happened}"]
    if result.run_id is not None:
        parts.append(f"{result.total_duration_ms} ms")  # a refresh that built its view first: the build's time
    if result.lock_wait_ms and result.lock_wait_ms >= SHOWN_LOCK_WAIT_MS:
        parts.append(f"waited {result.lock_wait_ms / 1000:.1f} s for locks")
    if result.rows_count is not None:
        parts.append(counted(result.rows_count, "row"))
    if result.created is not None and result.created.run_id is not None:
        parts.append(f"create run #{result.created.run_id}")
    if result.run_id is not None:
        parts.append(f"{'refresh run' if result.created is not None else 'run'} #{result.run_id}")
    line = ", ".join(parts)
    if result.dropped:
        line += f"\n        dropped with it: {', '.join(result.dropped)}"
    for warning in result.warnings:
        line += f"\n        warning: {cli_words(warning)}"
    if result.error:
        line += f"\n        {cli_words(result.error)}"
        if result.hint:
            line += f"\n        hint: {cli_words(result.hint)}"
    return line


def stream_results(
    results: Iterable[OperationResult], *, json_lines: bool, names: list[str], progress_label: str | None = None
) -> int:
    """Print each result as it comes (one JSON object per line with ``--json``); exit 1 if
    any view failed or was skipped. An interrupt cancels the statements in flight (their run
    rows end ``failed``), prints their results, and names the views that did not finish."""
    seen: list[OperationResult] = []

    def report(result: OperationResult, echo: Callable[[str], None]) -> None:
        seen.append(result)
        echo(as_json(result.to_dict()) if json_lines else describe_result(result))

    try:
        if progress_label and not json_lines and sys.stdout.isatty() and len(names) > 1:
            from rich.progress import Progress

            with Progress(transient=True) as progress:
                task = progress.add_task(progress_label, total=len(names))
                for result in results:
                    report(result, lambda line: progress.console.print(line, markup=False, highlight=False))
                    progress.advance(task)
        else:
            for result in results:
                report(result, click.echo)
    except KeyboardInterrupt:
        finished = {result.view for result in seen}
        unfinished = [name for name in names if name not in finished]
        ok = sum(result.ok for result in seen)
        raise Interrupted(
            f"interrupted: {ok} of {counted(len(names), 'view')} done, {len(seen) - ok} failed or cancelled"
            + (f"; not finished: {', '.join(unfinished)}" if unfinished else "")
        ) from None
    return EXIT_FAILED if any(not result.ok for result in seen) else 0
