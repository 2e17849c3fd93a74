"""Screenshots of the Dagster UI for docs/ui.md: ``python -m benchmarks.screenshots``.

Starts a throwaway PostgreSQL, materializes the demo several times at growing scales (so the
asset pages have a history to plot), serves it with ``dagster-webserver`` and takes the
pictures with headless Chromium (Debian's ``chromium`` package: ``apt-get install chromium``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import click
import yaml

from .harness import ROOT, run_process, server

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
PAGES = {  # file name -> path in the UI
    "ui-asset-graph.png": "/asset-groups",
    "ui-asset-plots.png": "/assets/public/mv_user_activity?view=plots",
    "ui-asset-overview.png": "/assets/public/mv_user_activity",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {seconds:.0f} s")


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise click.ClickException("no Chromium found: apt-get install chromium (Debian) and run again")


def _screenshot(chromium: str, url: str, path: Path, profile: Path) -> None:
    run_process(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--window-size=1600,1000",
            "--virtual-time-budget=30000",  # lets the page fetch and render its data first
            f"--screenshot={path}",
            url,
        ]
    )


@click.command()
@click.option("--runs", type=click.IntRange(min=2), default=6, show_default=True, help="Materializations of the demo.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=ROOT / "docs" / "images")
def main(runs: int, out: Path) -> None:
    """Materialize the demo ``runs`` times, then photograph the asset graph and one asset's plots."""
    chromium = _chromium()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="matviews-ui-"))
    home = work / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with server(None) as dsn:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MATVIEWS_DSN")}
        env.update(MATVIEWS_DSN=dsn, DAGSTER_HOME=str(home))
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        bin_dir = Path(sys.executable).parent
        for run in range(1, runs + 1):  # the demo grows: the plots get a trend to show
            config = work / f"run_{run}.yaml"
            config.write_text(yaml.safe_dump({"ops": {"demo_source_data": {"config": {"scale": run}}}}))
            click.echo(f"materializing the demo at scale {run}", err=True)
            materialize = [str(bin_dir / "dagster"), "asset", "materialize", "-f", "definitions.py", "--select", "*"]
            run_process([*materialize, "-c", str(config)], env=env, cwd=ROOT)
        port = _free_port()
        with open(work / "webserver.log", "w") as log:
            webserver = subprocess.Popen(
                [str(bin_dir / "dagster-webserver"), "-f", "definitions.py", "-h", "127.0.0.1", "-p", str(port)],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                _wait_for(f"http://127.0.0.1:{port}/server_info", 120)
                for name, path in PAGES.items():
                    click.echo(f"taking {name}", err=True)
                    _screenshot(chromium, f"http://127.0.0.1:{port}{path}", out / name, work / "chromium")
            finally:
                webserver.terminate()
                webserver.wait(30)
    shutil.rmtree(work, ignore_errors=True)
    click.echo(f"wrote {', '.join(str(out / name) for name in PAGES)}", err=True)


if __name__ == "__main__":
    sys.exit(main())
