"""The ``matviews`` command line: ``app`` (the group, global options, entry point),
``commands`` (what each command does), ``render`` (how results are shown), ``context``
(the global options, exit codes, confirmation)."""

from .app import cli, main

__all__ = ["cli", "main"]
