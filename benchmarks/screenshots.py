"""Screenshots of the Dagster UI for docs/ui.md: ``python -m benchmarks.screenshots``.

Starts a throwaway PostgreSQL, materializes the demo several times at growing scales (so the
asset pages have a history to plot), serves it with ``dagster-webserver`` and takes the
pictures with headless Chromium (Debian's ``chromium`` package: ``apt-get install chromium``),
driven by Playwright (``pip install -e '.[bench]'``) to dismiss the welcome dialog, open the
lineage and switch the metadata to plots.
"""

from __future__ import annotations

import contextlib
import os
import runpy
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import click

from .harness import ROOT, server

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
PAGES = (
    "ui-asset-graph.png",
    "ui-asset-overview.png",
    "ui-asset-plots.png",
    "ui-refresh-costs.png",
    "ui-column-lineage.png",
)


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


def _materialize_demo(runs: int) -> None:
    """The demo's asset job, in this process, at scales 1..runs (DAGSTER_HOME and MATVIEWS_DSN set)."""
    import dagster as dg

    defs = runpy.run_path(str(ROOT / "definitions.py"))["defs"]
    job = defs.get_implicit_global_asset_job_def()
    instance = dg.DagsterInstance.get()
    for scale in range(1, runs + 1):  # the demo grows: the plots get a trend to show
        click.echo(f"materializing the demo at scale {scale}", err=True)
        config = {"ops": {"demo_source_data": {"config": {"scale": scale}}}}
        assert job.execute_in_process(run_config=config, instance=instance).success


def _photograph(base: str, out: Path, chromium: str) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})

        def visit(path: str) -> None:
            page.goto(base + path)
            page.wait_for_load_state("networkidle")
            with contextlib.suppress(PlaywrightTimeout):  # the welcome dialog of a fresh browser profile
                page.get_by_role("button", name="Skip").first.click(timeout=8000)
            page.wait_for_timeout(1500)

        visit("/asset-groups")
        for group in ("demo_sources", "demo"):  # expand both groups in the graph
            page.get_by_text(group, exact=True).last.dblclick()
            page.wait_for_timeout(1000)
        page.mouse.move(1000, 500)  # zoom out until the whole graph fits
        page.keyboard.down("Control")
        for _ in range(2):
            page.mouse.wheel(0, 100)
            page.wait_for_timeout(300)
        page.keyboard.up("Control")
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out / "ui-asset-graph.png"))

        visit("/assets/public/mv_user_activity")
        page.screenshot(path=str(out / "ui-asset-overview.png"))
        page.get_by_role("button", name="Plots").first.click()
        page.wait_for_timeout(2500)
        page.get_by_text("Metadata", exact=True).first.scroll_into_view_if_needed()
        page.mouse.wheel(0, 450)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(out / "ui-asset-plots.png"))
        page.set_viewport_size({"width": 1600, "height": 1500})  # what each refresh cost, whom it blocked
        page.get_by_text("buffers_hit", exact=True).first.scroll_into_view_if_needed()
        page.mouse.wheel(0, 450)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out / "ui-refresh-costs.png"))
        page.set_viewport_size({"width": 1600, "height": 1000})

        visit("/assets/public/mv_user_accounts_events")  # columns from three tables
        page.get_by_placeholder("Filter metadata keys").first.fill("column_lineage")
        page.wait_for_timeout(1000)
        page.get_by_text("Metadata", exact=True).first.scroll_into_view_if_needed()
        page.mouse.wheel(0, 300)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(out / "ui-column-lineage.png"))
        browser.close()


@click.command()
@click.option("--runs", type=click.IntRange(min=2), default=6, show_default=True, help="Materializations of the demo.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=ROOT / "docs" / "images")
def main(runs: int, out: Path) -> None:
    """Materialize the demo ``runs`` times, then photograph the asset graph and one asset's page."""
    chromium = _chromium()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="matviews-ui-"))
    home = work / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with server(None) as dsn:
        os.environ.pop("DATABASE_URL", None)
        os.environ.update(MATVIEWS_DSN=dsn, DAGSTER_HOME=str(home))
        _materialize_demo(runs)
        port = _free_port()
        bin_dir = Path(sys.executable).parent
        with open(work / "webserver.log", "w") as log:
            webserver = subprocess.Popen(
                [str(bin_dir / "dagster-webserver"), "-f", "definitions.py", "-h", "127.0.0.1", "-p", str(port)],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                _wait_for(f"http://127.0.0.1:{port}/server_info", 120)
                _photograph(f"http://127.0.0.1:{port}", out, chromium)
            finally:
                webserver.terminate()
                webserver.wait(30)
    shutil.rmtree(work, ignore_errors=True)
    click.echo(f"wrote {', '.join(str(out / name) for name in PAGES)}", err=True)


if __name__ == "__main__":
    sys.exit(main())
