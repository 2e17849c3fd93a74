"""9. Ten thousand views in one file: create, plan, refresh --all and loading the code location,
each a whole process, with its time and peak memory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import yaml

from ..data import load_source
from ..harness import Bench, Sample, Section, table

LOCATION = '''"""{n} views through matviews-dagster."""
from matviews_dagster import build_definitions

defs = build_definitions({path!r})
'''


def measured(args: Sequence[str], env: dict[str, str], cwd: Path, ok: tuple[int, ...] = (0,)) -> tuple[float, float]:
    """Run a command to completion: ``(wall ms, peak resident MiB)`` of that process alone
    (``wait4`` reports the child's own ``ru_maxrss``). A failure raises with its output."""
    started = time.perf_counter()
    process = subprocess.Popen(
        list(args), env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=False
    )
    assert process.stderr is not None
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = (time.perf_counter() - started) * 1000
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode not in ok:
        raise RuntimeError(f"{' '.join(args)} exited {process.returncode}: {stderr[-2000:].decode(errors='replace')}")
    return elapsed, usage.ru_maxrss / 1024


def run(bench: Bench) -> Section:
    count = 200 if bench.smoke else 10_000
    repeats = min(bench.repeats, 3)  # each create is minutes' work at 10,000 views
    work = bench.workdir / "many"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    views = [{"name": f"mv_{i}", "sql": f"SELECT id, val FROM src WHERE grp = {i % 1000}"} for i in range(count)]
    (work / "matviews.yaml").write_text(yaml.safe_dump({"views": views}))
    (work / "defs.py").write_text(LOCATION.format(n=count, path=str(work / "matviews.yaml")))
    (work / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = bench.env(DAGSTER_HOME=str(work))
    matviews = [str(Path(sys.executable).parent / "matviews"), "--definitions", str(work / "matviews.yaml")]
    validate = [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-f", "defs.py"]
    samples: dict[str, list[tuple[float, float]]] = {
        "matviews create --all": [],
        "matviews plan (nothing to do)": [],
        "matviews refresh --all": [],
        "load the code location (dagster definitions validate)": [],
    }
    for _ in range(repeats):  # a fresh database each time, so every create creates them all
        with bench.database("many") as dsn:
            with psycopg.connect(dsn, autocommit=True) as conn:
                load_source(conn, "src", 10_000)
            dsn_env = {**env, "MATVIEWS_DSN": dsn}
            samples["matviews create --all"].append(measured([*matviews, "create", "--all"], dsn_env, work))
            samples["matviews plan (nothing to do)"].append(measured([*matviews, "plan"], dsn_env, work))
            samples["matviews refresh --all"].append(measured([*matviews, "refresh", "--all"], dsn_env, work))
            with psycopg.connect(dsn, autocommit=True) as conn:
                row = conn.execute("SELECT count(*) FROM mat_view_refresh_runs WHERE status = 'success'").fetchone()
            assert row is not None and row[0] == count, f"{row} refreshes recorded, expected {count}"
            samples["load the code location (dagster definitions validate)"].append(measured(validate, dsn_env, work))
    results: dict[str, Any] = {}
    rows = []
    for how, runs in samples.items():
        times, memory = Sample(tuple(t for t, _ in runs)), Sample(tuple(m for _, m in runs))
        results[how] = {"ms": times.as_dict(), "peak_mib": memory.as_dict()}
        rows.append([how, times.cell(0), f"{times.median / count:.2f}", memory.cell(0)])
    markdown = (
        f"{count:,} views in one definitions file (`SELECT id, val FROM src WHERE grp = i`, a 10,000-row "
        f"table), each command a whole process on a fresh database; median of {repeats} runs (min-max).\n\n"
        + table(["command", "wall ms", "per view ms", "peak memory MiB"], rows)
    )
    return Section("many", "Ten thousand views in one file", markdown, {"views": count, "results": results})
