"""Secrets: a DSN's password never shows up in results, run rows, Dagster events, logs or CLI output."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from psycopg.conninfo import make_conninfo

from matviews_dagster import DatabaseUnavailable, MatViewDefinition, MatViews, build_definitions

PASSWORD = "Zq9-S3cret-Pa55-4711"
BROKEN = MatViewDefinition(name="mv_broken", sql="SELECT id, 1 / (id - id) AS boom FROM users")
GOOD = MatViewDefinition(name="mv_good", sql="SELECT id FROM users", unique_index_columns=["id"])


def test_password_never_leaks(dsn, db, users, tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd) -> None:
    caplog.set_level(logging.DEBUG)
    secret_dsn = make_conninfo(dsn, password=PASSWORD)
    seen: list[str] = []

    with MatViews(dsn=secret_dsn, definitions=[GOOD, BROKEN]) as mv:
        seen += [json.dumps(mv.create("mv_good").to_dict()), json.dumps(mv.refresh("mv_good").to_dict())]
        db.execute("CREATE MATERIALIZED VIEW mv_broken AS SELECT id, 1 / (id - id) AS boom FROM users WITH NO DATA")
        seen.append(json.dumps(mv.refresh("mv_broken").to_dict()))

    result = build_definitions([GOOD, BROKEN], dsn=secret_dsn).resolve_implicit_global_asset_job_def()
    outcome = result.execute_in_process(raise_on_error=False)
    assert not outcome.success
    seen += [str(event) for event in outcome.all_events]
    seen += [
        json.dumps(row, default=str)
        for row in db.execute(
            "SELECT to_jsonb(r) FROM mat_view_refresh_runs r UNION ALL SELECT to_jsonb(r) FROM mat_view_create_runs r"
        ).fetchall()
    ]

    unreachable = f"postgresql://app:{PASSWORD}@127.0.0.1:1/app"
    with pytest.raises(DatabaseUnavailable) as info:
        MatViews(dsn=unreachable, definitions=[GOOD]).refresh("mv_good")
    seen.append(str(info.value))

    (tmp_path / "matviews.yaml").write_text("views:\n  - {name: mv_good, sql: SELECT id FROM users}\n")
    for args in (
        ["--dsn", unreachable, "refresh", "mv_good"],
        ["--dsn", secret_dsn, "list"],
        ["--dsn", secret_dsn, "migrate"],
    ):
        done = subprocess.run(
            [str(Path(sys.executable).with_name("matviews")), *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        seen += [done.stdout, done.stderr]

    captured = capfd.readouterr()
    seen += [captured.out, captured.err, caplog.text]
    leaks = [text for text in seen if PASSWORD in text]
    assert leaks == []
    assert any("division by zero" in text for text in seen), "the failure itself must still be reported"
