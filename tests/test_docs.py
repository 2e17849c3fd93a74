"""The docs' code: blocks marked ``test`` run in order against a throwaway database; the rest parse.

A fence such as ```` ```bash test ```` (or ``python test``, ``sql test``) marks a runnable
snippet. Each document's snippets share one empty directory and one fresh database, so a
page can build on its previous blocks like a tutorial.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import yaml
from conftest import free_port, new_database
from doc_scripts import (
    ROOT,
    as_a_shell_script,
    blocks_of,
    latest_materializations,
    new_user_env,
    our_warnings,
    postgres_processes_under,
    run_script,
    section,
    servers,
    working_tree_copy,
)
from pglast import parse_sql

from matviews_dagster import load_definitions
from matviews_dagster.demo import DEMO_VIEWS

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(doc: Path) -> list[tuple[str, bool, str]]:
    return blocks_of(doc.read_text())


RUNNABLE = [doc for doc in DOCS if any(test for _, test, _ in blocks(doc))]
END_TO_END = {"getting-started.md"}
"""Pages run whole, every block in one shell as a reader runs them (tests at the end), not block by block."""


def test_the_docs_have_runnable_snippets() -> None:
    names = {doc.name for doc in RUNNABLE}
    expected = {"getting-started.md", "definitions.md", "run-history.md", "cli.md", "adapter.md", "troubleshooting.md"}
    assert expected <= names, f"no runnable snippets in {sorted(expected - names)}"


def test_every_doc_is_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [doc.name for doc in DOCS[1:] if f"docs/{doc.name}" not in readme]
    assert not missing, f"README links none of {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.name)
def test_every_block_parses(doc: Path) -> None:
    """Python compiles, YAML loads, SQL parses with PostgreSQL's parser, in every block."""
    for lang, _, code in blocks(doc):
        if lang == "python":
            ast.parse(code)
        elif lang == "yaml":
            yaml.safe_load(code)
        elif lang == "sql":
            assert parse_sql(code), code


def _env(dsn: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MATVIEWS_", "DAGSTER_"))}
    env.update(
        MATVIEWS_DSN=dsn,
        DATABASE_URL=dsn,
        MATVIEWS_HOME=str(home / ".matviews"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        YES="",
    )
    return env


@pytest.mark.slow
@pytest.mark.parametrize("doc", [d for d in RUNNABLE if d.name not in END_TO_END], ids=lambda doc: doc.name)
def test_runnable_snippets(doc: Path, server_dsn: str, tmp_path: Path) -> None:
    snippets = [(lang, code) for lang, test, code in blocks(doc) if test]
    with new_database(server_dsn, "mvdocs") as dsn:
        env = _env(dsn, tmp_path)
        for number, (lang, code) in enumerate(snippets, 1):
            where = f"{doc.name}, runnable block {number} ({lang})"
            if lang == "sql":
                with psycopg.connect(dsn, autocommit=True) as conn:
                    rows = conn.execute(code).fetchall()
                print(where, rows)
                continue
            if lang == "bash":
                command = ["bash", "-euo", "pipefail", "-c", code]
            elif lang == "python":
                script = tmp_path / f"snippet_{number}.py"
                script.write_text(code)
                command = [sys.executable, str(script)]
            else:
                pytest.fail(f"{where}: no runner for {lang!r}")
            done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
            output = f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
            assert done.returncode == 0, f"{where} failed:\n{code}\n{output}"
            print(where, done.stdout[-2000:])


# --- the first hour: the README and getting-started end to end, as a new user runs them ----------


@pytest.mark.slow
def test_the_readme_as_written_and_the_demo_history_in_the_ui(tmp_path: Path) -> None:
    """The README's demo command, then ``dagster dev`` in the same directory shows every view's
    materialization from the demo (the clone's dagster.yaml keeps the instance), then the
    README's CLI block, as written, in the clone: no warning printed, every server seen."""
    readme = ROOT / "README.md"
    clone = working_tree_copy(tmp_path / "matviews-dagster")
    env = new_user_env(tmp_path / "home", clone)
    demo = next(code for lang, _, code in blocks(readme) if lang == "bash" and "dg launch" in code)
    installed: set[str] = set()  # the extras the reader installed, as the README told them
    output = run_script(as_a_shell_script(demo, "bash", installed), clone, env)
    assert not our_warnings(output), our_warnings(output)

    port = free_port()
    log = (tmp_path / "dagster-dev.log").open("w")
    dev = subprocess.Popen(
        ["dg", "dev", "-f", "definitions.py", "-p", str(port)],
        cwd=clone,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        latest: dict[str, str | None] = {}
        while time.monotonic() < deadline:
            try:
                latest = latest_materializations(port)
                break
            except (OSError, KeyError, ValueError):
                assert dev.poll() is None, (tmp_path / "dagster-dev.log").read_text()
                time.sleep(1)
        views = {d.name.replace(".", "/") for d in load_definitions(DEMO_VIEWS)}  # qualified: public.mv_users
        assert views <= set(latest), f"the UI lacks {sorted(views - set(latest))}"
        never = sorted(key for key in views if latest[key] is None)
        assert not never, f"the UI shows {never} never materialized after the demo"
    finally:
        os.killpg(dev.pid, signal.SIGINT)  # as Ctrl-C: dagster dev stops its webserver and daemon
        try:
            dev.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
        log.close()
    startup = (tmp_path / "dagster-dev.log").read_text()
    assert not our_warnings(startup), our_warnings(startup)

    cli_block = section(readme, "## The `matviews` command")
    code = next(code for lang, _, code in blocks_of(cli_block) if lang == "bash")
    output = run_script(as_a_shell_script(code, "bash", installed), clone, env)
    assert not our_warnings(output), our_warnings(output)
    assert "mv_engaged_users: refreshed" in output  # --downstream refreshed the view built on it
    assert "mv_engaged_users (materialized view)" in output  # dropped by --cascade, then created again

    listed = servers(env)
    assert [s["data_dir"] for s in listed] == [str(clone / ".matviews" / "pgdata")]
    assert listed[0]["running"]
    run_script("matviews server stop", clone, env)
    assert not servers(env)[0]["running"]
    assert not postgres_processes_under(tmp_path)


@pytest.mark.slow
def test_getting_started_as_written(tmp_path: Path) -> None:
    """Every block of getting-started, in order, in one shell, from an empty directory, on the
    embedded Postgres: it ends with no server running, and both servers it started were listed."""
    doc = ROOT / "docs" / "getting-started.md"
    clone = working_tree_copy(tmp_path / "source")
    env = new_user_env(tmp_path / "home", clone)
    work = tmp_path / "projects"
    work.mkdir()
    installed: set[str] = set()
    script = "".join(
        as_a_shell_script(code, lang, installed) for lang, _, code in blocks(doc) if lang in ("bash", "sql")
    )
    # the page stops every server at its end; list them before that line runs
    listing = 'matviews server status --json > "$HOME/listed.json"\n'
    stop = "matviews server stop .matviews/pgdata ../matviews-dagster/.matviews/pgdata\n"
    assert stop in script, "the page stops the servers it started"
    script = script.replace(stop, listing + stop)
    output = run_script(script, work, env)
    assert not our_warnings(output), our_warnings(output)
    assert "('public.mv_plans', 'success', 3, True)" in output  # the SQL block: Dagster's refresh, with its run id
    listed = json.loads((tmp_path / "home" / "listed.json").read_text())
    expected = {str(work / project / ".matviews" / "pgdata") for project in ("matviews-dagster", "my-views")}
    assert {s["data_dir"] for s in listed} == expected
    assert all(s["running"] for s in listed)
    assert not (work / "matviews-dagster" / "my-views").exists()  # created beside the clone, not in it
    assert not postgres_processes_under(tmp_path)
