"""The definitions cache: a validated file is not parsed again until it (or the code) changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from matviews_dagster import load_definitions
from matviews_dagster.core import definition_cache

YAML = """
search_path: [reporting, public]
views:
  - name: reporting.mv_daily
    sql: SELECT day, sum(amount) AS total FROM orders GROUP BY day -- one row per day
    refresh_strategy: concurrent
    unique_index_columns: [day]
  - name: reporting.mv_weekly
    sql: SELECT date_trunc('week', day) AS week, sum(total) AS total FROM mv_daily GROUP BY 1;
"""

PROBE = """
import sys
from matviews_dagster import ViewGraph, load_definitions
definitions = load_definitions(sys.argv[1])
graph = ViewGraph(definitions)
print([d.name for d in graph], graph.upstream("reporting.mv_weekly"), "pglast" in sys.modules, "yaml" in sys.modules)
"""


def probe(path: Path, **env: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)], env={**os.environ, **env}, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def entries() -> list[Path]:
    directory = definition_cache.cache_dir()
    assert directory is not None
    return sorted(directory.glob("definitions-*.json"))


def test_a_cached_file_loads_without_yaml_or_the_sql_parser(tmp_path) -> None:
    path = tmp_path / "matviews.yaml"
    path.write_text(YAML)
    first = probe(path)
    second = probe(path)
    expected = "['reporting.mv_daily', 'reporting.mv_weekly'] ('reporting.mv_daily',)"
    assert first == f"{expected} True True", "a miss parses the YAML and the SQL"
    assert second == f"{expected} False False", "a hit needs neither"
    assert load_definitions(path) == load_definitions(path)


def test_any_change_to_the_file_is_a_miss_and_bad_files_still_fail(tmp_path) -> None:
    path = tmp_path / "matviews.yaml"
    path.write_text(YAML)
    before = load_definitions(path)
    path.write_text(YAML.replace("refresh_strategy: concurrent", "refresh_strategy: swap"))
    after = load_definitions(path)
    assert [d.refresh_strategy for d in before] != [d.refresh_strategy for d in after]
    mine = [entry for entry in entries() if entry.read_text().count("reporting.mv_daily")]
    assert len(mine) >= 1
    path.write_text(YAML.replace("day, sum", "day,, sum"))
    with pytest.raises(ValueError, match="syntax error"):
        load_definitions(path)


def test_a_corrupt_entry_is_a_miss_and_the_cache_can_be_turned_off(tmp_path, monkeypatch) -> None:
    path = tmp_path / "matviews.yaml"
    path.write_text(YAML)
    load_definitions(path)
    entry = definition_cache._entry(path, path.read_bytes())
    assert entry is not None and entry.exists()
    entry.write_text("{not json")
    assert [d.name for d in load_definitions(path)] == ["reporting.mv_daily", "reporting.mv_weekly"]
    assert json.loads(entry.read_text())["views"][0]["fields"]["name"] == "reporting.mv_daily", "rewritten whole"
    monkeypatch.setenv("MATVIEWS_CACHE", "off")
    assert definition_cache.cache_dir() is None
    assert probe(path, MATVIEWS_CACHE="off").endswith("True True")


def test_the_key_covers_the_validation_code(tmp_path) -> None:
    """Editing the validating modules (an editable install, a new release) changes the key."""
    path = tmp_path / "matviews.yaml"
    path.write_text(YAML)
    key = definition_cache._entry(path, path.read_bytes())
    definition_cache._fingerprint.cache_clear()
    module = Path(definition_cache.__file__).with_name("analysis.py")
    stat = module.stat()
    try:
        os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        assert definition_cache._entry(path, path.read_bytes()) != key
    finally:
        os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        definition_cache._fingerprint.cache_clear()


def test_a_hit_gives_the_same_definitions_nested_settings_included(tmp_path) -> None:
    path = tmp_path / "matviews.yaml"
    path.write_text(
        YAML
        + "    automation: {on_cron: '0 3 * * *'}\n"
        + "    freshness: {warn_after: 1h, fail_after: 6h}\n"
        + "  - name: reporting.mv_eager\n    sql: SELECT 1 AS x\n    automation: eager\n"
    )
    missed = load_definitions(path)
    hit = load_definitions(path)
    assert hit == missed
    assert [(type(d.refresh_strategy), type(d.row_count_strategy)) for d in hit] == [
        (type(d.refresh_strategy), type(d.row_count_strategy)) for d in missed
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a field of the wrong type warns when serialized
        assert [d.stored_fields() for d in hit] == [d.stored_fields() for d in missed]
    weekly = next(d for d in hit if d.name == "reporting.mv_weekly")
    assert weekly.automation is not None and weekly.automation.on_cron == "0 3 * * *"
    assert weekly.freshness is not None and weekly.freshness.fail_after_seconds == 6 * 3600
