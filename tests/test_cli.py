"""The `matviews` console script, run as a real process against real Postgres."""

from __future__ import annotations

import csv
import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import scalar

from matviews_dagster.core.store import SCHEMA_VERSION

MATVIEWS = str(Path(sys.executable).with_name("matviews"))
YAML = """
views:
  - name: mv_pro
    sql: SELECT id, email FROM mv_users WHERE plan = 'pro'
    unique_index_columns: [id]
  - name: mv_users
    sql: SELECT id, email, plan FROM users
    refresh_strategy: concurrent
    unique_index_columns: [id]
"""
NOT_APPLIED = YAML.replace(
    "refresh_strategy: concurrent\n", "refresh_strategy: concurrent\n    on_definition_change: warn\n"
)
"""mv_users with its declared unique index not built again when dropped (the default, apply, would)."""


@pytest.fixture
def project(tmp_path: Path, users) -> Path:
    (tmp_path / "matviews.yaml").write_text(YAML)
    return tmp_path


def env_for(dsn: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MATVIEWS_DSN", "YES", "MATVIEWS_ADAPTER")}
    env.update(MATVIEWS_DSN=dsn, **extra)
    return env


def matviews(project: Path, dsn: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MATVIEWS, *args],
        cwd=project,
        env=env_for(dsn, **extra),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def with_terminal(project: Path, dsn: str, answer: str, *args: str) -> tuple[int, str]:
    """Run with stdin/stdout on a pseudo-terminal and type ``answer`` at the prompt."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [MATVIEWS, *args], cwd=project, env=env_for(dsn), stdin=follower, stdout=follower, stderr=follower
    )
    os.close(follower)
    output = b""
    answered = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        if not answered and b"Proceed? [y/N]" in output:
            os.write(leader, answer.encode() + b"\n")
            answered = True
        if process.poll() is not None and not ready:
            break
    process.wait(30)
    os.close(leader)
    return process.returncode, output.decode(errors="replace")


def test_help_and_version(project, dsn) -> None:
    done = matviews(project, dsn, "--help")
    assert done.returncode == 0
    for command in ("migrate", "list", "create", "refresh", "delete", "runs", "validate", "demo"):
        assert command in done.stdout
    assert matviews(project, dsn, "--version").stdout.startswith("matviews, version")


def test_migrate(project, dsn, db) -> None:
    done = matviews(project, dsn, "--runs-schema", "history", "migrate")
    assert done.returncode == 0, done.stderr
    assert f"version {SCHEMA_VERSION} in schema history" in done.stdout
    assert scalar(db, "SELECT to_regclass('history.mat_view_refresh_runs')") is not None


def test_create_refresh_in_dependency_order_and_json(project, dsn, db) -> None:
    done = matviews(project, dsn, "create", "--all", "--json")
    assert done.returncode == 0, done.stderr
    created = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["view"] for r in created] == ["public.mv_users", "public.mv_pro"]
    assert all(r["status"] == "success" and r["outcome"] == "created" for r in created)
    db.execute("UPDATE users SET plan = 'pro'")
    done = matviews(project, dsn, "refresh", "--all", "--json", "--rows", "exact")
    assert done.returncode == 0, done.stderr
    refreshed = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["view"], r["rows_count"]) for r in refreshed] == [("public.mv_users", 10), ("public.mv_pro", 10)]
    assert scalar(db, "SELECT count(*) FROM mv_pro") == 10
    swapped = matviews(project, dsn, "refresh", "mv_users", "--strategy", "swap")
    assert swapped.returncode == 0, swapped.stdout  # mv_pro reads mv_users: recreated on the new copy
    assert scalar(db, "SELECT count(*) FROM mv_pro") == 10


def test_refresh_all_skips_what_a_failure_blocks_and_goes_on(project, dsn, db) -> None:
    (project / "matviews.yaml").write_text(
        NOT_APPLIED
        + """
  - name: mv_plans
    sql: SELECT plan, count(*) AS n FROM users GROUP BY plan
"""
    )
    assert matviews(project, dsn, "create", "--all", "--parallel", "2").returncode == 0
    db.execute("DROP INDEX mv_users_id_idx")  # mv_users is concurrent: its refresh now fails
    done = matviews(project, dsn, "refresh", "--all", "--parallel", "3")
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("FAILED  public.mv_users") for line in lines), done.stdout
    assert any(line.startswith("SKIPPED public.mv_pro") for line in lines), done.stdout
    assert "upstream public.mv_users failed" in done.stdout
    assert any(line.startswith("ok      public.mv_plans") for line in lines), done.stdout
    as_json = [json.loads(line) for line in matviews(project, dsn, "refresh", "--all", "--json").stdout.splitlines()]
    assert {r["view"]: r["status"] for r in as_json} == {
        "public.mv_users": "failed",
        "public.mv_pro": "skipped",
        "public.mv_plans": "success",
    }
    assert next(r for r in as_json if r["view"] == "public.mv_pro")["skipped_because"] == ["public.mv_users"]
    assert matviews(project, dsn, "refresh", "--all", "--parallel", "0").returncode == 2


def test_failed_refresh_exits_1_with_its_run_row(project, dsn, db) -> None:
    (project / "matviews.yaml").write_text(NOT_APPLIED)
    assert matviews(project, dsn, "create", "mv_users").returncode == 0
    db.execute("DROP INDEX mv_users_id_idx")
    done = matviews(project, dsn, "refresh", "mv_users")
    assert done.returncode == 1
    assert "no usable unique index" in done.stdout and "CREATE UNIQUE INDEX" in done.stdout
    assert scalar(db, "SELECT status FROM mat_view_refresh_runs") == "failed"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["refresh", "mv_nope"], "unknown view 'mv_nope'"),
        (["refresh"], "name one or more views, or pass --all"),
        (["refresh", "mv_users", "--rows", "lots"], "Invalid value for '--rows'"),
        (["--definitions", "missing.yaml", "list"], "no definitions file missing.yaml: pass --definitions PATH"),
        (["--dsn", "postgresql://me:pw-secret@127.0.0.1:1/app", "refresh", "mv_users"], "cannot connect to"),
        (["--dsn", "this is not a dsn", "refresh", "mv_users"], "cannot connect to"),
        (["runs", "--limit", "0"], "Invalid value for '--limit'"),
    ],
)
def test_bad_input_exits_2_with_one_line(project, dsn, db, args, message) -> None:
    done = matviews(project, dsn, *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr
    assert "Traceback" not in done.stderr and "pw-secret" not in done.stderr
    assert scalar(db, "SELECT count(*) FROM pg_matviews") == 0


def test_invalid_definitions_file_names_file_and_field(project, dsn) -> None:
    (project / "bad.yaml").write_text("views:\n  - name: mv_x\n    sql: DELETE FROM users\n")
    done = matviews(project, dsn, "--definitions", "bad.yaml", "list")
    assert done.returncode == 2
    assert "bad.yaml: views[0] (mv_x): sql: " in done.stderr and "must be a query" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_debug_shows_the_traceback(project, dsn) -> None:
    done = matviews(project, dsn, "--debug", "refresh", "mv_nope")
    assert done.returncode == 2 and "Traceback" in done.stderr


def test_force_create_and_delete_ask_first(project, dsn, db) -> None:
    assert matviews(project, dsn, "create", "mv_users").returncode == 0
    oid = scalar(db, "SELECT 'mv_users'::regclass::oid")

    no_terminal = matviews(project, dsn, "create", "mv_users", "--force")
    assert no_terminal.returncode == 1 and "no terminal to confirm" in no_terminal.stderr
    code, output = with_terminal(project, dsn, "n", "create", "mv_users", "--force")
    assert code == 1 and "aborted" in output
    assert scalar(db, "SELECT 'mv_users'::regclass::oid") == oid
    assert scalar(db, "SELECT count(*) FROM mat_view_create_runs") == 1

    code, output = with_terminal(project, dsn, "y", "create", "mv_users", "--force")
    assert code == 0, output
    assert scalar(db, "SELECT 'mv_users'::regclass::oid") != oid

    refused = matviews(project, dsn, "delete", "mv_users")
    assert refused.returncode == 1 and scalar(db, "SELECT count(*) FROM pg_matviews") == 1
    assert matviews(project, dsn, "delete", "mv_users", YES="1").returncode == 0
    assert scalar(db, "SELECT count(*) FROM pg_matviews") == 0
    assert matviews(project, dsn, "delete", "--all", "--yes", "--json").returncode == 0


def test_list_and_runs(project, dsn, db) -> None:
    assert matviews(project, dsn, "create", "mv_users").returncode == 0
    assert matviews(project, dsn, "refresh", "mv_users").returncode == 0
    listed = json.loads(matviews(project, dsn, "list", "--json").stdout)
    by_name = {row["name"]: row for row in listed}
    users = by_name["public.mv_users"]
    assert users["exists"] and users["populated"] and users["strategy"] == "concurrent"
    assert users["rows_estimate"] == 10 and users["size_bytes"] > 0
    assert users["last_run"]["status"] == "success" and users["last_run"]["kind"] == "refresh"
    assert by_name["public.mv_pro"] == {
        "name": "public.mv_pro",
        "view": "public.mv_pro",  # every command's JSON says view (and run_id)
        "strategy": "regular",
        "exists": False,
        "populated": False,
        "rows_estimate": None,
        "size_bytes": None,
        "last_run": None,
    }
    table = matviews(project, dsn, "list")
    assert table.returncode == 0 and "public.mv_users" in table.stdout
    runs = json.loads(matviews(project, dsn, "runs", "--json", "--kind", "refresh", "--view", "mv_users").stdout)
    assert [(r["kind"], r["view_name"], r["status"]) for r in runs] == [("refresh", "public.mv_users", "success")]
    refreshed = json.loads(matviews(project, dsn, "refresh", "mv_users", "--json").stdout)
    latest = json.loads(matviews(project, dsn, "runs", "--json", "--kind", "refresh", "--limit", "1").stdout)[0]
    assert (
        (latest["run_id"], latest["view"])
        == (refreshed["run_id"], refreshed["view"])
        == (latest["id"], "public.mv_users")
    )
    assert refreshed["what_happened"] == "refreshed" and refreshed["outcome"] == "updated"
    history = matviews(project, dsn, "runs", "--limit", "5")
    assert history.returncode == 0 and "refresh" in history.stdout and "create" in history.stdout


def test_validate_times_and_compares(project, dsn, db, tmp_path) -> None:
    assert matviews(project, dsn, "create", "--all").returncode == 0
    report = tmp_path / "validate.csv"
    done = matviews(project, dsn, "validate", "--iterations", "3", "--csv", str(report))
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(report.open()))
    assert [r["view"] for r in rows] == ["public.mv_pro", "public.mv_users"]
    assert all(r["matches"] == "True" and int(r["iterations"]) == 3 for r in rows)
    assert float(rows[1]["speedup"]) > 0
    db.execute("DELETE FROM users WHERE id = 1")
    stale = matviews(project, dsn, "validate", "mv_users")
    assert stale.returncode == 1 and "mismatch: public.mv_users" in stale.stderr


def test_demo_seed(tmp_path, dsn, db) -> None:
    done = matviews(tmp_path, dsn, "demo", "seed", "--scale", "2", "--yes")
    assert done.returncode == 0, done.stderr
    assert scalar(db, "SELECT count(*) FROM users") == 1000
    events = scalar(db, "SELECT count(*) FROM events")
    assert 10_000 <= events <= 30_000
    assert "users 1,000" in done.stdout
    refused = matviews(tmp_path, dsn, "demo", "seed")
    assert refused.returncode == 1 and "no terminal to confirm" in refused.stderr


def test_database_errors_are_one_line(project, dsn) -> None:
    done = matviews(project, dsn, "demo", "seed", "--yes")  # conflicts with the test's own users table
    assert done.returncode == 1
    assert done.stderr.startswith("error: the database refused:") and "Traceback" not in done.stderr


def test_enqueue_goes_through_the_adapter(project, dsn, db) -> None:
    missing = matviews(project, dsn, "refresh", "mv_users", "--enqueue")
    assert missing.returncode == 2 and "MATVIEWS_ADAPTER" in missing.stderr
    done = matviews(project, dsn, "refresh", "mv_users", "--enqueue", "--queue", "heavy", MATVIEWS_ADAPTER="queue")
    assert done.returncode == 0, done.stderr
    assert "request #1 on queue heavy" in done.stdout
    assert db.execute("SELECT job, queue, status FROM mat_view_run_requests").fetchall() == [
        ("refresh_mat_views", "heavy", "pending")
    ]
    assert scalar(db, "SELECT count(*) FROM pg_matviews") == 0, "--enqueue must not run anything"


def test_direct_refresh_imports_only_what_it_needs(project, dsn) -> None:
    """No Dagster ever; once the definitions file is cached, neither YAML nor the SQL parser,
    nor rich for output that is not a terminal."""
    assert matviews(project, dsn, "create", "mv_users").returncode == 0  # also caches the definitions
    probe = (
        "import sys\n"
        "from matviews_dagster.cli import cli\n"
        "code = cli.main(args=['refresh', 'mv_users'], standalone_mode=False)\n"
        "heavy = ('dagster', 'yaml', 'pglast', 'rich')\n"
        "print(code, sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in heavy}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=project, env=env_for(dsn), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "0 []"


def test_sigterm_cancels_what_runs_and_says_what_did_not_finish(project, dsn, db) -> None:
    import signal

    db.execute("CREATE TABLE sleep_seconds (s float)")
    db.execute("INSERT INTO sleep_seconds VALUES (0)")
    slow = "SELECT u.id FROM users u CROSS JOIN (SELECT pg_sleep(s) FROM sleep_seconds) z"
    (project / "matviews.yaml").write_text(
        "views:\n" + "".join(f"  - name: mv_slow{i}\n    sql: {slow}\n" for i in range(3))
    )
    assert matviews(project, dsn, "create", "--all").returncode == 0
    db.execute("UPDATE sleep_seconds SET s = 30")
    process = subprocess.Popen(
        [MATVIEWS, "refresh", "--all", "--parallel", "2"],
        cwd=project,
        env=env_for(dsn),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while scalar(db, "SELECT count(*) FROM mat_view_refresh_runs WHERE status = 'running'") < 2:
        assert time.monotonic() < deadline, "two refreshes never started"
        time.sleep(0.1)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)
    assert time.monotonic() - started < 10, "the refreshes were awaited, not cancelled"
    assert process.returncode == 1, stderr
    assert "interrupted: 0 of 3 views done, 2 failed or cancelled; not finished: public.mv_slow2" in stderr
    assert stdout.count("FAILED") == 2 and "canceling statement" in stdout
    assert scalar(db, "SELECT count(*) FROM mat_view_refresh_runs WHERE status = 'running'") == 0
    assert scalar(db, "SELECT count(*) FROM mv_slow0") == 10, "the views kept their data"


NOTES_YAML = """
views:
  - name: mv_notes
    sql: SELECT code, note FROM notes
    refresh_strategy: concurrent
    unique_index_columns: [code]
    row_count_strategy: exact
  - name: mv_note_count
    sql: SELECT count(*) AS n FROM mv_notes
"""


def test_warnings_show_in_the_output_the_json_and_the_history(project, dsn, db) -> None:
    db.execute("CREATE TABLE notes (code text, note text)")
    db.execute("INSERT INTO notes VALUES ('a', 'x'), (NULL, 'y')")  # a NULL key: rewritten every refresh
    (project / "matviews.yaml").write_text(NOTES_YAML)
    assert matviews(project, dsn, "create", "--all").returncode == 0
    plain = matviews(project, dsn, "refresh", "mv_notes")
    assert plain.returncode == 0 and "warning: unique index mv_notes_code_idx has NULLs in code" in plain.stdout
    as_json = json.loads(matviews(project, dsn, "refresh", "mv_notes", "--json").stdout)
    assert any("has NULLs in code" in w for w in as_json["warnings"])
    history = matviews(project, dsn, "runs", "--kind", "refresh", "--limit", "1")
    assert "warning: unique index mv_notes_code_idx" in history.stdout
    assert "refresh #" in history.stdout and "concurrent" in history.stdout and "refreshed" in history.stdout


def test_omitted_options_mean_the_definitions_choice_on_every_path(project, dsn, db) -> None:
    db.execute("CREATE TABLE notes (code text, note text)")
    (project / "matviews.yaml").write_text(NOTES_YAML)
    done = matviews(project, dsn, "refresh", "mv_notes", "--enqueue", MATVIEWS_ADAPTER="queue")
    assert done.returncode == 0, done.stderr
    downstream = matviews(project, dsn, "refresh", "mv_notes", "--enqueue", "--downstream", MATVIEWS_ADAPTER="queue")
    assert downstream.returncode == 0, downstream.stderr
    rows = db.execute("SELECT args FROM mat_view_run_requests ORDER BY id").fetchall()
    assert [row[0] for row in rows] == [["public.mv_notes"], ["public.mv_notes", {"downstream": True}]]


def test_refresh_downstream_refreshes_the_views_built_on_it(project, dsn, db) -> None:
    db.execute("CREATE TABLE notes (code text, note text)")
    db.execute("INSERT INTO notes VALUES ('a', 'x')")
    (project / "matviews.yaml").write_text(NOTES_YAML)
    assert matviews(project, dsn, "create", "--all").returncode == 0
    db.execute("INSERT INTO notes VALUES ('b', 'y')")
    done = matviews(project, dsn, "refresh", "mv_notes", "--downstream", "--json")
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["view"] for line in done.stdout.splitlines()] == [
        "public.mv_notes",
        "public.mv_note_count",
    ]
    assert scalar(db, "SELECT n FROM mv_note_count") == 2
    assert json.loads(done.stdout.splitlines()[0])["rows_count"] == 2, "the definition's exact count"


def test_read_outs_say_what_they_mean(project, dsn, db) -> None:
    (project / "matviews.yaml").write_text(
        "views:\n  - name: mv_plain\n    sql: SELECT id FROM users\n    row_count_strategy: exact\n"
    )
    assert matviews(project, dsn, "create", "--all").returncode == 0
    assert matviews(project, dsn, "refresh", "mv_plain").returncode == 0
    listed = json.loads(matviews(project, dsn, "list", "--json").stdout)
    assert listed[0]["rows_estimate"] == 10, "no index, no reltuples: the last refresh's count"
    db.execute("INSERT INTO users VALUES (99, 'new@example.com', 'free')")
    stale = matviews(project, dsn, "validate", "mv_plain", "--iterations", "1")
    assert stale.returncode == 1
    header, row = [line for line in stale.stdout.splitlines() if "view rows" in line or "mv_plain" in line][:2]
    assert "query rows" in header and "11" in row and "10" in row
    info = matviews(project, dsn, "info")
    assert info.returncode == 0, info.stderr
    assert "from:         MATVIEWS_DSN" in info.stdout and "server:       PostgreSQL" in info.stdout
    assert "definitions:  matviews.yaml (1 view)" in info.stdout


def test_a_missing_definitions_file_points_at_the_demo(tmp_path, dsn, db) -> None:
    missing = matviews(tmp_path, dsn, "list")
    assert missing.returncode == 2
    assert "no definitions file matviews.yaml" in missing.stderr and "--demo" in missing.stderr
    demo = matviews(tmp_path, dsn, "--demo", "list", "--json")
    assert demo.returncode == 0, demo.stderr
    assert {row["name"] for row in json.loads(demo.stdout)} >= {"public.mv_users", "public.mv_user_activity"}


def test_hints_speak_in_flags(project, dsn, db) -> None:
    assert matviews(project, dsn, "create", "--all").returncode == 0
    done = matviews(project, dsn, "delete", "mv_users", "--yes")
    assert done.returncode == 1
    assert "public.mv_pro (materialized view)" in done.stdout and "--cascade" in done.stdout
    assert "cascade=True" not in done.stdout
    cascaded = matviews(project, dsn, "delete", "mv_users", "--cascade", "--yes")
    assert cascaded.returncode == 0 and "dropped with it: public.mv_pro (materialized view)" in cascaded.stdout


def test_more_read_outs_and_hints(project, dsn, db) -> None:
    missing = matviews(project, dsn, "refresh", "mv_users")
    assert missing.returncode == 1 and "hint: create it first (matviews create)" in missing.stdout
    assert "create_if_missing" not in missing.stdout
    upstream_missing = matviews(project, dsn, "create", "mv_pro")
    assert upstream_missing.returncode == 1 and "(matviews create --all)" in upstream_missing.stdout
    assert matviews(project, dsn, "create", "--all").returncode == 0
    runs = matviews(project, dsn, "runs", "--kind", "create", "--json")
    assert {r["rows_count"] for r in json.loads(runs.stdout) if r["status"] == "success"} == {10, 3}
    (project / "matviews.yaml").write_text(YAML + "  - name: mv_gone\n    sql: SELECT id FROM users\n")
    assert matviews(project, dsn, "create", "mv_gone").returncode == 0
    db.execute("ALTER TABLE users RENAME TO people")  # every query fails now; validate names each view
    validated = matviews(project, dsn, "validate", "--iterations", "1")
    assert validated.returncode == 1
    assert (
        "error: public.mv_users: relation" in validated.stderr and "error: public.mv_gone: relation" in validated.stderr
    )
    assert "public.mv_pro" in validated.stdout, "the views that could be validated still are"


def test_a_failed_inline_enqueue_exits_1(project, dsn, db) -> None:
    (project / "defs.py").write_text(
        "from matviews_dagster import build_definitions\ndefs = build_definitions('matviews.yaml')\n"
    )
    db.execute("ALTER TABLE users RENAME TO people")
    done = matviews(
        project, dsn, "refresh", "mv_users", "--enqueue", MATVIEWS_ADAPTER="inline", MATVIEWS_CODE_LOCATION="defs.py"
    )
    assert done.returncode == 1 and "(failure)" in done.stdout


def test_validate_compares_whole_rows_whatever_the_columns_are_called(tmp_path, dsn, db) -> None:
    """A column named like the query's own alias (r) must not be compared instead of the row."""
    db.execute("CREATE TABLE rt (r int PRIMARY KEY, x int)")
    db.execute("INSERT INTO rt VALUES (1, 10), (2, 20)")
    (tmp_path / "matviews.yaml").write_text("views:\n  - name: mv_r\n    sql: SELECT r, x FROM rt\n")
    assert matviews(tmp_path, dsn, "create", "--all").returncode == 0
    assert matviews(tmp_path, dsn, "validate", "--iterations", "1").returncode == 0
    db.execute("UPDATE rt SET x = x + 1000")
    stale = matviews(tmp_path, dsn, "validate", "--iterations", "1")
    assert stale.returncode == 1 and "mismatch: public.mv_r" in stale.stderr, stale.stdout + stale.stderr


def test_lines_say_what_happened_and_errors_have_one_style(project, dsn, db) -> None:
    """A refresh that rebuilt its view for a changed definition says so and why, with the
    rebuild's time and both runs; a refresh that created its missing view says that; click's
    usage errors speak as every other error (``error: ...``), naming the help to read."""
    assert matviews(project, dsn, "create", "mv_users").returncode == 0
    (project / "matviews.yaml").write_text(
        YAML.replace("SELECT id, email, plan FROM", "SELECT id, email, plan, id * 2 AS twice FROM")
    )
    done = matviews(project, dsn, "refresh", "mv_users")
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert line.startswith("ok      public.mv_users: rebuilt (definition changed), "), line
    assert int(line.split(", ")[1].removesuffix(" ms")) > 0, "the rebuild's time, not the 0 ms of a refresh not run"
    assert "10 rows, create run #2, refresh run #" in line, line
    assert (
        scalar(db, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.mv_users'::regclass AND attnum > 0") == 4
    )

    from matviews_dagster import MatViews, load_definitions
    from matviews_dagster.cli.render import describe_result

    result = MatViews(dsn=dsn, definitions=load_definitions(project / "matviews.yaml")).refresh(
        "mv_pro", create_if_missing=True
    )
    assert (result.outcome, result.what_happened) == ("created", "created (the view was missing)")
    assert result.created is not None and result.total_duration_ms == result.created.duration_ms + result.duration_ms
    line = describe_result(result)
    assert line.startswith("ok      public.mv_pro: created (the view was missing), "), line
    assert f"create run #{result.created.run_id}, refresh run #{result.run_id}" in line

    usage = matviews(project, dsn, "refresh", "--strategy", "fastest", "mv_users")
    assert usage.returncode == 2 and "Error" not in usage.stderr and "Usage:" not in usage.stderr
    assert usage.stderr.startswith("error: Invalid value for '--strategy': 'fastest' is not one of"), usage.stderr
    assert usage.stderr.rstrip().endswith("(see `matviews refresh --help`)"), usage.stderr
    unknown = matviews(project, dsn, "refersh")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: No such command 'refersh'"), unknown.stderr


def test_enqueue_speaks_json_too(project, dsn, db) -> None:
    done = matviews(
        project,
        dsn,
        "refresh",
        "mv_users",
        "mv_pro",
        "--enqueue",
        "--queue",
        "heavy",
        "--json",
        MATVIEWS_ADAPTER="queue",
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    ids = [row[0] for row in db.execute("SELECT id FROM mat_view_run_requests ORDER BY id").fetchall()]
    assert [(x["view"], x["request_id"], x["queue"], x["backend"], x["status"]) for x in lines] == [
        ("public.mv_users", ids[0], "heavy", "queue", "pending"),
        ("public.mv_pro", ids[1], "heavy", "queue", "pending"),
    ]
