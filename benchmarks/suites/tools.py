"""3. Against the tools people use instead: whole-process wall time of one refresh of the same view,
with the floor a Python tool can reach (a bare psycopg script) and the CLI's read-outs."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg
import yaml

from ..data import VIEW_SQL, load_source
from ..harness import Bench, Section, dbt_project, interleaved, ratio, run_process, table

VIEW = "mv_tools"
ROWS = 1_000
OTHER_VIEWS = 39  # the definitions file holds 40 views, as a real project's would
BARE_SCRIPT = """import sys

import psycopg

with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    conn.execute('REFRESH MATERIALIZED VIEW "{view}"')
"""
DEPENDENCY_FLOOR = """import sys

import click  # the CLI's parser
import psycopg
from pydantic import BaseModel  # what a definition is


class Definition(BaseModel):
    name: str
    sql: str


with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    conn.execute('REFRESH MATERIALIZED VIEW "{view}"')
"""


def _dbt_project(directory: Path, dsn: str) -> None:
    """A dbt project with one ``materialized_view`` model over the same table, on the same view."""
    models = dbt_project(directory, dsn, name="bench", threads=1)
    model = "{{ config(materialized='materialized_view') }}\n" + VIEW_SQL.format(table="src")
    (models / f"{VIEW}.sql").write_text(model)


def _refreshes(dsn: str, call: Callable[[], object], tool: str) -> None:
    """Prove the tool really refreshes the view: a new source row must show up in it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO src SELECT max(id) + 1, 0, 0 FROM src")
        expected = conn.execute("SELECT count(*) FROM src").fetchone()
        call()
        seen = conn.execute(f"SELECT count(*) FROM {VIEW}").fetchone()  # constant name, no user input
    if seen != expected:
        raise RuntimeError(f"{tool} did not refresh {VIEW}: {seen} rows, expected {expected}")


def run(bench: Bench) -> Section:
    work = bench.workdir / "tools"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    with bench.database("tools") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            load_source(conn, "src", ROWS)
        env = bench.env(DBT_SEND_ANONYMOUS_USAGE_STATS="false", DO_NOT_TRACK="1")
        contenders: dict[str, Callable[[], object]] = {}
        if bench.dbt:
            _dbt_project(work / "dbt", dsn)
            dbt_args = [
                bench.dbt,
                "run",
                "-s",
                VIEW,
                "--project-dir",
                str(work / "dbt"),
                "--profiles-dir",
                str(work / "dbt"),
            ]
            run_process(dbt_args, env=env)  # creates the view
            contenders["dbt run -s model"] = lambda: run_process(dbt_args, env=env)
        definitions = work / "matviews.yaml"
        others = [
            {"name": f"mv_other_{i}", "sql": f"SELECT id, val FROM src WHERE grp = {i}", "unique_index_columns": ["id"]}
            for i in range(OTHER_VIEWS)
        ]
        views = [{"name": VIEW, "sql": VIEW_SQL.format(table="src")}, *others]
        definitions.write_text(yaml.safe_dump({"views": views}))
        matviews = ["matviews", "--dsn", dsn, "--definitions", str(definitions)]
        if not bench.dbt:
            run_process([*matviews, "create", VIEW], env=env)
        run_process([*matviews, "list"], env=env)  # a first call fills the definitions cache, as any earlier one would
        contenders["matviews refresh NAME"] = lambda: run_process([*matviews, "refresh", VIEW], env=env)
        bare = work / "bare_refresh.py"
        bare.write_text(BARE_SCRIPT.format(view=VIEW))
        contenders["bare psycopg script"] = lambda: run_process([sys.executable, str(bare), dsn], env=env)
        floor = work / "dependency_floor.py"
        floor.write_text(DEPENDENCY_FLOOR.format(view=VIEW))
        contenders["the same, importing click and pydantic"] = lambda: run_process(
            [sys.executable, str(floor), dsn], env=env
        )
        if bench.psql:
            psql = [bench.psql, dsn, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", f"REFRESH MATERIALIZED VIEW {VIEW}"]
            contenders["psql -c REFRESH"] = lambda: run_process(psql, env=env)
        for tool, call in contenders.items():
            _refreshes(dsn, call, tool)
        contenders["matviews list"] = lambda: run_process([*matviews, "list"], env=env)
        contenders["matviews runs"] = lambda: run_process([*matviews, "runs", "--limit", "20"], env=env)
        contenders["matviews --help"] = lambda: run_process(["matviews", "--help"], env=env)
        samples = interleaved(contenders, bench.repeats)
    ours, floor = samples["matviews refresh NAME"], samples["bare psycopg script"]
    rows = [
        [tool, sample.cell(), f"{ratio(sample, floor):.2f}", f"{ratio(sample, ours):.2f}"]
        for tool, sample in samples.items()
    ]
    markdown = table(
        ["tool (whole process)", "wall ms", "relative to the bare psycopg script", "relative to matviews refresh"],
        rows,
    )
    if not bench.dbt:
        markdown += "\n\n(dbt not installed for this run: `bash benchmarks/run` installs it in its own venv.)"
    return Section(
        "tools", "Against the tools people use instead", markdown, {k: v.as_dict() for k, v in samples.items()}
    )
