"""The ``matviews`` command line.

Exit codes: 0 success; 1 an operation ran and failed, was aborted, or ``validate`` found a
mismatch; 2 bad usage or input (unknown view, invalid definitions file, unreachable server).
The direct path (no ``--enqueue``) never imports dagster, so scripts can call it in loops.
"""

from __future__ import annotations

import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .core.vocabulary import (
    DEFAULT_MAX_PARALLEL,
    REFRESH_STRATEGIES,
    ROW_COUNT_STRATEGIES,
    RUN_KINDS,
    CreateViewJob,
    DeleteViewJob,
    RefreshViewJob,
)

if TYPE_CHECKING:
    from .core.definition import MatViewDefinition
    from .core.operations import MatViews
    from .core.result import OperationResult

EXIT_FAILED = 1
EXIT_USAGE = 2


class InputError(click.ClickException):
    """Bad input: exit 2, nothing executed."""

    exit_code = EXIT_USAGE


class Aborted(click.ClickException):
    """The user did not confirm: exit 1, nothing touched."""

    exit_code = EXIT_FAILED


@dataclass
class Settings:
    dsn: str | None
    definitions_path: Path
    runs_schema: str
    debug: bool
    _mv: MatViews | None = field(default=None, repr=False)

    def definitions(self) -> list[MatViewDefinition]:
        from .core.definition import load_definitions

        if not self.definitions_path.exists():
            raise ValueError(
                f"no definitions file {self.definitions_path}: pass --definitions PATH "
                "(env MATVIEWS_DEFINITIONS), or --demo for the demo's views"
            )
        return load_definitions(self.definitions_path)

    def matviews(self) -> MatViews:
        if self._mv is None:
            from .core.operations import MatViews

            mv = MatViews(dsn=self.dsn, definitions=self.definitions(), runs_schema=self.runs_schema)
            try:
                mv.graph  # noqa: B018  (a cycle is bad input: say so before anything runs)
            except ValueError as exc:
                raise ValueError(f"{self.definitions_path}: {exc}") from None
            self._mv = mv
        return self._mv

    def select(self, names: tuple[str, ...], all_views: bool) -> list[MatViewDefinition]:
        """The named views (validated, every unknown one named) or all of them, before anything runs."""
        if bool(names) == all_views:
            raise InputError("name one or more views, or pass --all (not both)")
        return self.matviews().select(None if all_views else list(dict.fromkeys(names)))


pass_settings = click.make_pass_decorator(Settings)


def _json_default(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def emit_json(value: object) -> None:
    click.echo(json.dumps(value, default=_json_default))


def confirm(action: str, yes: bool) -> None:
    """Ask ``Proceed? [y/N]`` unless ``--yes``/``YES=1``; no terminal means no."""
    if yes or os.environ.get("YES") == "1":
        return
    if not sys.stdin.isatty():
        raise Aborted(f"{action}: aborted, no terminal to confirm on; pass --yes (or YES=1)")
    click.echo(action, err=True)
    answer = click.prompt("Proceed? [y/N]", default="", show_default=False, err=True)
    if answer.strip().lower() not in ("y", "yes"):
        raise Aborted("aborted; nothing was changed")


def describe_result(result: OperationResult) -> str:
    mark = {"success": "ok", "skipped": "SKIPPED"}.get(result.status, "FAILED")
    parts = [f"{mark:7} {result.view}: {result.outcome}"]
    if result.run_id is not None:
        parts.append(f"{result.duration_ms} ms")
    if result.rows_count is not None:
        parts.append(f"{result.rows_count} rows")
    if result.run_id is not None:
        parts.append(f"run #{result.run_id}")
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


_CLI_WORDS = [
    (re.compile(r", or refresh with create_if_missing=True"), " (matviews create)"),
    (re.compile(r"\(create_many\)"), "(matviews create --all)"),
    (re.compile(r"\bcascade=True\b"), "--cascade"),
    (re.compile(r"\bforce=True\b"), "--force"),
    (re.compile(r"\bstrategy='(\w+)'"), r"--strategy \1"),
]


def cli_words(text: str) -> str:
    """A hint in this interface's words: the core speaks Python (``cascade=True``), the CLI
    has flags (``--cascade``)."""
    for pattern, words in _CLI_WORDS:
        text = pattern.sub(words, text)
    return text


class Interrupted(click.ClickException):
    """Ctrl-C or SIGTERM during operations: exit 1, after saying what ran and what did not."""

    exit_code = EXIT_FAILED


def run_operations(
    results: Iterable[OperationResult], *, as_json: bool, names: list[str], progress_label: str | None = None
) -> int:
    """Print each result as it comes (one JSON object per line with ``--json``); exit 1 if
    any view failed or was skipped. An interrupt cancels the statements in flight (their run
    rows end ``failed``), prints their results, and names the views that did not finish."""
    seen: list[OperationResult] = []

    def report(result: OperationResult, echo: Callable[[str], None]) -> None:
        seen.append(result)
        echo(json.dumps(result.to_dict(), default=_json_default) if as_json else describe_result(result))

    try:
        if progress_label and not as_json and sys.stdout.isatty() and len(names) > 1:
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
            f"interrupted: {ok} of {len(names)} view(s) done, {len(seen) - ok} failed or cancelled"
            + (f"; not finished: {', '.join(unfinished)}" if unfinished else "")
        ) from None
    return EXIT_FAILED if any(not result.ok for result in seen) else 0


def enqueue_all(
    settings: Settings, job: str, definitions: Iterable[MatViewDefinition], option: object, queue: str | None
) -> int:
    """``--enqueue``: hand each view to the configured adapter backend; nothing runs here."""
    from .adapter import MatViewsAdapter

    adapter = MatViewsAdapter(
        dsn=settings.dsn, definitions_path=str(settings.definitions_path), runs_schema=settings.runs_schema
    )
    failed = False
    for definition in definitions:  # an omitted option stays omitted: the definition decides
        args = [definition.name] if option is None else [definition.name, option]
        enqueued = adapter.enqueue(job, queue=queue, args=args)
        click.echo(enqueued.describe())
        failed = failed or enqueued.status == "failure"  # the inline backend ran it, and it failed
    return EXIT_FAILED if failed else 0


def operation_output_options(command: Callable[..., Any]) -> Callable[..., Any]:
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--dsn",
    envvar=["MATVIEWS_DSN", "DATABASE_URL"],
    help="libpq DSN or URL (env MATVIEWS_DSN, then DATABASE_URL; neither: the embedded Postgres "
    "under $MATVIEWS_HOME, default ./.matviews; `matviews info` shows which and how to reach it with psql).",
)
@click.option(
    "--definitions",
    "definitions_path",
    envvar="MATVIEWS_DEFINITIONS",
    default="matviews.yaml",
    show_default=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="YAML file with the views (env MATVIEWS_DEFINITIONS).",
)
@click.option("--demo", is_flag=True, help="Use the demo's views (the ones `dagster dev -f definitions.py` shows).")
@click.option(
    "--runs-schema",
    envvar="MATVIEWS_RUNS_SCHEMA",
    default="public",
    show_default=True,
    help="Schema of the run tables.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="matviews-dagster", prog_name="matviews")
@click.pass_context
def cli(ctx: click.Context, dsn: str | None, definitions_path: Path, demo: bool, runs_schema: str, debug: bool) -> None:
    """Create, refresh and delete PostgreSQL materialized views, with run history."""
    if demo:
        from .demo import DEMO_VIEWS

        definitions_path = DEMO_VIEWS
    ctx.obj = Settings(dsn=dsn, definitions_path=definitions_path, runs_schema=runs_schema, debug=debug)


@cli.command()
@pass_settings
def migrate(settings: Settings) -> int:
    """Create or upgrade the run tables."""
    from .core.dsn import configured_dsn, mask_dsn
    from .core.operations import MatViews

    version = MatViews(dsn=settings.dsn, runs_schema=settings.runs_schema).migrate()
    where = mask_dsn(configured_dsn(settings.dsn) or "the embedded Postgres")
    click.echo(f"run tables at version {version} in schema {settings.runs_schema} of {where}")
    return 0


@cli.command()
@pass_settings
def info(settings: Settings) -> int:
    """Where the views live: the DSN (masked) and where it came from, the server, the run
    tables, the definitions file, and for the embedded server its data directory and a psql
    command line."""
    import os

    from .core.dsn import configured_dsn, mask_dsn, resolve_dsn

    configured = configured_dsn(settings.dsn)
    if settings.dsn:
        source = (
            "--dsn"
            if settings.dsn not in (os.environ.get("MATVIEWS_DSN"), os.environ.get("DATABASE_URL"))
            else ("MATVIEWS_DSN" if settings.dsn == os.environ.get("MATVIEWS_DSN") else "DATABASE_URL")
        )
    else:
        source = "the embedded Postgres (no --dsn, MATVIEWS_DSN or DATABASE_URL)"
    dsn = configured or resolve_dsn(None)
    lines = [f"dsn:          {mask_dsn(dsn)}", f"from:         {source}"]
    if configured is None:
        from .core.embedded import matviews_home

        lines.append(f"data dir:     {matviews_home() / 'pgdata'}")
        lines.append(f"psql:         psql '{mask_dsn(dsn)}'")
    from .core.operations import MatViews

    with MatViews(dsn=dsn).connect("info") as conn:
        row = conn.execute("SELECT current_setting('server_version'), current_database(), current_user").fetchone()
    assert row is not None
    lines += [
        f"server:       PostgreSQL {row[0]}, database {row[1]}, user {row[2]}",
        f"run tables:   schema {settings.runs_schema}",
    ]
    if settings.definitions_path.exists():
        lines.append(f"definitions:  {settings.definitions_path} ({len(settings.definitions())} views)")
    else:
        lines.append(f"definitions:  {settings.definitions_path} (missing; --definitions PATH or --demo)")
    click.echo("\n".join(lines))
    return 0


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_settings
def list_views(settings: Settings, as_json: bool) -> int:
    """Views with strategy, existence, population, estimated rows, size and last run."""
    rows = settings.matviews().status()
    if as_json:
        emit_json(rows)
        return 0
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
    return 0


@cli.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_views", is_flag=True, help="Every view in the definitions file.")
@click.option("--force", is_flag=True, help="Drop and recreate views that exist.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@operation_output_options
@pass_settings
def create(settings: Settings, names: tuple[str, ...], all_views: bool, force: bool, yes: bool, **out: Any) -> int:
    """Create views (and their indexes), upstream views first."""
    mv = settings.matviews()
    definitions = mv.graph.order(d.name for d in settings.select(names, all_views))
    if force:
        confirm(f"Recreate (force) {len(definitions)} view(s): {', '.join(d.name for d in definitions)}", yes)
    if out["enqueue"]:
        return enqueue_all(settings, CreateViewJob, definitions, force, out["queue"])
    results = mv.create_many(definitions, force, max_parallel=out["parallel"])
    return run_operations(
        results, as_json=out["as_json"], names=[d.name for d in definitions], progress_label="creating"
    )


@cli.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_views", is_flag=True, help="Every view, in dependency order.")
@click.option("--rows", type=click.Choice(ROW_COUNT_STRATEGIES), help="Row count strategy (default: each view's).")
@click.option("--strategy", type=click.Choice(REFRESH_STRATEGIES), help="Strategy, this time only.")
@click.option("--downstream", is_flag=True, help="Also refresh every view built on the named ones, after them.")
@operation_output_options
@pass_settings
def refresh(
    settings: Settings,
    names: tuple[str, ...],
    all_views: bool,
    rows: str | None,
    strategy: str | None,
    downstream: bool,
    **out: Any,
) -> int:
    """Refresh views with their strategies, upstream views first, several at once."""
    from .core.arguments import UNSET

    mv = settings.matviews()
    selected = [d.name for d in settings.select(names, all_views)]
    if out["enqueue"]:
        if strategy:
            raise InputError("--strategy cannot be enqueued; set refresh_strategy in the definitions")
        option: dict[str, Any] = {"row_count_strategy": rows} if rows else {}
        if downstream:  # one request, one run: the views built on it refresh after it, in that run
            option["downstream"] = True
        definitions = mv.graph.order(selected)
        return enqueue_all(settings, RefreshViewJob, definitions, option or None, out["queue"])
    definitions = mv.graph.order(mv.graph.with_downstream(selected) if downstream else selected)
    results = mv.refresh_many(
        definitions, rows if rows is not None else UNSET, strategy=strategy, max_parallel=out["parallel"]
    )
    return run_operations(
        results, as_json=out["as_json"], names=[d.name for d in definitions], progress_label="refreshing"
    )


@cli.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_views", is_flag=True, help="Every view (dependents first).")
@click.option("--cascade", is_flag=True, help="Also drop views that depend on them.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@operation_output_options
@pass_settings
def delete(settings: Settings, names: tuple[str, ...], all_views: bool, cascade: bool, yes: bool, **out: Any) -> int:
    """Drop views, the views built on others first."""
    mv = settings.matviews()
    definitions = list(reversed(mv.graph.order(d.name for d in settings.select(names, all_views))))
    suffix = " with CASCADE" if cascade else ""
    confirm(f"Delete {len(definitions)} view(s){suffix}: {', '.join(d.name for d in definitions)}", yes)
    if out["enqueue"]:
        return enqueue_all(settings, DeleteViewJob, definitions, cascade, out["queue"])
    results = mv.delete_many(definitions, cascade, max_parallel=out["parallel"])
    return run_operations(
        results, as_json=out["as_json"], names=[d.name for d in definitions], progress_label="deleting"
    )


@cli.command()
@click.option("--kind", type=click.Choice(RUN_KINDS))
@click.option("--view", help="Only this view (schema defaults to public).")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of run rows.")
@pass_settings
def runs(settings: Settings, kind: str | None, view: str | None, limit: int, as_json: bool) -> int:
    """Run history, newest first."""
    from .core.operations import MatViews

    mv = (
        settings.matviews()
        if settings.definitions_path.exists()
        else MatViews(settings.dsn, runs_schema=settings.runs_schema)
    )
    rows = mv.history(kind=kind, view=view, limit=limit)  # with definitions, `mv_x` finds reporting.mv_x
    if as_json:
        emit_json(rows)
        return 0
    from rich.table import Table

    table = Table("run", "view", "status", "outcome", "strategy", "started", "ms", "rows", "error / warnings")
    for row in rows:
        meta = row["meta"] or {}
        notes = [row["error"]] if row["error"] else []
        notes += [f"warning: {w}" for w in meta.get("warnings", [])]
        table.add_row(
            f"{row['kind']} #{row['id']}",  # ids are per run table: a create and a refresh may share one
            row["view_name"],
            row["status"],
            meta.get("outcome", "-"),
            meta.get("strategy") or (meta.get("options") or {}).get("strategy") or "-",
            _when(row["started_at"]),
            "-" if row["duration_ms"] is None else str(row["duration_ms"]),
            "-" if row["rows_count"] is None else f"{row['rows_count']:,}",
            "; ".join(notes),
        )
    _console().print(table)
    return 0


@cli.command()
@click.argument("names", nargs=-1)
@click.option("--iterations", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--csv", "csv_path", type=click.Path(path_type=Path, dir_okay=False), help="Also write a CSV.")
@pass_settings
def validate(settings: Settings, names: tuple[str, ...], iterations: int, csv_path: Path | None) -> int:
    """Time the defining query against the view and check both return the same rows."""
    import psycopg

    from .core.services.response import describe_db_error
    from .core.validation import validate_view

    mv = settings.matviews()
    definitions = mv.select(list(names) or None)
    results, errors = [], {}
    with mv.connect("validate") as conn:
        missing = [d.name for d in definitions if not _exists(conn, d)]
        if missing:
            raise InputError(f"not created yet: {', '.join(missing)}; run matviews create first")
        for definition in definitions:  # one view's error does not hide the others
            try:
                results.append(validate_view(conn, definition, iterations))
            except psycopg.Error as exc:
                errors[definition.name] = describe_db_error(exc)
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


@cli.group()
def demo() -> None:
    """The demo data set."""


@demo.command()
@click.option("--scale", type=click.IntRange(min=1), default=1, show_default=True, help="500 users per unit.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_settings
def seed(settings: Settings, scale: int, yes: bool) -> int:
    """(Re)load the demo tables users, accounts, events and sessions."""
    import time

    from .demo.data import USERS_PER_SCALE, seed_demo_data

    confirm(f"Replace the demo tables with {scale * USERS_PER_SCALE:,} users", yes)
    from .core.operations import MatViews

    started = time.monotonic()
    with MatViews(dsn=settings.dsn).connect("demo seed") as conn:
        counts = seed_demo_data(conn, scale)
    summary = ", ".join(f"{table} {rows:,}" for table, rows in counts.items())
    click.echo(f"loaded {summary} in {time.monotonic() - started:.1f} s")
    return 0


def _console() -> Any:
    """A rich console; wide enough not to wrap names when the output is not a terminal."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200)


def _exists(conn: Any, definition: MatViewDefinition) -> bool:
    from .core.catalog import matview_state

    return matview_state(conn, definition.qualified) is not None


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


def _is_input_error(exc: BaseException) -> bool:
    """Errors that mean bad input or an unreachable server: exit 2, nothing executed."""
    if isinstance(exc, ValueError):
        return True
    if type(exc).__name__ == "DatabaseUnavailable":
        return True
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(exc, psycopg.OperationalError)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (timeout, systemd, Kubernetes) stops work as Ctrl-C does


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one-line errors on stderr, no traceback unless ``--debug``.

    SIGTERM is handled like Ctrl-C: statements in flight are cancelled and their run rows
    finalized before the process exits."""
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        code = cli.main(args=args, prog_name="matviews", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted; nothing was changed", err=True)
        code = EXIT_FAILED
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except Exception as exc:
        if debug:
            traceback.print_exc()
        message = " ".join(str(exc).split()) or type(exc).__name__
        psycopg = sys.modules.get("psycopg")
        if _is_input_error(exc):
            click.echo(f"error: {message}", err=True)
            code = EXIT_USAGE
        elif psycopg is not None and isinstance(exc, psycopg.Error):
            click.echo(f"error: the database refused: {message}", err=True)
            code = EXIT_FAILED
        else:
            click.echo(f"error: unexpected {type(exc).__name__}: {message} (rerun with --debug)", err=True)
            code = EXIT_FAILED
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
