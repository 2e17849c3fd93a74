"""The ``matviews`` group, its global options, and the entry point that turns errors into
one line and an exit code.

Exit codes: 0 success; 1 an operation ran and failed, was aborted, or ``validate`` found a
mismatch; 2 bad usage or input (unknown view, invalid definitions file, unreachable server).
The direct path (no ``--enqueue``) never imports dagster, so scripts can call it in loops.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import click

from ..core.settings import DEFAULTS
from . import advise, changes, commands, inspection, lineage, queue, server
from .context import EXIT_FAILED, EXIT_USAGE, CliOptions


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
@click.option("--demo", is_flag=True, help="Use the demo's views (the ones `dg dev -f definitions.py` shows).")
@click.option(
    "--runs-dsn",
    envvar="MATVIEWS_RUNS_DSN",
    help="A central run store: the database of the run tables of every database of databases: that "
    "does not say runs: local (env MATVIEWS_RUNS_DSN; default: each database's own).",
)
@click.option(
    "--runs-schema",
    envvar="MATVIEWS_RUNS_SCHEMA",
    default=DEFAULTS.runs_schema,
    show_default=True,
    help="Schema of the run tables.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="matviews-dagster", prog_name="matviews")
@click.pass_context
def cli(
    ctx: click.Context,
    dsn: str | None,
    definitions_path: Path,
    demo: bool,
    runs_dsn: str | None,
    runs_schema: str,
    debug: bool,
) -> None:
    """Create, refresh and delete PostgreSQL materialized views, with run history."""
    _configure_logging(debug)
    if demo:
        from ..demo import DEMO_VIEWS

        definitions_path = DEMO_VIEWS
    ctx.obj = CliOptions(
        dsn=dsn, definitions_path=definitions_path, runs_schema=runs_schema, debug=debug, runs_dsn=runs_dsn
    )


for _command in [
    *advise.COMMANDS,
    *commands.COMMANDS,
    *inspection.COMMANDS,
    *changes.COMMANDS,
    *lineage.COMMANDS,
    *queue.COMMANDS,
    *server.COMMANDS,
]:
    cli.add_command(_command)


def _is_input_error(exc: BaseException) -> bool:
    """Errors that mean bad input or an unreachable server: exit 2, nothing executed."""
    if isinstance(exc, ValueError):
        return True
    if type(exc).__name__ in ("DatabaseUnavailable", "EmbeddedServerError"):
        return True
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(exc, psycopg.OperationalError)


def _click_message(exc: click.ClickException) -> str:
    """Click's message on one line; a usage error names the help that shows the right usage."""
    message = " ".join(exc.format_message().split())
    if isinstance(exc, click.UsageError):
        message += f" (see `{exc.ctx.command_path if exc.ctx is not None else 'matviews'} --help`)"
    return message


def _configure_logging(debug: bool) -> None:
    """The core's notes for people (a new embedded server made) as ``note: ...`` on stderr, and,
    unless ``--debug``, none of what psycopg logs while closing a lost connection (the error
    line says it). Set up when a command runs, not for ``--help``; loggers by name, so that no
    core module is imported for it."""
    import logging

    if not debug:
        logging.getLogger("psycopg").setLevel(logging.ERROR)
    log = logging.getLogger("matviews_dagster.core.embedded")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("note: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


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
        click.echo(f"error: {_click_message(exc)}", err=True)  # one style: click's own "Error:" is not used
        code = exc.exit_code
    except Exception as exc:
        if debug:
            traceback.print_exc()
        message = " ".join(str(exc).split()) or type(exc).__name__
        psycopg = sys.modules.get("psycopg")
        if _is_input_error(exc):
            click.echo(f"error: {message}", err=True)
            code = EXIT_USAGE
        elif type(exc).__name__ == "BatchStopped":  # work began: not bad input, exit 1
            click.echo(f"error: {message}", err=True)
            code = EXIT_FAILED
        elif psycopg is not None and isinstance(exc, psycopg.Error):
            click.echo(f"error: the database refused: {message}", err=True)
            code = EXIT_FAILED
        else:
            click.echo(f"error: unexpected {type(exc).__name__}: {message} (rerun with --debug)", err=True)
            code = EXIT_FAILED
    sys.exit(code if isinstance(code, int) else 0)
