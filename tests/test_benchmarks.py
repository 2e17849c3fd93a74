"""The benchmark harness's own machinery, and smoke runs of it against the real server: the results
file (``performance.json``) is the one source of performance.md's tables and of the chart."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from benchmarks import report
from benchmarks.__main__ import main
from benchmarks.harness import Sample, Section, interleaved, ratio
from benchmarks.results import Entry, Results, entry, load, save
from benchmarks.roundtrips import counting

ROOT = Path(__file__).resolve().parent.parent
BLOCKS = re.compile(r"<!-- bench:([\w-]+) -->\n(.*?)\n<!-- /bench:\1 -->", re.S)


def blocks(markdown: str) -> dict[str, str]:
    """``{key: body}`` of every ``<!-- bench:KEY -->`` block but the meta one."""
    return {key: body for key, body in BLOCKS.findall(markdown) if key != "meta"}


def stored(key: str, markdown: str, measured_at: str, data: dict[str, Any] | None = None) -> Entry:
    """An entry as a run would store it, measured at ``measured_at`` (ISO, UTC)."""
    section = Section(key, f"Title of {key}", markdown, data or {})
    item = entry(section, repeats=5, machine="2 cores", smoke=False, elapsed_s=3)
    item["measured_at"] = measured_at
    return item


def test_contenders_alternate_and_warm_ups_are_not_timed() -> None:
    calls: list[str] = []
    samples = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmups=1)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert {name: len(sample.values) for name, sample in samples.items()} == {"a": 3, "b": 3}


def test_a_sample_reports_median_min_max_and_ratios_of_medians() -> None:
    fast, slow = Sample((1.0, 2.0, 9.0)), Sample((4.0, 3.0, 5.0))
    assert (fast.median, fast.low, fast.high) == (2.0, 1.0, 9.0)
    assert fast.cell() == "2.0 (1.0-9.0)"
    assert ratio(slow, fast) == 2.0


def test_every_block_with_an_entry_is_rewritten_and_one_without_is_left_as_it_is(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text(
        "# P\n\nprose before\n<!-- bench:meta -->\nold meta\n<!-- /bench:meta -->\n"
        "<!-- bench:tools -->\nold table\n<!-- /bench:tools -->\nprose after\n"
        "<!-- bench:queue -->\nlegacy queue table\n<!-- /bench:queue -->\nthe end\n"
    )
    results: Results = {
        "tools": stored("tools", "| new | table \\d |", "2026-12-04T14:52:07+00:00"),
        "scale": stored("scale", "scale table", "2026-12-01T08:00:00+00:00"),
    }
    report.render_markdown(doc, results)
    text = doc.read_text()
    assert "old table" not in text and "old meta" not in text
    assert "prose before" in text and "prose after" in text and "the end" in text
    assert "<!-- bench:tools -->\n| new | table \\d |\n<!-- /bench:tools -->" in text
    assert "<!-- bench:queue -->\nlegacy queue table\n<!-- /bench:queue -->" in text  # no entry: untouched
    assert text.endswith("## Title of scale\n\n<!-- bench:scale -->\nscale table\n<!-- /bench:scale -->\n")
    meta = BLOCKS.search(text)
    assert meta is not None and meta.group(1) == "meta"
    assert "| `tools` | 2026-12-04 14:52 | 5 |" in meta.group(2)
    assert "| `scale` | 2026-12-01 08:00 | 5 |" in meta.group(2)
    assert "not measured until the suite runs again): `queue`." in meta.group(2)
    assert blocks(text) == {"tools": "| new | table \\d |", "queue": "legacy queue table", "scale": "scale table"}


def test_each_panel_says_when_it_was_measured_and_a_missing_suite_is_not_drawn(tmp_path: Path) -> None:
    tools = {"matviews refresh NAME": {"median": 200.0, "min": 190.0, "max": 230.0}}
    titles = report.chart(tmp_path / "one.png", {"tools": stored("tools", "t", "2026-12-04T23:59:00+00:00", tools)})
    assert titles[2] == "3. Against the alternatives\nmeasured 2026-12-04"
    assert [title for i, title in enumerate(titles) if i != 2] == [
        f"{panel.title}\nnot measured" for i, panel in enumerate(report.PANELS) if i != 2
    ]
    assert (tmp_path / "one.png").stat().st_size > 0
    assert all(title.endswith("not measured") for title in report.chart(tmp_path / "none.png", {}))


def test_a_panel_of_several_suites_shows_the_oldest_date_and_needs_all_of_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    both = report.Panel("0. Both", ("a", "b"), lambda ax, data: ax.plot([data["a"]["y"], data["b"]["y"]]) and "0. Both")
    monkeypatch.setattr(report, "PANELS", (both, *report.PANELS[1:]))
    a = stored("a", "a", "2026-12-04T10:00:00+00:00", {"y": 1})
    b = stored("b", "b", "2026-11-30T10:00:00+00:00", {"y": 2})
    assert report.chart(tmp_path / "c.png", {"a": a, "b": b})[0] == "0. Both\nmeasured 2026-11-30"
    assert report.chart(tmp_path / "c.png", {"a": a})[0] == "0. Both\nnot measured"


def test_the_results_file_round_trips_and_a_malformed_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "performance.json"
    assert load(path) == {}
    results: Results = {"tools": stored("tools", "| t |", "2026-12-04T14:52:07+00:00", {"x": [1.5, 2]})}
    save(path, results)
    assert load(path) == results
    path.write_text(json.dumps({"tools": {"data": {}, "markdown": "| t |"}}))
    with pytest.raises(ValueError, match="entry 'tools' lacks"):
        load(path)


def test_a_smoke_run_refuses_to_write_into_the_docs() -> None:
    done = CliRunner().invoke(main, ["--smoke", "--out", str(ROOT / "docs"), "--dsn", "postgresql://nowhere/x"])
    assert done.exit_code == 2
    assert "give it an --out other than docs/" in done.output


def test_redraw_regenerates_the_tables_and_the_chart_from_the_results_alone(tmp_path: Path) -> None:
    (tmp_path / "performance.md").write_text("# P\n<!-- bench:tools -->\nstale\n<!-- /bench:tools -->\n")
    save(tmp_path / "performance.json", {"tools": stored("tools", "| fresh |", "2026-12-04T14:52:07+00:00")})
    done = CliRunner().invoke(main, ["--redraw", "--out", str(tmp_path), "--dsn", "postgresql://nowhere/x"])
    assert done.exit_code == 0, done.output
    assert blocks((tmp_path / "performance.md").read_text()) == {"tools": "| fresh |"}
    assert (tmp_path / "performance.png").read_bytes().startswith(b"\x89PNG")


def test_round_trips_are_counted_on_a_real_server(dsn: str) -> None:
    with counting() as trips, psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT 1")
        with conn.transaction():
            conn.execute("SELECT 2")
    assert (trips.connections, trips.statements) == (1, 4)  # SELECT, BEGIN, SELECT, COMMIT
    assert trips.sent == ["SELECT 1", "BEGIN", "SELECT 2", "COMMIT"]
    with psycopg.connect(dsn) as conn:  # counting stopped with the block
        conn.execute("SELECT 3")
    assert trips.statements == 4


@dataclass(frozen=True)
class Written:
    """What a run left in its ``--out`` directory, and when it ran."""

    results: Results
    markdown: str
    png: bytes
    png_mtime_ns: int
    started: datetime
    finished: datetime


@dataclass(frozen=True)
class SmokeRuns:
    """A smoke run of three suites, then an ``--only tools`` run into the same directory."""

    first: Written
    second: Written
    docs_before: dict[str, str]
    docs_after: dict[str, str]


FIRST, SECOND = ("overhead", "tools", "strategies"), "tools"


def _docs_digests() -> dict[str, str]:
    names = ("performance.json", "performance.md", "performance.png")
    return {name: hashlib.sha256((ROOT / "docs" / name).read_bytes()).hexdigest() for name in names}


def _smoke(out: Path, only: str, server_dsn: str) -> Written:
    env = {k: v for k, v in os.environ.items() if k not in {"MATVIEWS_BENCH_DBT", "MATVIEWS_BENCH_DAGSTER_DBT"}}
    started = datetime.now(UTC).replace(microsecond=0)
    args = [sys.executable, "-m", "benchmarks", "--smoke", "--out", str(out), "--dsn", server_dsn, "--only", only]
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    png = out / "performance.png"
    return Written(
        json.loads((out / "performance.json").read_text()),
        (out / "performance.md").read_text(),
        png.read_bytes(),
        png.stat().st_mtime_ns,
        started,
        datetime.now(UTC),
    )


@pytest.fixture(scope="module")
def smoke_runs(server_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> SmokeRuns:
    out = tmp_path_factory.mktemp("bench-smoke")
    docs_before = _docs_digests()
    first = _smoke(out, ",".join(FIRST), server_dsn)
    second = _smoke(out, SECOND, server_dsn)
    return SmokeRuns(first, second, docs_before, _docs_digests())


def test_a_smoke_run_stores_an_entry_per_suite_it_ran(smoke_runs: SmokeRuns) -> None:
    first = smoke_runs.first
    assert list(first.results) == ["overhead", "tools", "strategies"]
    for key, item in first.results.items():
        assert item["data"], key
        assert item["markdown"].startswith("|") or "\n|" in item["markdown"], key
        when = datetime.fromisoformat(item["measured_at"])
        assert when.utcoffset() == timedelta(0), key
        assert first.started <= when <= first.finished, key
        assert (item["repeats"], item["smoke"]) == (1, True), key
        assert "cores" in item["machine"] and "PostgreSQL" in item["machine"], key
    assert [row["strategy"] for row in first.results["overhead"]["data"]["results"]][:3] == [
        "regular",
        "concurrent",
        "swap",
    ]


def test_every_generated_block_is_the_markdown_stored_in_the_results(smoke_runs: SmokeRuns) -> None:
    for written in (smoke_runs.first, smoke_runs.second):
        assert blocks(written.markdown) == {key: item["markdown"] for key, item in written.results.items()}
        assert "<!-- bench:meta -->" in written.markdown
        for key, item in written.results.items():  # the meta block dates each table from its entry
            when = datetime.fromisoformat(item["measured_at"])
            assert f"| `{key}` | {when:%Y-%m-%d %H:%M} | 1 (smoke run" in written.markdown


def test_a_partial_run_keeps_the_other_suites_and_redraws_the_whole_chart(smoke_runs: SmokeRuns) -> None:
    first, second = smoke_runs.first, smoke_runs.second
    assert list(second.results) == list(first.results)
    for key in set(FIRST) - {SECOND}:
        assert second.results[key] == first.results[key], key
        assert blocks(second.markdown)[key] == blocks(first.markdown)[key], key
    assert second.results[SECOND]["measured_at"] > first.results[SECOND]["measured_at"]
    assert second.started <= datetime.fromisoformat(second.results[SECOND]["measured_at"])
    assert second.png_mtime_ns > first.png_mtime_ns
    assert second.png != first.png


def test_the_chart_is_the_whole_results_file_drawn_again(smoke_runs: SmokeRuns, tmp_path: Path) -> None:
    results = smoke_runs.second.results
    redrawn = tmp_path / "redrawn.png"
    titles = report.chart(redrawn, results)
    assert redrawn.read_bytes() == smoke_runs.second.png  # Agg draws the same numbers to the same bytes
    expected = [
        f"measured {results[key]['measured_at'][:10]} (smoke run)" if key in results else "not measured"
        for key in ("overhead", "dagster", "tools", "strategies", "strategies", "scale")
    ]
    assert [title.splitlines()[-1] for title in titles] == expected
    assert expected.count("not measured") == 2  # dagster and scale were not run


def test_smoke_runs_leave_the_docs_results_alone(smoke_runs: SmokeRuns) -> None:
    assert smoke_runs.docs_after == smoke_runs.docs_before
