"""The benchmark harness's own machinery (the full harness runs as a smoke run in .ci/run)."""

from __future__ import annotations

from pathlib import Path

import psycopg

from benchmarks.harness import Sample, Section, interleaved, ratio
from benchmarks.report import update_markdown
from benchmarks.roundtrips import counting


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


def test_results_replace_their_blocks_and_keep_the_prose(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text("# P\n\nprose before\n<!-- bench:tools -->\nold table\n<!-- /bench:tools -->\nprose after\n")
    sections = [Section("tools", "Tools", "| new | table \\d |"), Section("scale", "Scale", "scale table")]
    update_markdown(doc, sections, "measured today")
    text = doc.read_text()
    assert "old table" not in text
    assert "prose before" in text and "prose after" in text
    assert "<!-- bench:tools -->\n| new | table \\d |\n<!-- /bench:tools -->" in text
    assert "## Scale\n\n<!-- bench:scale -->\nscale table\n<!-- /bench:scale -->" in text
    assert "<!-- bench:meta -->\nmeasured today\n<!-- /bench:meta -->" in text


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
