"""8. Refreshing only what changed: 200 views, each over a table of its own; before every round
10 of the tables get a row, then ``matviews refresh --all --if-changed`` against
``matviews refresh --all`` (refreshes avoided, wall time)."""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg
import yaml

from ..harness import Bench, Section, interleaved, ratio, run_process, table

ROWS = 10_000


def _wait_for_counters(dsn: str, tables: list[str], before: dict[str, tuple]) -> None:
    """Until the statistics show the writes (the counters ``--if-changed`` reads)."""
    deadline = time.monotonic() + 30
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            now = dict(
                conn.execute(
                    "SELECT relname, (n_tup_ins, n_tup_upd, n_tup_del)::text FROM pg_stat_all_tables "
                    "WHERE relname = ANY(%s)",
                    (tables,),
                ).fetchall()
            )
            if all(now.get(name) != before.get(name) for name in tables):
                return
            time.sleep(0.05)
    raise RuntimeError("the statistics did not show the writes within 30 s")


def run(bench: Bench) -> Section:
    views, changed = (20, 2) if bench.smoke else (200, 10)
    folder = bench.workdir / "changes"
    folder.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {"views": views, "changed_per_round": changed}
    with bench.database("changes") as dsn:
        names = [f"src_{i}" for i in range(views)]
        with psycopg.connect(dsn, autocommit=True) as conn:
            for name in names:
                conn.execute(f"CREATE TABLE {name} AS SELECT g AS id, g % 97 AS grp FROM generate_series(1, {ROWS}) g")
        definitions = [
            {"name": f"mv_{i}", "sql": f"SELECT grp, count(*) AS n FROM src_{i} GROUP BY grp"} for i in range(views)
        ]
        (folder / "views.yaml").write_text(yaml.safe_dump({"views": definitions}))
        matviews = ["matviews", "--dsn", dsn, "--definitions", str(folder / "views.yaml")]
        env = bench.env()
        run_process([*matviews, "create", "--all"], env=env)
        run_process([*matviews, "refresh", "--all"], env=env)  # every view records what it read
        state = {"round": 0}
        refreshed: list[int] = []

        def change_some() -> None:
            state["round"] += 1
            chosen = [names[(state["round"] * changed + k) % views] for k in range(changed)]
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("SELECT pg_stat_clear_snapshot()")
                before = dict(
                    conn.execute(
                        "SELECT relname, (n_tup_ins, n_tup_upd, n_tup_del)::text FROM pg_stat_all_tables "
                        "WHERE relname = ANY(%s)",
                        (chosen,),
                    ).fetchall()
                )
                for name in chosen:
                    conn.execute(f"INSERT INTO {name} VALUES (0, 0)")
            _wait_for_counters(dsn, chosen, before)

        def if_changed() -> None:
            out = run_process([*matviews, "refresh", "--all", "--if-changed", "--json"], env=env)
            refreshed.append(sum(json.loads(line)["run_id"] is not None for line in out.splitlines() if line.strip()))

        samples = interleaved(
            {
                "matviews refresh --all --if-changed": if_changed,
                "matviews refresh --all": lambda: run_process([*matviews, "refresh", "--all"], env=env),
            },
            bench.repeats,
            before=change_some,
        )
    ours, every = samples["matviews refresh --all --if-changed"], samples["matviews refresh --all"]
    timed = refreshed[1:]  # the warm-up round aside
    data.update(
        samples={name: sample.as_dict() for name, sample in samples.items()},
        refreshed_if_changed=timed,
        ratio=ratio(ours, every),
    )
    rows = [
        [
            "matviews refresh --all --if-changed",
            ours.cell(0),
            f"{sorted(timed)[len(timed) // 2]} of {views}",
            f"{ratio(ours, every):.2f}",
        ],
        ["matviews refresh --all", every.cell(0), f"{views} of {views}", "1.00"],
    ]
    markdown = table(["how", "wall ms", "views refreshed (median)", "relative to refresh --all"], rows)
    return Section("changes", "Refreshing only what changed", markdown, data)
