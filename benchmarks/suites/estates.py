"""14. Estates: 1,000 tenant schemas x 5 views (5,000 views) on one server, `matviews refresh
--all` against a bare script sending the same 5,000 `REFRESH` statements on 4 connections
(alternating in the same run), a single-run Dagster backfill of the 1,000 partitions, loading
the code location with 1,000 tenants against 1; and three databases with one unreachable
against the two reachable alone."""

from __future__ import annotations

import shutil
import socket
import sys
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg.conninfo import make_conninfo

from ..harness import Bench, Sample, Section, table
from .many import measured

VIEWS = {
    "mv_usage": "SELECT account, count(*) AS events FROM events GROUP BY account",
    "mv_active": "SELECT DISTINCT account FROM events WHERE kind = 'login'",
    "mv_kinds": "SELECT kind, count(*) AS n FROM events GROUP BY kind",
    "mv_daily": "SELECT day, count(*) AS n FROM events GROUP BY day",
    "mv_top": "SELECT account, max(day) AS last_day FROM events GROUP BY account",
}
LOCATION = """from matviews_dagster import build_definitions

defs = build_definitions({path!r})
"""
BARE = '''"""The same REFRESH statements, 4 connections, no run rows, no locks, no order."""
import sys
from concurrent.futures import ThreadPoolExecutor

import psycopg

dsn, tenants, views = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
statements = [f"REFRESH MATERIALIZED VIEW tenant_{t:04d}.{v}" for t in range(tenants) for v in views]


def work(chunk):
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in chunk:
            conn.execute(statement)


with ThreadPoolExecutor(4) as pool:
    list(pool.map(work, [statements[i::4] for i in range(4)]))
'''


def _tenants(conn: psycopg.Connection, count: int) -> None:
    for t in range(count):
        schema = f"tenant_{t:04d}"
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.events (account int, kind text, day date)")
        conn.execute(
            f"INSERT INTO {schema}.events SELECT g % 7, CASE WHEN g % 3 = 0 THEN 'login' ELSE 'view' END, "
            f"date '2026-01-01' + g % 30 FROM generate_series(1, 50) g"
        )


def _file(tenants: dict[str, Any], databases: dict[str, Any] | None = None, database: str | None = None) -> str:
    views = [{"name": name, "sql": sql, "tenants": tenants} for name, sql in VIEWS.items()]
    if database:
        views = [{**view, "database": database} for view in views]
    return yaml.safe_dump({**({"databases": databases} if databases else {}), "views": views}, sort_keys=False)


def run(bench: Bench) -> Section:
    count = 10 if bench.smoke else 1_000
    repeats = min(bench.repeats, 5)
    work = bench.workdir / "estates"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    pattern = {"schemas_like": "tenant_%"}
    (work / "matviews.yaml").write_text(_file(pattern))
    (work / "defs.py").write_text(LOCATION.format(path=str(work / "matviews.yaml")))
    (work / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    (work / "bare.py").write_text(BARE)
    static = work / "static"
    for n in (1, count):
        (static / str(n)).mkdir(parents=True, exist_ok=True)
        (static / str(n) / "matviews.yaml").write_text(_file({"schemas": [f"tenant_{t:04d}" for t in range(n)]}))
        (static / str(n) / "defs.py").write_text(LOCATION.format(path=str(static / str(n) / "matviews.yaml")))
    bin_dir = Path(sys.executable).parent
    matviews = [str(bin_dir / "matviews"), "--definitions", str(work / "matviews.yaml")]
    samples: dict[str, list[float]] = {"matviews": [], "bare": [], "backfill": [], "load 1": [], "load n": []}
    samples.update({"three databases, one unreachable": [], "the two reachable alone": []})
    last = f"tenant_{count - 1:04d}"
    with bench.database("estates") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            _tenants(conn, count)
        env = bench.env(MATVIEWS_DSN=dsn, DAGSTER_HOME=str(work))
        measured([*matviews, "create", "--all", "--parallel", "4"], env, work)
        for _ in range(repeats):  # alternating, so both see the same server state
            samples["matviews"].append(measured([*matviews, "refresh", "--all", "--parallel", "4"], env, work)[0])
            bare = [sys.executable, "bare.py", dsn, str(count), ",".join(VIEWS)]
            samples["bare"].append(measured(bare, env, work)[0])
        dagster = str(bin_dir / "dagster")
        select = ",".join(VIEWS)
        listed = static / str(count)  # the same views, their tenants listed: static partitions, no sensor needed
        for _ in range(min(repeats, 3)):
            backfill = [dagster, "asset", "materialize", "-f", "defs.py", "--select", select]
            samples["backfill"].append(
                measured([*backfill, "--partition-range", f"tenant_0000...{last}"], env, listed)[0]
            )
        for _ in range(repeats):
            for n, key in ((1, "load 1"), (count, "load n")):
                validate = [dagster, "definitions", "validate", "-f", str(static / str(n) / "defs.py")]
                samples[key].append(measured(validate, env, static / str(n))[0])
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT count(*) FROM mat_view_refresh_runs WHERE status = 'success'").fetchone()
        expected = len(VIEWS) * count * (repeats + min(repeats, 3))
        assert row is not None and row[0] == expected, f"{row} refreshes recorded, expected {expected}"
        _three_databases(bench, work, dsn, count, repeats, samples)
    return _section(samples, count, repeats)


def _three_databases(
    bench: Bench, work: Path, dsn: str, count: int, repeats: int, samples: dict[str, list[float]]
) -> None:
    """Two reachable databases (the tenants' and a copy's worth of plain views) and a third on
    a port nothing listens on: `matviews refresh --all` over the three against over the two."""
    with bench.database("estates_b") as other:
        with psycopg.connect(other, autocommit=True) as conn:
            _tenants(conn, count)
        databases = {"a": {"dsn": "${A_DSN}"}, "b": {"dsn": "${B_DSN}"}, "down": {"dsn": "${DOWN_DSN}"}}
        views = []
        for name in ("a", "b", "down"):
            views += yaml.safe_load(_file({"schemas_like": "tenant_%"}, database=name))["views"]
        (work / "three.yaml").write_text(yaml.safe_dump({"databases": databases, "views": views}, sort_keys=False))
        two = {k: v for k, v in databases.items() if k != "down"}
        (work / "two.yaml").write_text(
            yaml.safe_dump({"databases": two, "views": [v for v in views if v["database"] != "down"]}, sort_keys=False)
        )
        down = make_conninfo(dsn, host="127.0.0.1", port=str(_closed_port()))
        env = bench.env(A_DSN=dsn, B_DSN=other, DOWN_DSN=down, MATVIEWS_DSN=dsn)
        bin_matviews = str(Path(sys.executable).parent / "matviews")
        measured([bin_matviews, "--definitions", "two.yaml", "create", "--all", "--database", "b"], env, work)
        for _ in range(repeats):
            three = [bin_matviews, "--definitions", "three.yaml", "refresh", "--all", "--parallel", "4"]
            samples["three databases, one unreachable"].append(measured(three, env, work, ok=(1,))[0])
            two_cmd = [bin_matviews, "--definitions", "two.yaml", "refresh", "--all", "--parallel", "4"]
            samples["the two reachable alone"].append(measured(two_cmd, env, work)[0])


def _closed_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (a server that is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _section(samples: dict[str, list[float]], count: int, repeats: int) -> Section:
    s = {key: Sample(tuple(values)) for key, values in samples.items()}
    views = count * len(VIEWS)

    def vs(a: str, b: str) -> str:
        return f"{s[a].median / s[b].median:.2f}x"

    rows = [
        [f"`matviews refresh --all` ({views:,} views, 4 at once)", s["matviews"].cell(0), vs("matviews", "bare")],
        ["bare script: the same `REFRESH` statements on 4 connections", s["bare"].cell(0), "1.00x"],
        [
            f"single-run Dagster backfill of {count:,} partitions (`dagster asset materialize --partition-range`)",
            s["backfill"].cell(0),
            f"{vs('backfill', 'matviews')} of `refresh --all`",
        ],
        [
            f"load the code location, {count:,} tenants (`dagster definitions validate`)",
            s["load n"].cell(0),
            vs("load n", "load 1"),
        ],
        ["load the code location, 1 tenant", s["load 1"].cell(0), "1.00x"],
        [
            f"`refresh --all` over three databases, one unreachable ({2 * views:,} views)",
            s["three databases, one unreachable"].cell(0),
            vs("three databases, one unreachable", "the two reachable alone"),
        ],
        ["`refresh --all` over the two reachable databases alone", s["the two reachable alone"].cell(0), "1.00x"],
    ]
    markdown = (
        f"{count:,} tenant schemas x {len(VIEWS)} views on one server (each tenant's `events`: 50 rows), "
        f"median of {repeats} runs (min-max) in ms, each command a whole process; ratios within this run.\n\n"
        + table(["what", "wall ms", "ratio"], rows)
    )
    data = {
        "tenants": count,
        "views": views,
        "results": {key: sample.as_dict() for key, sample in s.items()},
        "ratios": {
            "refresh_all_vs_bare": s["matviews"].median / s["bare"].median,
            "backfill_vs_refresh_all": s["backfill"].median / s["matviews"].median,
            "load_n_vs_1": s["load n"].median / s["load 1"].median,
            "unreachable_vs_reachable": s["three databases, one unreachable"].median
            / s["the two reachable alone"].median,
        },
    }
    return Section("estates", "Estates: tenants, databases, a server down", markdown, data)
