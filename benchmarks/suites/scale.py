"""5. Scale: loading many views, and refreshing 200 views in dependency chains."""

from __future__ import annotations

import shutil
import sys
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import yaml

from matviews_dagster.core.vocabulary import DEFAULT_MAX_PARALLEL

from ..data import load_source
from ..harness import ROOT, Bench, Sample, Section, interleaved, ratio, run_process, table

OUR_LOCATION = '''"""{n} views through matviews-dagster."""
from matviews_dagster import build_definitions

defs = build_definitions({path!r})
'''

PLAIN_HEADER = '''"""{n} hand-written assets, each refreshing its view through psycopg."""
import dagster as dg
import psycopg

DSN = "postgresql:///app"


def refresh(name: str) -> None:
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f'REFRESH MATERIALIZED VIEW "{{name}}"')

'''

PLAIN_ASSET = """
@dg.asset(group_name="plain")
def mv_{i}() -> None:
    refresh("mv_{i}")
"""


def _views_yaml(path: Path, count: int) -> None:
    views = [{"name": f"mv_{i}", "sql": f"SELECT id, val FROM src WHERE grp = {i % 1000}"} for i in range(count)]
    path.write_text(yaml.safe_dump({"views": views}))


def _plain_location(path: Path, count: int) -> None:
    path.write_text(
        PLAIN_HEADER.format(n=count)
        + "".join(PLAIN_ASSET.format(i=i) for i in range(count))
        + ("\n\ndefs = dg.Definitions(assets=[" + ", ".join(f"mv_{i}" for i in range(count)) + "])\n")
    )


def _loading(bench: Bench, work: Path) -> list[dict[str, Any]]:
    counts = (10, 20) if bench.smoke else (10, 100, 1_000)
    env = bench.env()
    results = []
    for count in counts:
        folder = work / f"load_{count}"
        folder.mkdir(parents=True)
        _views_yaml(folder / "views.yaml", count)
        ours = folder / "ours.py"
        ours.write_text(OUR_LOCATION.format(n=count, path=str(folder / "views.yaml")))
        plain = folder / "plain.py"
        _plain_location(plain, count)
        validate = [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-f"]
        validate_env = {**env, "DAGSTER_HOME": str(folder)}
        whole = interleaved(
            {
                kind: partial(run_process, [*validate, str(location)], env=validate_env, cwd=folder)
                for kind, location in (("plain", plain), ("matviews", ours))
            },
            bench.repeats,
        )
        probe = [sys.executable, "-m", "benchmarks.load_probe"]
        in_process: dict[str, list[float]] = {"plain": [], "matviews": []}
        for round_ in range(1 + bench.repeats):
            for kind, location in (("plain", plain), ("matviews", ours)):
                ms = float(run_process([*probe, str(location)], env=env, cwd=ROOT).strip().splitlines()[-1])
                if round_:
                    in_process[kind].append(ms)
        results.append(
            {
                "views": count,
                "validate_plain": whole["plain"],
                "validate_ours": whole["matviews"],
                "load_plain": Sample(tuple(in_process["plain"])),
                "load_ours": Sample(tuple(in_process["matviews"])),
            }
        )
    return results


CHAIN_LOCATION = '''"""{n} views in dependency chains, checks included: what "Materialize all" runs."""
from matviews_dagster import MatViewsResource, build_definitions

resource = MatViewsResource(dsn={dsn!r}, column_lineage={lineage})
defs = build_definitions({path!r}, dsn={dsn!r}, pool=None, matviews=resource)
'''
NO_LINEAGE = "dagster, in_process executor, column_lineage=False"
NO_SCHEMA_CHECK = "dagster, in_process executor, schema_change_severity: off"
IN_PROCESS = "dagster, in_process executor"


def _chain_views(chains: int, depth: int, heavy: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """``chains`` independent chains ``depth`` deep; level 0 reads a slice of ``src``. A heavy
    view also hashes every row, so its ``REFRESH`` costs the server real work."""
    views, order = [], []
    extra = ", md5(val::text) AS digest" if heavy else ""
    for level in range(depth):
        for chain in range(chains):
            name = f"mv_c{chain}_l{level}"
            query = (
                f"SELECT id, val{extra} FROM src WHERE grp % {chains} = {chain}"
                if level == 0
                else f"SELECT id, val + 1 AS val{extra} FROM mv_c{chain}_l{level - 1}"
            )
            views.append({"name": name, "sql": query, "unique_index_columns": ["id"]})
            order.append(name)
    return views, order


def _chains(bench: Bench, work: Path, label: str, chains: int, depth: int, rows: int, dagster: bool) -> dict[str, Any]:
    count = chains * depth
    folder = work / label
    folder.mkdir(parents=True)
    with bench.database(label) as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            load_source(conn, "src", rows)
        views, order = _chain_views(chains, depth, heavy=not dagster)
        (folder / "views.yaml").write_text(yaml.safe_dump({"views": views}))
        (folder / "defs.py").write_text(
            CHAIN_LOCATION.format(n=count, path=str(folder / "views.yaml"), dsn=dsn, lineage=True)
        )
        (folder / "no_lineage.py").write_text(
            CHAIN_LOCATION.format(n=count, path=str(folder / "views.yaml"), dsn=dsn, lineage=False)
        )
        (folder / "no_check.yaml").write_text(yaml.safe_dump({"schema_change_severity": "off", "views": views}))
        (folder / "no_check.py").write_text(
            CHAIN_LOCATION.format(n=count, path=str(folder / "no_check.yaml"), dsn=dsn, lineage=True)
        )
        (folder / "refresh.sql").write_text("".join(f'REFRESH MATERIALIZED VIEW "{name}";\n' for name in order))
        (folder / "in_process.yaml").write_text(yaml.safe_dump({"execution": {"config": {"in_process": {}}}}))
        env = bench.env(DAGSTER_HOME=str(folder))
        (folder / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        matviews = ["matviews", "--dsn", dsn, "--definitions", str(folder / "views.yaml")]
        run_process([*matviews, "create", "--all"], env=env)
        contenders: dict[str, Any] = {}
        if dagster:
            materialize = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-f", "defs.py"]
            materialize += ["--select", "*"]
            contenders["dagster, default (multiprocess) executor"] = lambda: run_process(
                materialize, env=env, cwd=folder
            )
            for label_, location in (
                (IN_PROCESS, "defs.py"),
                (NO_LINEAGE, "no_lineage.py"),
                (NO_SCHEMA_CHECK, "no_check.py"),
            ):
                contenders[label_] = partial(
                    run_process,
                    [*materialize[:4], location, "--select", "*", "-c", "in_process.yaml"],
                    env=env,
                    cwd=folder,
                )
        contenders[f"matviews refresh --all (--parallel {DEFAULT_MAX_PARALLEL})"] = lambda: run_process(
            [*matviews, "refresh", "--all"], env=env
        )
        contenders["matviews refresh --all --parallel 1"] = lambda: run_process(
            [*matviews, "refresh", "--all", "--parallel", "1"], env=env
        )
        if bench.psql:
            psql = [bench.psql, dsn, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(folder / "refresh.sql")]
            contenders["psql -f script (sequential)"] = lambda: run_process(psql, env=env)
        samples = interleaved(contenders, bench.repeats)
        with psycopg.connect(dsn, autocommit=True) as conn:  # every refresh was recorded
            recorded = conn.execute("SELECT count(*) FROM mat_view_refresh_runs WHERE status = 'success'").fetchone()
    return {
        "views": count,
        "chains": chains,
        "depth": depth,
        "rows": rows,
        "samples": samples,
        "recorded": recorded[0] if recorded else 0,
    }


def _chain_table(chains: dict[str, Any]) -> str:
    psql = chains["samples"].get("psql -f script (sequential)")
    ours = next(s for how, s in chains["samples"].items() if how.startswith("matviews refresh --all (--parallel"))
    return table(
        ["how", "wall ms", "per view ms", "relative to psql", "relative to matviews refresh --all"],
        [
            [
                how,
                sample.cell(0),
                f"{sample.median / chains['views']:.1f}",
                f"{ratio(sample, psql):.2f}" if psql else "n/a",
                f"{ratio(sample, ours):.2f}",
            ]
            for how, sample in chains["samples"].items()
        ],
    )


def _lineage_cost(chains: dict[str, Any]) -> str:
    """What column lineage and the schema-change verdict cost "Materialize all", as same-run ratios."""
    samples = chains["samples"]
    if NO_LINEAGE not in samples:
        return ""
    lineage = ratio(samples[IN_PROCESS], samples[NO_LINEAGE])
    check = ratio(samples[IN_PROCESS], samples[NO_SCHEMA_CHECK])
    per_view = (samples[IN_PROCESS].median - samples[NO_SCHEMA_CHECK].median) / chains["views"]
    return (
        f"\n\nColumn lineage (`dagster/column_lineage` on every materialization, one catalog query per step) "
        f"costs this run {lineage:.3f}x the same run without it (`MatViewsResource(column_lineage=False)`); the "
        f"`column_schema_change` verdict (one read of the instance per step, a comparison per view) costs "
        f"{check:.3f}x a run without it (`schema_change_severity: off`), {per_view:.1f} ms a view. Loading does "
        "no lineage work (it is read at materialization)."
    )


def run(bench: Bench) -> Section:
    work = bench.workdir / "scale"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    loading = _loading(bench, work)
    if bench.smoke:
        chained = _chains(bench, work, "chains", 2, 2, 2_000, dagster=True)
        parallel = _chains(bench, work, "parallel", 2, 2, 2_000, dagster=False)
    else:
        chained = _chains(bench, work, "chains", 40, 5, 100_000, dagster=True)
        parallel = _chains(bench, work, "parallel", 10, 4, 1_000_000, dagster=False)
    load_table = table(
        [
            "views",
            "plain assets: validate ms",
            "matviews: validate ms",
            "ratio",
            "plain: load in-process ms",
            "matviews: load in-process ms",
            "ratio",
        ],
        [
            [
                f"{r['views']:,}",
                r["validate_plain"].cell(0),
                r["validate_ours"].cell(0),
                f"{ratio(r['validate_ours'], r['validate_plain']):.2f}",
                r["load_plain"].cell(0),
                r["load_ours"].cell(0),
                f"{ratio(r['load_ours'], r['load_plain']):.2f}",
            ]
            for r in loading
        ],
    )
    markdown = (
        "**Loading definitions** (`dagster definitions validate -f`, whole process; and in-process: "
        "executing the file and resolving the repository, imports excluded):\n\n"
        + load_table
        + f"\n\n**Refreshing {chained['views']} views** ({chained['chains']} chains, {chained['depth']} deep, "
        f"each a `REFRESH` of a slice of a {chained['rows']:,}-row table; Dagster runs every view's checks too), "
        "whole process:\n\n"
        + _chain_table(chained)
        + _lineage_cost(chained)
        + f"\n\n**Heavier views in parallel**: {parallel['views']} views ({parallel['chains']} independent chains, "
        f"{parallel['depth']} deep, each hashing a tenth of a {parallel['rows']:,}-row table), whole process:\n\n"
        + _chain_table(parallel)
    )
    data = {
        "loading": [{k: (v.as_dict() if hasattr(v, "as_dict") else v) for k, v in r.items()} for r in loading],
        **{
            label: {
                **{k: v for k, v in result.items() if k != "samples"},
                **{k: v.as_dict() for k, v in result["samples"].items()},
            }
            for label, result in (("chains", chained), ("parallel", parallel))
        },
    }
    return Section("scale", "Scale", markdown, data)
