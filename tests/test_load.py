"""Load: 24 operations from 4 processes across 5 views while readers query every view."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
import threading
import time
from collections import defaultdict

import psycopg
import pytest

from matviews_dagster import MatViewDefinition

VIEWS = [
    MatViewDefinition(name="mv_reg", sql="SELECT id, plan FROM users", unique_index_columns=["id"]),
    MatViewDefinition(
        name="mv_con", sql="SELECT id, email FROM users", refresh_strategy="concurrent", unique_index_columns=["id"]
    ),
    MatViewDefinition(
        name="mv_con2",
        sql="SELECT plan, count(*) AS n FROM users GROUP BY plan",
        refresh_strategy="concurrent",
        unique_index_columns=["plan"],
    ),
    MatViewDefinition(
        name="mv_swap", sql="SELECT id, plan, email FROM users", refresh_strategy="swap", unique_index_columns=["id"]
    ),
    MatViewDefinition(
        name="mv_swap2",
        sql="SELECT plan, max(id) AS top FROM users GROUP BY plan",
        refresh_strategy="swap",
        unique_index_columns=["plan"],
    ),
]
# mv_reg is deleted and recreated under load: readers of it may see it missing; the others never fail
STABLE = ["mv_con", "mv_con2", "mv_swap", "mv_swap2"]
PLANS = [
    [
        ("refresh", "mv_con"),
        ("refresh", "mv_swap"),
        ("refresh", "mv_reg"),
        ("refresh", "mv_swap2"),
        ("refresh", "mv_con2"),
        ("refresh", "mv_swap"),
    ],
    [
        ("refresh", "mv_swap"),
        ("refresh", "mv_con"),
        ("delete", "mv_reg"),
        ("create", "mv_reg"),
        ("refresh", "mv_con2"),
        ("refresh", "mv_swap2"),
    ],
    [
        ("refresh", "mv_swap2"),
        ("refresh", "mv_con2"),
        ("refresh", "mv_con"),
        ("refresh", "mv_swap"),
        ("refresh", "mv_reg"),
        ("refresh", "mv_con"),
    ],
    [
        ("refresh", "mv_con2"),
        ("refresh", "mv_swap2"),
        ("refresh", "mv_swap"),
        ("refresh", "mv_con"),
        ("refresh", "mv_swap2"),
        ("refresh", "mv_reg"),
    ],
]
WORKER = textwrap.dedent(
    """
    import json, sys
    from matviews_dagster import MatViews, MatViewDefinition
    views = [MatViewDefinition(**v) for v in json.loads(sys.argv[2])]
    mv = MatViews(dsn=sys.argv[1], definitions=views, lock_timeout=0.5, lock_retries=20)
    for kind, view in json.loads(sys.argv[3]):
        if kind == "refresh":  # mv_reg may be between its delete and its create
            result = mv.refresh(view, create_if_missing=True)
        else:
            result = getattr(mv, kind)(view)
        print(json.dumps([kind, view, result.status, result.run_id]), flush=True)
    """
)


@pytest.mark.slow
def test_operations_under_load_with_readers(make_mv, dsn, db, users) -> None:
    users(20000)
    mv = make_mv(*VIEWS)
    for view in VIEWS:
        assert mv.create(view).status == "success"
    stop = threading.Event()
    errors: dict[str, list[str]] = defaultdict(list)
    reads: dict[str, int] = defaultdict(int)

    def reader(view: str) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not stop.is_set():
                try:
                    conn.execute(f"SELECT count(*) FROM {view}").fetchone()
                    reads[view] += 1
                except psycopg.Error as exc:
                    errors[view].append(str(exc).splitlines()[0])
                time.sleep(0.005)

    readers = [threading.Thread(target=reader, args=(v.qualified.name,), daemon=True) for v in VIEWS]
    for thread in readers:
        thread.start()
    try:
        # change the data first, so every operation has work to do
        db.execute("UPDATE users SET plan = 'team' WHERE id % 7 = 0")
        payload = json.dumps([v.model_dump() for v in VIEWS])
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, dsn, payload, json.dumps(plan)], stdout=subprocess.PIPE, text=True
            )
            for plan in PLANS
        ]
        outputs = [worker.communicate(timeout=240)[0] for worker in workers]
    finally:
        stop.set()
        for thread in readers:
            thread.join()
    assert all(worker.returncode == 0 for worker in workers)

    results = [json.loads(line) for output in outputs for line in output.splitlines()]
    operations = sum(len(plan) for plan in PLANS)
    assert len(results) == operations == 24
    assert all(status == "success" for _, _, status, _ in results), results

    # every operation has exactly one finished run row
    rows = db.execute(
        "SELECT 'refresh', id, view_name, status, started_at, finished_at FROM mat_view_refresh_runs "
        "UNION ALL SELECT 'create', id, view_name, status, started_at, finished_at FROM mat_view_create_runs "
        "UNION ALL SELECT 'delete', id, view_name, status, started_at, finished_at FROM mat_view_delete_runs"
    ).fetchall()
    worker_rows = {(kind, run_id) for kind, _, _, run_id in results}
    by_key = {(kind, run_id): row for kind, run_id, *row in rows}
    assert worker_rows <= set(by_key)
    assert all(by_key[key][1] == "success" and by_key[key][3] is not None for key in worker_rows)
    assert not [row for row in rows if row[3] == "running"]

    # operations on one view never overlapped
    windows: dict[str, list] = defaultdict(list)
    for _, _, view, _, started, finished in rows:
        windows[view].append((started, finished))
    for view, spans in windows.items():
        for (_, a_end), (b_start, _) in itertools.pairwise(sorted(spans)):
            assert b_start >= a_end, f"operations on {view} overlapped"

    # readers of concurrent and swap views never saw an error, and did read
    assert {view: errors[view] for view in STABLE if errors[view]} == {}
    assert all(reads[view] > 20 for view in STABLE), dict(reads)

    # each view equals its defining query now (no operation ran after the last data change)
    for view in VIEWS:
        diff = db.execute(
            f"SELECT (SELECT count(*) FROM (({view.sql}) EXCEPT ALL (TABLE {view.name})) a) + "
            f"(SELECT count(*) FROM ((TABLE {view.name}) EXCEPT ALL ({view.sql})) b)"
        ).fetchone()
        assert diff == (0,), f"{view.name} differs from its query"
