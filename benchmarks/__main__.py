"""``python -m benchmarks``: run the measurements into docs/performance.json, then regenerate
docs/performance.md's tables and docs/performance.png from that file."""

from __future__ import annotations

import importlib
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

import click
import psycopg

from .harness import ROOT, Bench, find_psql, run_process, server
from .report import publish
from .results import FILENAME, entry, load, save

SUITES = (
    "overhead",
    "dagster_overhead",
    "tools",
    "strategies",
    "costs",
    "scale",
    "validation",
    "queue",
    "changes",
    "many",
    "estates",
    "dagster_dbt",
)


def _machine(bench: Bench) -> str:
    """What the run ran on and with; asked once per run (``dbt --version`` alone takes seconds)."""
    with psycopg.connect(bench.server_dsn) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    postgres = row[0] if row else "?"
    dbt = run_process([bench.dbt, "--version"]).splitlines()[1].strip(" -") if bench.dbt else "not run"
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores, {memory_gib:.0f} GiB, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, PostgreSQL {postgres}, dagster {metadata.version('dagster')}, "
        f"psycopg {metadata.version('psycopg')}, dbt {dbt}"
    )


@click.command()
@click.option("--smoke", is_flag=True, help="Tiny sizes, for CI: proves the harness runs, measures nothing.")
@click.option("--repeats", type=click.IntRange(min=1), default=None, help="Timed runs per figure [5; smoke: 1].")
@click.option("--only", default=",".join(SUITES), show_default=True, help="Comma-separated suites to run.")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help=f"Where {FILENAME}, performance.md and performance.png live [docs/; smoke: benchmarks/.work/smoke/].",
)
@click.option(
    "--redraw", is_flag=True, help=f"Measure nothing: regenerate performance.md and performance.png from {FILENAME}."
)
@click.option("--dsn", envvar="MATVIEWS_BENCH_DSN", help="An existing server (default: a throwaway embedded one).")
@click.option(
    "--dbt", "dbt", envvar="MATVIEWS_BENCH_DBT", help="dbt executable (dbt-postgres); without it dbt is left out."
)
@click.option(
    "--dagster-dbt",
    "dagster_dbt",
    envvar="MATVIEWS_BENCH_DAGSTER_DBT",
    help="The dagster executable of a venv with dagster-dbt and dbt-postgres; without it dagster-dbt is left out.",
)
def main(
    smoke: bool,
    redraw: bool,
    repeats: int | None,
    only: str,
    out: Path | None,
    dsn: str | None,
    dbt: str | None,
    dagster_dbt: str | None,
) -> None:
    """Measure matviews-dagster against the alternatives; ratios are taken within one run.

    Each suite's results replace its entry in ``OUT/performance.json`` as soon as it finishes
    (the other entries are kept); performance.md's tables and the chart are then regenerated
    from the whole file, so they always show the same numbers. A smoke run writes only into
    its own ``--out`` directory.
    """
    chosen = [name.strip() for name in only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SUITES))
    if unknown:
        raise click.BadParameter(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    docs = ROOT / "docs"
    out = out or (ROOT / "benchmarks" / ".work" / "smoke" if smoke else docs)
    if smoke and out.resolve() == docs.resolve():
        raise click.UsageError("a smoke run measures nothing worth keeping: give it an --out other than docs/")
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / FILENAME
    results = load(results_path)  # a malformed file fails now, not after an hour of measuring
    if redraw:
        publish(out)
        click.echo(f"regenerated {out / 'performance.md'} and {out / 'performance.png'} from {results_path}", err=True)
        return
    workdir = ROOT / "benchmarks" / ".work"  # the suites' scratch files
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with server(dsn) as server_dsn:
        bench = Bench(server_dsn, repeats or (1 if smoke else 5), smoke, workdir, dbt, find_psql(), dagster_dbt)
        machine = _machine(bench)
        for name in chosen:
            click.echo(f"[{time.monotonic() - started:6.0f}s] {name} ...", err=True)
            suite_started = time.monotonic()
            section = importlib.import_module(f".suites.{name}", __package__).run(bench)
            click.echo(section.markdown + "\n", err=True)
            # saved and published after every suite, so a failure later keeps what was measured
            results[section.key] = entry(
                section,
                repeats=bench.repeats,
                machine=machine,
                smoke=smoke,
                elapsed_s=time.monotonic() - suite_started,
            )
            save(results_path, results)
            publish(out)
    elapsed = time.monotonic() - started
    written = f"{results_path}, {out / 'performance.md'} and {out / 'performance.png'}"
    click.echo(f"wrote {written} in {elapsed:.0f} s", err=True)


if __name__ == "__main__":
    sys.exit(main())
