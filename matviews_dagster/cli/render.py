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
    from pathlib import Path

    from ..core.drift import ViewPlan
    from ..core.embedded import EmbeddedServer
    from ..core.result import OperationResult
    from ..core.validation import ValidationResult

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


def describe_result(result: OperationResult) -> str:
    """``ok      public.mv_users: refreshed, 12 ms, 500 rows, run #7`` (``what_happened``; a
    refresh that built its view first shows the build's time and both runs) and, indented,
    what was dropped with it, warnings, the error and its hint."""
    mark = {"success": "ok", "skipped": "SKIPPED"}.get(result.status, "FAILED")
    parts = [f"{mark:7} {result.view}: {result.what_happened}"]
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


def print_views(rows: list[dict[str, Any]]) -> None:
    """``matviews list``: one row per view (see ``inventory.view_status``)."""
    from rich.table import Table

    table = Table("view", "strategy", "exists", "populated", "rows (est.)", "size", "last run")
    for row in rows:
        last = row["last_run"]
        last_text = "-" if last is None else f"{last['kind']} {last['status']} {_when(last['finished_at'])}"
        table.add_row(
            row["name"],
            row["strategy"],
            _yes(row["exists"]),
            _yes(row["populated"]),
            "-" if row["rows_estimate"] is None else f"{row['rows_estimate']:,}",
            _size(row["size_bytes"]),
            last_text,
        )
    _console().print(table)


def print_runs(rows: list[dict[str, Any]]) -> None:
    """``matviews runs``: one row per run row, newest first."""
    from rich.table import Table

    table = Table("run", "view", "status", "what happened", "strategy", "started", "ms", "rows", "error / warnings")
    for row in rows:
        meta = row["meta"] or {}
        notes = [row["error"]] if row["error"] else []
        notes += [f"warning: {w}" for w in meta.get("warnings", [])]
        table.add_row(
            f"{row['kind']} #{row['id']}",  # ids are per run table: a create and a refresh may share one
            row["view_name"],
            row["status"],
            row.get("what_happened") or meta.get("outcome", "-"),
            meta.get("strategy") or (meta.get("options") or {}).get("strategy") or "-",
            _when(row["started_at"]),
            "-" if row["duration_ms"] is None else str(row["duration_ms"]),
            "-" if row["rows_count"] is None else f"{row['rows_count']:,}",
            "; ".join(notes),
        )
    _console().print(table)


def print_requests(rows: list[dict[str, Any]]) -> None:
    """``matviews requests``: one row per queued request, newest first."""
    from rich.table import Table

    table = Table("request", "job", "view(s)", "queue", "status", "enqueued", "finished", "Dagster run", "error")
    for row in rows:
        views = row["views"] or [row["view_name"] or "-"]
        table.add_row(
            f"#{row['id']}",
            row["job"],
            ", ".join(views),
            row["queue"],
            row["status"],
            _when(row["enqueued_at"]),
            _when(row["finished_at"]),
            row["dagster_run_id"] or "-",
            row["error"] or "",
        )
    _console().print(table)


def print_validation(results: list[ValidationResult]) -> None:
    """``matviews validate``: rows and timings (ms) of the query and of reading the view."""
    from rich.table import Table

    table = Table(
        "view", "query rows", "view rows", "query ms (min/med/max)", "view ms (min/med/max)", "speedup", "same rows"
    )
    for r in results:
        table.add_row(
            r.view,
            f"{r.query_rows:,}",
            f"{r.view_rows:,}",
            f"{r.query.min_ms:.1f} / {r.query.median_ms:.1f} / {r.query.max_ms:.1f}",
            f"{r.view_read.min_ms:.1f} / {r.view_read.median_ms:.1f} / {r.view_read.max_ms:.1f}",
            f"{r.speedup:.1f}x",
            "yes" if r.matches else "NO",
        )
    _console().print(table)


def print_plans(plans: list[ViewPlan]) -> None:
    """``matviews plan``: one line per view, then the query diff of each changed one."""
    width = max((len(p.view) for p in plans), default=0)
    for p in plans:
        line = f"{p.action:10} {p.view:{width}}"
        if p.summary():
            line += f"  {cli_words(p.summary())}"
        if p.hint:
            line += f"; hint: {cli_words(p.hint)}"
        if p.action == "orphan":
            line += "  run history here but no definition in this file (another definitions file may own it)"
        click.echo(line.rstrip())
        if p.diff:
            click.echo("\n".join(f"           {diff_line}" for diff_line in p.diff.splitlines()))


def print_servers(servers: list[EmbeddedServer], here: Path) -> None:
    """``matviews server status``: one row per registered embedded server; ``here`` marks the
    one this directory's commands use."""
    if not servers:
        click.echo("no embedded server was started by this user")
        return
    from rich.table import Table

    table = Table("data directory", "status", "pid", "socket", "since", "owner")
    table.columns[0].no_wrap = table.columns[3].no_wrap = True  # paths whole, to copy
    for s in servers:
        mark = " (this directory)" if s.data_dir == here else ""
        table.add_row(
            f"{s.data_dir}{mark}",
            "running" if s.running else "stopped",
            "-" if s.pid is None else str(s.pid),
            "-" if s.socket_dir is None else f"{s.socket_dir}/.s.PGSQL.{s.port}",
            _when(s.started_at),
            s.owner,
        )
    _console(width=2 * max(len(str(s.data_dir)) for s in servers) + 120).print(table)


def print_trial(trial: dict[str, Any]) -> None:
    """``matviews advise --try``: the view's own refresh beside the alternative on a copy."""
    from rich.table import Table

    own, other = trial["current"], trial["alternative"]
    table = Table("measure", f"{own['strategy']} (the view)", f"{other['strategy']} (a copy)")
    table.add_row("duration", f"{own['duration_ms']} ms", f"{other['duration_ms']} ms")
    for key in ("wal_bytes", "temp_bytes", "size_after_bytes"):
        table.add_row(key.removesuffix("_bytes").replace("_", " "), _size(own.get(key)), _size(other.get(key)))
    for key in ("buffers_read", "buffers_hit"):
        table.add_row(key.replace("_", " "), _count(own.get(key)), _count(other.get(key)))
    waited = own.get("reader_wait_ms")
    readers = f"{own.get('readers_blocked') or 0} waited, {waited or 0} ms" if waited is not None else "-"
    table.add_row("readers", readers, f"would wait {other['readers_wait']}")
    _console().print(table)


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _console(width: int = 200) -> Any:
    """A rich console; ``width`` wide (enough not to wrap names) when the output is not a terminal."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=width)


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"
