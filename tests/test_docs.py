"""The docs' code: blocks marked ``test`` run in order against a throwaway database; the rest parse.

A fence such as ```` ```bash test ```` (or ``python test``, ``sql test``) marks a runnable
snippet. Each document's snippets share one empty directory and one fresh database, so a
page can build on its previous blocks like a tutorial.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import yaml
from conftest import new_database
from pglast import parse_sql

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(?P<lang>[a-z]*)(?P<test> test)?\n(?P<code>.*?)^```$", re.M | re.S)


def blocks(doc: Path) -> list[tuple[str, bool, str]]:
    return [(m["lang"], bool(m["test"]), m["code"]) for m in FENCE.finditer(doc.read_text())]


RUNNABLE = [doc for doc in DOCS if any(test for _, test, _ in blocks(doc))]


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
@pytest.mark.parametrize("doc", RUNNABLE, ids=lambda doc: doc.name)
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
