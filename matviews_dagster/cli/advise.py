"""``matviews advise``: where another refresh strategy (or none) would serve a view better, from
its run history (``core.advisor``); ``--try STRATEGY`` measures the alternative once on a copy
beside a real refresh (``core.strategy_trial``)."""

from __future__ import annotations

import click

from . import render, tables
from .context import EXIT_FAILED, CliOptions, InputError, pass_options


@click.command()
@click.argument("name", required=False)
@click.option(
    "--try",
    "alternative",
    metavar="STRATEGY",
    help="Refresh NAME with its strategy, measure STRATEGY (swap or regular) on a copy, show both.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_options
def advise(options: CliOptions, name: str | None, alternative: str | None, as_json: bool) -> int:
    """Advice on refresh strategies from the run history (at least 3 runs of a strategy), with the
    evidence it rests on; nothing to advise prints so (--json: [])."""
    from ..core.strategy_trial import TRIED

    mv = options.matviews()
    if name is not None:
        mv.definition(name)  # an unknown view: its one-line error
    if alternative is not None:
        if name is None:
            raise InputError("--try needs the view: matviews advise --try swap NAME")
        if alternative not in TRIED:
            raise InputError(f"--try takes {' or '.join(TRIED)}, got {alternative!r}")
        try:
            trial = mv.try_strategy(name, alternative)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        except RuntimeError as exc:
            click.echo(f"error: {exc}", err=True)
            return EXIT_FAILED
        except KeyboardInterrupt:  # its refresh may have finished: say where to look, not "nothing changed"
            click.echo(
                f"interrupted: the copy of {name} was dropped; its own refresh, if it finished, is in matviews runs",
                err=True,
            )
            return EXIT_FAILED
        if as_json:
            render.emit_json(trial.to_dict())
        else:
            tables.print_trial(trial.to_dict())
        return 0
    found = mv.advise([name] if name else None)
    if as_json:
        render.emit_json([advice.to_dict() for advice in found])
    elif name is not None and mv.definition(name).strategy_advice == "off":
        click.echo(f"advice is off for {mv.definition(name).name} (strategy_advice: off in its definition)")
    elif not found:
        click.echo("nothing to advise: each view's strategy fits its runs (or it has fewer than 3 of them)")
    for advice in [] if as_json else found:
        keep = advice.recommended == advice.current
        click.echo(
            f"{advice.view}: {advice.current} (keep it)"
            if keep
            else f"{advice.view}: {advice.current} -> {advice.recommended}"
        )
        click.echo(f"  why:    {advice.reason}")
        click.echo(f"  effect: {advice.effect}")
        click.echo(f"  change: {advice.change}")
    return 0


COMMANDS = [advise]
