"""10. "Materialize all" against dagster-dbt: the same chain of views, as our assets and as dbt
``materialized_view`` models under ``@dbt_assets``, whole process (``dagster asset materialize``),
alternating in one run; and how many events each run writes to the instance.

dagster-dbt lives in its own venv (``benchmarks/.venv-dagster-dbt``, the same dagster version),
never a project dependency: ``benchmarks/run`` installs it.
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Any

import psycopg
import yaml

from ..data import load_source
from ..harness import Bench, Section, dbt_project, interleaved, ratio, run_process, table

ROWS = 1_000
NO_CHECKS = "matviews-dagster, checks left out"
OUR_LOCATION = '''"""{n} chained views through matviews-dagster, default checks on."""
from matviews_dagster import build_definitions

defs = build_definitions({path!r}, dsn={dsn!r}, pool=None)
'''
WITHOUT_CHECKS = '''"""The same views, their checks left out: what the checks cost is the difference."""
import dagster as dg

import defs as views

job = dg.define_asset_job("views_without_checks", selection=dg.AssetSelection.all().without_checks())
defs = dg.Definitions.merge(views.defs, dg.Definitions(jobs=[job]))
'''
DBT_LOCATION = '''"""The same {n} views as dbt materialized_view models, as dagster-dbt's docs write it."""
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject, dbt_assets

project = DbtProject(project_dir=Path(__file__).parent / "dbt")


@dbt_assets(manifest=project.manifest_path)
def views(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    yield from dbt.cli(["build"], context=context).stream()


defs = dg.Definitions(assets=[views], resources={{"dbt": DbtCliResource(project_dir=project)}})
'''


def _query(level: int) -> str:
    return "SELECT id, val FROM {src}" if level == 0 else "SELECT id, val + 1 AS val FROM {prev}"


def _ours(folder: Path, dsn: str, count: int) -> None:
    views = [{"name": f"mv_{i:03d}", "sql": _query(i).format(src="src", prev=f"mv_{i - 1:03d}")} for i in range(count)]
    (folder / "views.yaml").write_text(yaml.safe_dump({"views": views}))
    (folder / "defs.py").write_text(OUR_LOCATION.format(n=count, path=str(folder / "views.yaml"), dsn=dsn))
    (folder / "without_checks.py").write_text(WITHOUT_CHECKS)


def _dbt(folder: Path, dsn: str, count: int) -> None:
    models = dbt_project(folder / "dbt", dsn, name="chain", threads=4)
    sources = {"version": 2, "sources": [{"name": "app", "schema": "public", "tables": [{"name": "src"}]}]}
    (models / "sources.yml").write_text(yaml.safe_dump(sources))
    for i in range(count):
        query = _query(i).format(src="{{ source('app', 'src') }}", prev=f"{{{{ ref('mv_{i - 1:03d}') }}}}")
        (models / f"mv_{i:03d}.sql").write_text("{{ config(materialized='materialized_view') }}\n" + query)
    (folder / "defs.py").write_text(DBT_LOCATION.format(n=count))


def _events_of_last_run(home: Path, job: str) -> int:
    """Events the latest run of ``job`` wrote to the instance's (default, SQLite) event log."""
    with sqlite3.connect(home / "history" / "runs.db") as conn:
        row = conn.execute(
            "SELECT run_id FROM runs WHERE pipeline_name = ? ORDER BY create_timestamp DESC LIMIT 1", (job,)
        ).fetchone()
    with sqlite3.connect(home / "history" / "runs" / f"{row[0]}.db") as conn:
        return int(conn.execute("SELECT count(*) FROM event_logs").fetchone()[0])


def _rows_in_the_last_view(dsn: str, count: int) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f"SELECT count(*) FROM mv_{count - 1:03d}").fetchone()  # our own constant name
    return int(row[0]) if row else 0


def run(bench: Bench) -> Section:
    count = 20 if bench.smoke else 200
    work = bench.workdir / "dagster_dbt"
    shutil.rmtree(work, ignore_errors=True)
    contenders: dict[str, Any] = {}
    events: dict[str, int] = {}
    with bench.database("ours") as ours_dsn, bench.database("dbt") as dbt_dsn:
        for dsn in (ours_dsn, dbt_dsn):
            with psycopg.connect(dsn, autocommit=True) as conn:
                load_source(conn, "src", ROWS)
        ours_bin = Path(sys.executable).parent
        sides = {"matviews-dagster": (ours_dsn, _ours, ours_bin)}
        if bench.dagster_dbt:
            sides["dagster-dbt (dbt build, 4 threads)"] = (dbt_dsn, _dbt, Path(bench.dagster_dbt).absolute().parent)
        for name, (dsn, write, bin_dir) in sides.items():
            folder = work / ("ours" if write is _ours else "dbt")
            folder.mkdir(parents=True)
            write(folder, dsn, count)
            (folder / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
            env = bench.env(DAGSTER_HOME=str(folder), DBT_SEND_ANONYMOUS_USAGE_STATS="false", DO_NOT_TRACK="1")
            env["PATH"] = f"{bin_dir}:{env['PATH']}"
            if write is _ours:
                run_process(["matviews", "--dsn", dsn, "--definitions", str(folder / "views.yaml"), "create", "--all"])
            else:  # creates the views and writes the manifest @dbt_assets reads
                dbt = ["--project-dir", str(folder / "dbt"), "--profiles-dir", str(folder / "dbt")]
                run_process([str(bin_dir / "dbt"), "run", *dbt], env=env)
            materialize = [str(bin_dir / "dagster"), "asset", "materialize", "-f", "defs.py", "--select", "*"]
            contenders[name] = lambda m=materialize, e=env, f=folder, d=dsn: _materialize(m, e, f, d, count)
            if write is _ours:
                execute = [str(bin_dir / "dagster"), "job", "execute", "-f", "without_checks.py"]
                execute += ["-j", "views_without_checks"]
                contenders[NO_CHECKS] = lambda m=execute, e=env, f=folder, d=dsn: _materialize(m, e, f, d, count)
        samples = interleaved(contenders, bench.repeats)
        for name in contenders:
            folder = work / ("dbt" if name.startswith("dagster-dbt") else "ours")
            events[name] = _events_of_last_run(folder, "views_without_checks" if name == NO_CHECKS else "__ASSET_JOB")
    ours = samples["matviews-dagster"]
    rows = [
        [name, f"{count}", sample.cell(), f"{events[name]:,}", f"{ratio(sample, ours):.2f}"]
        for name, sample in samples.items()
    ]
    markdown = table(["materialize all (whole process)", "views", "wall ms", "events in the run", "÷ ours"], rows)
    if not bench.dagster_dbt:
        markdown += "\n\n(dagster-dbt not installed for this run: `bash benchmarks/run` installs it in its own venv.)"
    data = {name: {**sample.as_dict(), "events": events[name]} for name, sample in samples.items()}
    return Section("dagster_dbt", '"Materialize all" against dagster-dbt', markdown, {"views": count, **data})


def _materialize(args: list[str], env: dict[str, str], folder: Path, dsn: str, count: int) -> None:
    """One "Materialize all", proven by a new source row reaching the last view of the chain."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO src SELECT max(id) + 1, 0, 0 FROM src")
        expected = conn.execute("SELECT count(*) FROM src").fetchone()
    run_process(args, env=env, cwd=folder)
    seen = _rows_in_the_last_view(dsn, count)
    if expected is None or seen != expected[0]:
        raise RuntimeError(f"{args[0]} did not refresh the chain: {seen} rows at its end, expected {expected}")
