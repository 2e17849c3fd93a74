"""``python -m benchmarks``: run the measurements, write docs/performance.md and docs/performance.png."""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import click
import psycopg

from .harness import ROOT, Bench, Section, find_psql, run_process, server
from .report import chart, update_markdown

SUITES = (
    "overhead",
    "dagster_overhead",
    "tools",
    "strategies",
    "scale",
    "validation",
    "queue",
    "changes",
    "many",
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


def _meta(bench: Bench, machine: str, elapsed_s: float) -> str:
    return (
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC in {elapsed_s / 60:.1f} min"
        f"{' (smoke run: small sizes, not for comparison)' if bench.smoke else ''}: {machine}. "
        f"Every figure is the median of {bench.repeats} runs after a warm-up, with (min-max); every "
        "ratio compares medians taken in the same run, the contenders alternating."
    )


@click.command()
@click.option("--smoke", is_flag=True, help="Tiny sizes, for CI: proves the harness runs, measures nothing.")
@click.option("--repeats", type=click.IntRange(min=1), default=None, help="Timed runs per figure [5; smoke: 1].")
@click.option("--only", default=",".join(SUITES), show_default=True, help="Comma-separated suites to run.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None, help="Where to write [docs/].")
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
    repeats: int | None,
    only: str,
    out: Path | None,
    dsn: str | None,
    dbt: str | None,
    dagster_dbt: str | None,
) -> None:
    """Measure matviews-dagster against the alternatives; ratios are taken within one run."""
    chosen = [name.strip() for name in only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SUITES))
    if unknown:
        raise click.BadParameter(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    out = out or ROOT / "docs"
    out.mkdir(parents=True, exist_ok=True)
    workdir = ROOT / "benchmarks" / ".work"
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results = workdir / "results.json"
    merged = json.loads(results.read_text()) if results.exists() and not smoke else {}
    with server(dsn) as server_dsn:
        bench = Bench(server_dsn, repeats or (1 if smoke else 5), smoke, workdir, dbt, find_psql(), dagster_dbt)
        machine = _machine(bench)
        sections: list[Section] = []
        for name in chosen:
            click.echo(f"[{time.monotonic() - started:6.0f}s] {name} ...", err=True)
            section = importlib.import_module(f".suites.{name}", __package__).run(bench)
            sections.append(section)
            click.echo(section.markdown + "\n", err=True)
            # written after every suite, so a failure later keeps what was measured
            merged[section.key] = section.data  # a partial run (--only) keeps the others' numbers
            results.write_text(json.dumps(merged, indent=1, default=str))
            update_markdown(out / "performance.md", sections, _meta(bench, machine, time.monotonic() - started))
            chart(out / "performance.png", merged)
    elapsed = time.monotonic() - started
    click.echo(f"wrote {out / 'performance.md'} and {out / 'performance.png'} in {elapsed:.0f} s", err=True)


if __name__ == "__main__":
    sys.exit(main())
