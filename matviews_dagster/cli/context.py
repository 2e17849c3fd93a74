"""What every command shares: the settings of the global options, exit codes, the errors that
mean bad input, and confirmation before destructive work."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..core.settings import MatViewsSettings

if TYPE_CHECKING:
    from ..core.definition import MatViewDefinition
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
    """The global options: ``--dsn``, ``--definitions`` (or ``--demo``), ``--runs-schema``, ``--debug``."""

    dsn: str | None
    definitions_path: Path
    runs_schema: str
    debug: bool
    _mv: MatViews | None = field(default=None, repr=False)

    @property
    def settings(self) -> MatViewsSettings:
        """The core's settings these options give."""
        return MatViewsSettings(dsn=self.dsn, runs_schema=self.runs_schema)

    def database(self) -> MatViews:
        """``MatViews`` without definitions: the database, the run store (no definitions file
        is read)."""
        from ..core.matviews import MatViews

        return MatViews(settings=self.settings)

    def definitions(self) -> list[MatViewDefinition]:
        from ..core.definitions_file import load_definitions

        if not self.definitions_path.exists():
            raise ValueError(
                f"no definitions file {self.definitions_path}: pass --definitions PATH "
                "(env MATVIEWS_DEFINITIONS), or --demo for the demo's views"
            )
        return load_definitions(self.definitions_path)

    def matviews(self) -> MatViews:
        """``MatViews`` over the definitions file; a cycle is bad input, said before anything runs."""
        if self._mv is None:
            from ..core.matviews import MatViews

            mv = MatViews(definitions=self.definitions(), settings=self.settings)
            try:
                mv.graph  # noqa: B018
            except ValueError as exc:
                raise ValueError(f"{self.definitions_path}: {exc}") from None
            self._mv = mv
        return self._mv

    def select(self, names: tuple[str, ...], all_views: bool) -> list[MatViewDefinition]:
        """The named views (validated, every unknown one named) or all of them, before anything runs."""
        if bool(names) == all_views:
            raise InputError("name one or more views, or pass --all (not both)")
        return self.matviews().select(None if all_views else list(dict.fromkeys(names)))


pass_options = click.make_pass_decorator(CliOptions)


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
