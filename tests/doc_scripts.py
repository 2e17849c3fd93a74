"""Docs run as a reader runs them: a block of a page turned into the shell script a new user
types (install steps checked, not run), in a copy of the working tree, with a new user's
environment; and what to look at afterwards (warnings printed, servers left running)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(?P<lang>[a-z]*)(?P<test> test)?\n(?P<code>.*?)^```$", re.M | re.S)


def blocks_of(text: str) -> list[tuple[str, bool, str]]:
    """``(language, marked test, code)`` of every fenced block in ``text``, in order."""
    return [(m["lang"], bool(m["test"]), m["code"]) for m in FENCE.finditer(text)]


INSTALL_STEP = re.compile(
    r"^(python3 -m venv \.venv|\. \.venv/bin/activate|pip install (-q )?(-e )?'(?P<target>[^']*)')$"
)


def section(doc: Path, heading: str) -> str:
    """The text of ``doc`` from ``heading`` to the next heading of the same level."""
    text = doc.read_text()
    start = text.index(heading)
    level = heading.split(" ")[0]
    end = text.find(f"\n{level} ", start + len(heading))
    return text[start : end if end != -1 else len(text)]


EXTRA_COMMANDS = {"dg": "dg", "create-dagster": "dg"}
"""Commands only an extra installs (the suite's venv has them all, a reader's has what the docs said)."""


def as_a_shell_script(code: str, lang: str, installed: set[str] | None = None) -> str:
    """A doc block as the reader runs it. The install steps (a venv, ``pip install`` of the
    clone) are checked, not run: the suite's venv has the package already, the extras they name
    must exist, and each command an extra provides (``EXTRA_COMMANDS``) must come after an
    install of that extra (``installed``: the extras installed so far on the page, updated).
    ``git clone <this repository>`` copies the working tree under test. An SQL block runs on the
    server the reader's current directory uses (its DSN, or its embedded one)."""
    installed = set() if installed is None else installed
    if lang == "sql":
        runner = (
            "import sys, psycopg; from matviews_dagster.core.dsn import resolve_dsn\n"
            "with psycopg.connect(resolve_dsn()) as conn: print(conn.execute(sys.stdin.read()).fetchall())"
        )
        return f"python -c '{runner}' <<'SQL'\n{code}SQL\n"
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    lines = []
    for line in code.splitlines():
        command = line.split("  #")[0].strip()
        steps = []
        for step in command.split(" && "):
            step = step.strip()
            if step.startswith("git clone <this repository> "):
                steps.append(f'cp -a "$MATVIEWS_TEST_CLONE" {step.split()[-1]}')
            elif match := INSTALL_STEP.match(step):
                target = match["target"] or ""
                if target:
                    named = set(re.search(r"\[(.*)\]", target)[1].split(","))  # type: ignore[index]
                    assert named <= extras, f"{line!r} names extras {sorted(named - extras)} pyproject.toml lacks"
                    installed |= named
                steps.append("true")
            else:
                program = step.split(" ")[0]
                if program in EXTRA_COMMANDS and command:
                    extra = EXTRA_COMMANDS[program]
                    assert extra in installed, f"{line!r} runs {program}, but no install step before it names [{extra}]"
                steps.append(step)
        special = any(step.startswith("git clone ") or INSTALL_STEP.match(step) for step in command.split(" && "))
        lines.append(" && ".join(steps) if special else line)  # heredoc lines stay as written
    return "\n".join(lines) + "\n"


def working_tree_copy(dest: Path) -> Path:
    """The files of this repository a clone would have (tracked, or new and not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in listed:
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def new_user_env(home: Path, clone: Path | None = None) -> dict[str, str]:
    """A new user's environment: no DSN (the embedded Postgres), no Dagster home, a fresh HOME
    (so the embedded-server registry is under it), this venv's commands first on PATH; ``clone``
    is what ``git clone <this repository>`` copies in a doc script."""
    dropped = ("MATVIEWS_", "DAGSTER_", "DATABASE_URL", "XDG_", "PG")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.update(HOME=str(home), PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    if clone is not None:
        env["MATVIEWS_TEST_CLONE"] = str(clone)
    return env


def run_script(script: str, cwd: Path, env: dict[str, str], timeout: int = 600) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    output = f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    assert done.returncode == 0, f"failed:\n{script}\n{output}"
    return output


def our_warnings(output: str) -> list[str]:
    """Lines of ``output`` that are Python warnings (``...Warning: ...``)."""
    return [line for line in output.splitlines() if re.search(r"\b\w*Warning: ", line)]


def servers(env: dict[str, str]) -> list[dict[str, object]]:
    done = subprocess.run(
        ["matviews", "server", "status", "--json"], env=env, capture_output=True, text=True, check=True, cwd="/"
    )
    return json.loads(done.stdout)


def postgres_processes_under(directory: Path) -> list[str]:
    """Command lines of running ``postgres`` processes whose data directory is under ``directory``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"postgres") and str(directory).encode() in b" ".join(argv):
            found.append(b" ".join(argv).decode(errors="replace"))
    return found


def latest_materializations(port: int) -> dict[str, str | None]:
    """``{asset key path: run id of its latest materialization, or None}`` from the webserver."""
    query = "{ assetNodes { assetKey { path } assetMaterializations(limit: 1) { runId } } }"
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        nodes = json.load(response)["data"]["assetNodes"]
    return {
        "/".join(node["assetKey"]["path"]): (node["assetMaterializations"] or [{}])[0].get("runId") for node in nodes
    }
