"""Refreshes of one view asked for while another runs: each waits for the view's lock; one that
another refresh, started after it was asked for, has made unnecessary records ``skipped`` with
that run's id. A refresh that started before the request never counts."""

from __future__ import annotations

import re
import threading
import time

import psycopg
import pytest
from conftest import scalar

from matviews_dagster import MatViewDefinition, MatViews
from matviews_dagster.core.result import OperationResult

SLEEP = 1.5
SLOW = MatViewDefinition(
    name="mv_slow", sql="SELECT u.id FROM users u CROSS JOIN (SELECT pg_sleep(s) FROM sleep_seconds) z"
)


def test_four_refreshes_asked_during_one_run_twice_not_five_times(dsn, db, users) -> None:
    db.execute("CREATE TABLE sleep_seconds AS SELECT 0::float AS s")
    with MatViews(dsn, [SLOW]) as mv:
        assert mv.create("mv_slow").ok
    db.execute("UPDATE sleep_seconds SET s = %s", (SLEEP,))
    results: dict[str, OperationResult] = {}

    def refresh(label: str) -> None:
        with MatViews(dsn, [SLOW]) as mv:
            results[label] = mv.refresh("mv_slow")

    started = time.monotonic()
    first = threading.Thread(target=refresh, args=("first",))
    first.start()
    while not scalar(db, "SELECT count(*) FROM mat_view_refresh_runs WHERE status = 'running'"):
        time.sleep(0.02)
    db.execute("INSERT INTO users VALUES (1001, 'late@example.com', 'pro')")  # committed after the first began
    later = [threading.Thread(target=refresh, args=(f"later {i}",)) for i in range(4)]
    for thread in later:
        thread.start()
    for thread in [first, *later]:
        thread.join(60)
    elapsed = time.monotonic() - started

    assert all(result.ok for result in results.values()), results
    refreshed = [label for label, result in results.items() if result.outcome == "updated"]
    skipped = {label: result for label, result in results.items() if result.outcome.startswith("skipped")}
    assert "first" in refreshed and len(refreshed) == 2 and len(skipped) == 3, results
    second = results[next(label for label in refreshed if label != "first")]
    for result in skipped.values():
        assert result.outcome == f"skipped (refreshed by run #{second.run_id}, which started after this request)"
        assert result.run_id is not None, "the skipped refresh has its run row"
    assert f"#{results['first'].run_id}," not in " ".join(r.outcome for r in skipped.values()), "never the earlier"
    assert scalar(db, "SELECT count(*) FROM mv_slow") == 11, "the late row is in: the second refresh saw it"
    assert elapsed < 3 * SLEEP + 2, f"two refreshes' time, not five: {elapsed:.1f} s"
    rows = db.execute(
        "SELECT meta ->> 'outcome', meta ->> 'refreshed_by_run' FROM mat_view_refresh_runs ORDER BY id"
    ).fetchall()
    assert sorted(row[0] for row in rows) == ["skipped"] * 3 + ["updated"] * 2
    assert {row[1] for row in rows if row[0] == "skipped"} == {str(second.run_id)}


def test_a_refresh_of_another_query_does_not_count(dsn, db, users) -> None:
    """A refresh that waited behind a refresh of a different definition of the view (another
    program's) runs its own."""
    db.execute("CREATE TABLE sleep_seconds AS SELECT 0::float AS s")
    other = SLOW.model_copy(update={"sql": SLOW.sql + " WHERE u.id > 0", "on_definition_change": "warn"})
    with MatViews(dsn, [SLOW]) as mv:
        assert mv.create("mv_slow").ok
    db.execute("UPDATE sleep_seconds SET s = %s", (SLEEP,))
    outcomes: dict[str, str] = {}

    def refresh(label: str, definition: MatViewDefinition) -> None:
        with MatViews(dsn, [definition]) as mv:
            outcomes[label] = mv.refresh("mv_slow").outcome

    holder = psycopg.connect(dsn, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s, hashtext('public.mv_slow'))", (0x4D56,))  # as an operation would
    waiting = threading.Thread(target=refresh, args=("waiting", SLOW))
    waiting.start()
    time.sleep(0.3)
    running = threading.Thread(target=refresh, args=("other", other))
    running.start()
    time.sleep(0.3)
    holder.close()  # the view's lock is free: whichever goes first, the other refreshes too
    for thread in (waiting, running):
        thread.join(60)
    assert not any(re.match(r"skipped", outcome) for outcome in outcomes.values()), outcomes


@pytest.mark.parametrize("between", ["delete", "rebuild"])
def test_a_refresh_never_skips_over_a_delete_or_rebuild_since(dsn, db, users, between) -> None:
    """Asked while a refresh runs, then a second refresh, then a delete or a rebuild to another
    query, then ours: the second refresh started after ours was asked, but it is not the last
    thing that happened to the view, so ours runs (and says the view is gone, or applies its
    definition)."""
    db.execute("CREATE TABLE sleep_seconds AS SELECT 0::float AS s")
    other = SLOW.model_copy(update={"sql": SLOW.sql + " WHERE u.id > 5"})
    with MatViews(dsn, [SLOW]) as mv:
        assert mv.create("mv_slow").ok
    db.execute("UPDATE sleep_seconds SET s = %s", (SLEEP,))
    results: dict[str, OperationResult] = {}

    def run(label: str) -> None:
        definition = other if label == "rebuild" else SLOW
        with MatViews(dsn, [definition]) as mv:
            results[label] = mv.delete("mv_slow") if label == "delete" else mv.refresh("mv_slow")

    threads = []
    for label in ("first", "second", between, "ours"):
        threads.append(threading.Thread(target=run, args=(label,)))
        threads[-1].start()
        time.sleep(0.4)  # each asks for the view's lock after the one before
    for thread in threads:
        thread.join(60)
    assert results["second"].outcome == "updated" and results[between].ok, results
    ours = results["ours"]
    assert not ours.outcome.startswith("skipped"), ours
    if between == "delete":
        assert ours.status == "failed" and "does not exist" in ours.error
    else:
        assert ours.ok and ours.created is not None, "the definition applied again"
        assert scalar(db, "SELECT count(*) FROM mv_slow") == 10
