"""How tables show: ``matviews list``, ``runs``, ``requests``, ``validate``, ``plan``,
``server status`` and ``advise --try``, with rich."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from .render import cli_words

if TYPE_CHECKING:
    from pathlib import Path

    from ..core.drift import ViewPlan
    from ..core.embedded import EmbeddedServer
    from ..core.validation import ValidationResult


def print_views(rows: list[dict[str, Any]]) -> None:
    """``matviews list``: one row per view (see ``inventory.view_status``)."""
    from rich.table import Table

    estate = any("database" in row for row in rows)
    table = Table(*(["database", "tenant"] if estate else []), "view", "strategy", "exists", "populated")
    for column in ("rows (est.)", "size", "last run"):
        table.add_column(column)
    for row in rows:
        last = row["last_run"]
        last_text = "-" if last is None else f"{last['kind']} {last['status']} {_when(last['finished_at'])}"
        table.add_row(
            *([row["database"], row["tenant"] or "-"] if estate else []),
            row["name"],
            row["strategy"],
            _yes(row["exists"]),
            _yes(row["populated"]),
            "-" if row["rows_estimate"] is None else f"{row['rows_estimate']:,}",
            _size(row["size_bytes"]),
            last_text,
        )
    _console().print(table)


def print_runs(rows: list[dict[str, Any]], *, databases: bool = False) -> None:
    """``matviews runs``: one row per run row, newest first; with ``databases`` (an estate),
    each row's ``database_name`` first (run ids are per database's run tables)."""
    from rich.table import Table

    table = Table(*(["database"] if databases else []), "run", "view", "status", "what happened", "strategy")
    for column in ("started", "ms", "rows", "error / warnings"):
        table.add_column(column)
    for row in rows:
        meta = row["meta"] or {}
        notes = [row["error"]] if row["error"] else []
        notes += [f"warning: {w}" for w in meta.get("warnings", [])]
        table.add_row(
            *([row["database_name"]] if databases else []),
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


def print_plans(plans: list[ViewPlan], database: str | None = None) -> None:
    """``matviews plan``: one line per view, then the query diff of each changed one; under a
    ``database NAME:`` heading when the estate has several."""
    if database is not None:
        click.echo(f"database {database}:")
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
