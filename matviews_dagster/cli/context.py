"""What every command shares: the settings of the global options, exit codes, the errors that
mean bad input, and confirmation before destructive work."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..core.settings import MatViewsSettings

if TYPE_CHECKING:
    from ..core.definition import MatViewDefinition
    from ..core.estate import Estate
    from ..core.estate_runs import Part
    from ..core.matviews import MatViews

EXIT_FAILED = 1
EXIT_USAGE = 2


class InputError(click.ClickException):
    """Bad input: exit 2, nothing executed."""

    exit_code = EXIT_USAGE


class Aborted(click.ClickException):
    """The user did not confirm: exit 1, nothing touched."""

    exit_code = EXIT_FAILED


class Interrupted(click.ClickException):
    """Ctrl-C or SIGTERM during operations: exit 1, after saying what ran and what did not."""

    exit_code = EXIT_FAILED


@dataclass
class CliOptions:
    """The global options: ``--dsn``, ``--definitions`` (or ``--demo``), ``--runs-dsn``,
    ``--runs-schema``, ``--debug``."""

    dsn: str | None
    definitions_path: Path
    runs_schema: str
    debug: bool
    runs_dsn: str | None = None
    _mv: MatViews | None = field(default=None, repr=False)
    _estate: Estate | None = field(default=None, repr=False)

    @property
    def settings(self) -> MatViewsSettings:
        """The core's settings these options give."""
        return MatViewsSettings(dsn=self.dsn, runs_dsn=self.runs_dsn, runs_schema=self.runs_schema)

    def database(self) -> MatViews:
        """``MatViews`` without definitions: the database, the run store (no definitions file
        is read)."""
        from ..core.matviews import MatViews

        return MatViews(settings=self.settings)

    def definitions(self) -> list[MatViewDefinition]:
        """The views of the default connection in the definitions file (in an estate, those
        without ``database:`` and ``tenants:``)."""
        return [d for d in self.estate().file.views if d.database is None and d.tenants is None]

    def estate(self) -> Estate:
        """The definitions file as an ``Estate`` (its databases and tenants)."""
        if self._estate is None:
            from ..core.definitions_file import read_definitions_file
            from ..core.estate import Estate

            if not self.definitions_path.exists():
                raise ValueError(
                    f"no definitions file {self.definitions_path}: pass --definitions PATH "
                    "(env MATVIEWS_DEFINITIONS), or --demo for the demo's views"
                )
            try:
                self._estate = Estate(read_definitions_file(self.definitions_path), self.settings)
            except ValueError as exc:
                message = str(exc)
                prefix = "" if message.startswith(str(self.definitions_path)) else f"{self.definitions_path}: "
                raise ValueError(prefix + message) from None
        return self._estate

    def parts(
        self,
        names: tuple[str, ...] | list[str] | None,
        databases: tuple[str, ...],
        tenants: tuple[str, ...],
        *,
        downstream: bool = False,
        reverse: bool = False,
    ) -> list[Part]:
        """The views named (None: all) in each database, narrowed by ``--database`` and
        ``--tenant``, ordered; the estate's warnings (a tenant pattern matching no schema) go to
        stderr. A cycle or an unknown name is bad input, said before anything runs."""
        from ..core.estate_runs import select_parts

        members, warnings = self.estate().members(list(databases) or None, list(tenants) or None)
        for warning in warnings:
            click.echo(f"warning: {warning}", err=True)
        try:
            for member in members:
                member.matviews.graph  # noqa: B018
        except ValueError as exc:
            raise ValueError(f"{self.definitions_path}: {exc}") from None
        chosen = None if names is None else list(dict.fromkeys(names))
        return select_parts(members, chosen, downstream=downstream, reverse=reverse)

    def matviews(self) -> MatViews:
        """``MatViews`` over the default connection's views of the definitions file; a cycle
        is bad input, said before anything runs."""
        if self._mv is None:
            from ..core.matviews import MatViews

            mv = MatViews(definitions=self.definitions(), settings=self.settings)
            try:
                mv.graph  # noqa: B018
            except ValueError as exc:
                raise ValueError(f"{self.definitions_path}: {exc}") from None
            self._mv = mv
        return self._mv


pass_options = click.make_pass_decorator(CliOptions)


def estate_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--database NAME`` and ``--tenant NAME`` (both repeatable), which narrow a command to
    those databases of ``databases:`` (``default``: the default connection) and tenants."""
    command = click.option(
        "--tenant", "tenants", multiple=True, help="Only this tenant's views (repeatable): a tenant schema or database."
    )(command)
    return click.option(
        "--database",
        "databases",
        multiple=True,
        help="Only this database of databases: (repeatable; 'default' is the default connection).",
    )(command)


def require_selection(names: tuple[str, ...], all_views: bool) -> tuple[str, ...] | None:
    """The names, or None for ``--all``; ``InputError`` unless exactly one of them is given."""
    if bool(names) == all_views:
        raise InputError("name one or more views, or pass --all (not both)")
    return None if all_views else names


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
