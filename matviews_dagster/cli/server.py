"""``matviews server status|stop``: the embedded PostgreSQL servers this user started.

Commands leave the embedded server of a directory running when they end, so the next command,
the webserver and the daemon reuse it (see ``core/embedded.py`` for why and what it costs);
these commands show every such server and stop them. They never start a server."""

from __future__ import annotations

from pathlib import Path

import click

from . import render, tables


@click.group()
def server() -> None:
    """The embedded PostgreSQL servers this user started (used when no DSN is configured)."""


@server.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def status(as_json: bool) -> int:
    """Every embedded server this user started: data directory, running or not, pid, socket."""
    from ..core import embedded

    servers = embedded.embedded_servers()
    if as_json:
        render.emit_json([s.to_dict() for s in servers])
    else:
        tables.print_servers(servers, here=embedded.matviews_home() / "pgdata")
    return 0


@server.command()
@click.argument("data_dirs", nargs=-1, type=click.Path(path_type=Path, file_okay=False))
@click.option("--all", "all_servers", is_flag=True, help="Every running server `matviews server status` lists.")
def stop(data_dirs: tuple[Path, ...], all_servers: bool) -> int:
    """Stop embedded servers (a fast shutdown: sessions end, nothing committed is lost).

    Without arguments, the server of this directory ($MATVIEWS_HOME, default ./.matviews);
    DATA_DIR names a data directory as `matviews server status` shows it."""
    from ..core import embedded

    if all_servers and data_dirs:
        raise click.UsageError("name data directories or pass --all (not both)")
    if all_servers:
        targets = [s.data_dir for s in embedded.embedded_servers() if s.running]
    else:
        targets = [d.expanduser().resolve() for d in data_dirs] or [embedded.matviews_home() / "pgdata"]
    for data_dir in targets:
        if not embedded.is_data_dir(data_dir):
            raise ValueError(f"{data_dir} is not an embedded server's data directory; see `matviews server status`")
        stopped = embedded.stop(data_dir)
        click.echo(f"{'stopped' if stopped else 'not running'}: {data_dir}")
    if not targets:
        click.echo("no embedded server is running")
    return 0


COMMANDS = [server]
