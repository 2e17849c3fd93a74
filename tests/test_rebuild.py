"""Definition changes without loss: a rebuild (apply, forced create, swap) keeps owner, table and
column grants, comments, indexes and the views built on the view, or changes nothing."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from conftest import scalar
from psycopg import sql

from matviews_dagster import MatViewDefinition, MatViews
from matviews_dagster.core.health_checks import run_checks

BASE = MatViewDefinition(
    name="mv_users",
    sql="SELECT id, email, plan FROM users",
    refresh_strategy="swap",
    unique_index_columns=["id"],
)
RELATIONS = ("mv_users", "v_pro", "mv_pro_count", "v_pro_emails")


def snapshot(db: psycopg.Connection, relation: str) -> dict[str, object]:
    """What the catalog holds about a relation, independent of its OID."""
    oid = scalar(db, "SELECT %s::regclass::oid", (relation,))
    rows = lambda query: db.execute(query, {"oid": oid}).fetchall()  # noqa: E731
    return {
        "kind": scalar(db, "SELECT relkind FROM pg_class WHERE oid = %s", (oid,)),
        "owner": scalar(db, "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = %s", (oid,)),
        "relacl": rows(
            "SELECT a.grantee::regrole::text, a.privilege_type, a.is_grantable, a.grantor::regrole::text "
            "FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a "
            "WHERE c.oid = %(oid)s ORDER BY 1, 2, 4"
        ),
        "attacl": rows(
            "SELECT t.attname, a.grantee::regrole::text, a.privilege_type, a.is_grantable, a.grantor::regrole::text "
            "FROM pg_attribute t, aclexplode(t.attacl) a WHERE t.attrelid = %(oid)s ORDER BY 1, 2, 3, 5"
        ),
        "column_settings": rows(
            "SELECT attname, attstattarget, attstorage FROM pg_attribute WHERE attrelid = %(oid)s AND attnum > 0 "
            "ORDER BY attnum"
        ),
        "index_comments": rows(
            "SELECT c.relname, obj_description(c.oid, 'pg_class'), i.indisclustered FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %(oid)s ORDER BY 1"
        ),
        "statistics": rows("SELECT stxname, stxkeys::text FROM pg_statistic_ext WHERE stxrelid = %(oid)s ORDER BY 1"),
        "comments": rows(
            "SELECT objsubid, description FROM pg_description WHERE objoid = %(oid)s "
            "AND classoid = 'pg_class'::regclass ORDER BY 1"
        ),
        "indexes": db.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s ORDER BY 1", (relation,)
        ).fetchall(),
        "reads": rows(
            "SELECT DISTINCT d.refobjid::regclass::text FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid "
            "WHERE r.ev_class = %(oid)s AND d.refobjid <> %(oid)s AND d.refclassid = 'pg_class'::regclass ORDER BY 1"
        ),
        "options": scalar(db, "SELECT reloptions FROM pg_class WHERE oid = %s", (oid,)),
        "populated": scalar(db, "SELECT relispopulated FROM pg_class WHERE oid = %s", (oid,)),
        "triggers": rows("SELECT tgname FROM pg_trigger WHERE tgrelid = %(oid)s AND NOT tgisinternal ORDER BY 1"),
    }


def snapshots(db: psycopg.Connection) -> dict[str, dict[str, object]]:
    return {relation: snapshot(db, relation) for relation in RELATIONS}


def leftovers(db: psycopg.Connection) -> list[str]:
    return [r[0] for r in db.execute("SELECT relname FROM pg_class WHERE relname ~ '_mv(new|old|lock|probe)_'")]


@pytest.fixture
def roles(db: psycopg.Connection) -> Iterator[dict[str, str]]:
    suffix = uuid.uuid4().hex[:8]
    names = {"owner": f"mv_owner_{suffix}", "reader": f"mv_reader_{suffix}", "analyst": f"mv_analyst_{suffix}"}
    for name in names.values():
        db.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(name)))
    db.execute(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(sql.Identifier(names["owner"])))
    db.execute(
        sql.SQL("GRANT SELECT ON users TO {}").format(sql.Identifier(names["owner"]))
    )  # queries run as the owner
    yield names
    db.execute("DROP VIEW IF EXISTS v_pro_emails, v_pro CASCADE")
    db.execute("DROP MATERIALIZED VIEW IF EXISTS mv_users CASCADE")
    for name in names.values():
        db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@pytest.fixture
def decorated(make_mv, db, users, roles) -> dict[str, str]:
    """mv_users with a non-default owner, table and column grants, comments, an index of its own,
    and views built on it two deep, each with its own owner, grants, comments, options, indexes
    and a trigger."""
    owner, reader, analyst = (sql.Identifier(roles[k]) for k in ("owner", "reader", "analyst"))
    assert make_mv(BASE).create("mv_users").ok
    statements = [
        sql.SQL("ALTER MATERIALIZED VIEW mv_users OWNER TO {}").format(owner),
        sql.SQL("GRANT SELECT ON mv_users TO {} WITH GRANT OPTION").format(reader),
        sql.SQL("GRANT SELECT (id, email) ON mv_users TO {}").format(analyst),
        sql.SQL("SET ROLE {}").format(reader),  # a grant by a role holding the grant option, not the owner
        sql.SQL("GRANT SELECT ON mv_users TO {}").format(analyst),
        sql.SQL("RESET ROLE"),
        sql.SQL("COMMENT ON MATERIALIZED VIEW mv_users IS 'users for reporting'"),
        sql.SQL("COMMENT ON COLUMN mv_users.email IS 'primary email'"),
        sql.SQL("CREATE INDEX mv_users_lower_email ON mv_users (lower(email)) WHERE plan = 'pro'"),
        sql.SQL("COMMENT ON INDEX mv_users_lower_email IS 'pro emails'"),
        sql.SQL("ALTER MATERIALIZED VIEW mv_users SET (fillfactor = 70, autovacuum_enabled = false)"),
        sql.SQL("ALTER MATERIALIZED VIEW mv_users ALTER COLUMN email SET STATISTICS 500"),
        sql.SQL("ALTER MATERIALIZED VIEW mv_users ALTER COLUMN email SET STORAGE EXTERNAL"),
        sql.SQL("CREATE STATISTICS mv_users_plan_email ON plan, email FROM mv_users"),
        sql.SQL("ALTER MATERIALIZED VIEW mv_users CLUSTER ON mv_users_id_idx"),
        sql.SQL("CREATE VIEW v_pro WITH (security_barrier) AS SELECT id, email FROM mv_users WHERE plan = 'pro'"),
        sql.SQL("ALTER VIEW v_pro OWNER TO {}").format(owner),
        sql.SQL("GRANT SELECT ON v_pro TO {}").format(reader),
        sql.SQL("GRANT SELECT (email) ON v_pro TO {}").format(analyst),
        sql.SQL("COMMENT ON VIEW v_pro IS 'pro users'"),
        sql.SQL("CREATE MATERIALIZED VIEW mv_pro_count AS SELECT count(*) AS n FROM v_pro"),
        sql.SQL("CREATE UNIQUE INDEX mv_pro_count_n ON mv_pro_count (n)"),
        sql.SQL("GRANT SELECT ON mv_pro_count TO {}").format(reader),
        sql.SQL("COMMENT ON COLUMN mv_pro_count.n IS 'how many'"),
        sql.SQL("CREATE VIEW v_pro_emails AS SELECT email FROM v_pro"),
        sql.SQL("CREATE FUNCTION v_pro_emails_noop() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'"),
        sql.SQL(
            "CREATE TRIGGER v_pro_emails_insert INSTEAD OF INSERT ON v_pro_emails "
            "FOR EACH ROW EXECUTE FUNCTION v_pro_emails_noop()"
        ),
    ]
    for statement in statements:
        db.execute(statement)
    return roles


def test_forced_create_keeps_owner_grants_comments_indexes_and_dependents(make_mv, db, decorated) -> None:
    before = snapshots(db)
    result = make_mv(BASE).create("mv_users", force=True)
    assert result.status == "success", result
    assert snapshots(db) == before
    assert leftovers(db) == []


def test_swap_refresh_keeps_column_grants_and_dependents(make_mv, db, users, decorated) -> None:
    before = snapshots(db)
    users(40)
    result = make_mv(BASE).refresh("mv_users")
    assert result.status == "success", result
    assert snapshots(db) == before
    assert scalar(db, "SELECT n FROM mv_pro_count") == scalar(db, "SELECT count(*) FROM users WHERE plan = 'pro'")


def test_a_new_query_is_applied_and_nothing_is_lost(make_mv, db, decorated) -> None:
    before = snapshots(db)
    changed = BASE.model_copy(update={"sql": "SELECT id, email, plan, length(email) AS email_length FROM users"})
    mv = make_mv(changed)
    result = mv.refresh("mv_users")
    assert result.status == "success", result
    assert result.created is not None and result.created.outcome == "updated"
    assert scalar(db, "SELECT max(email_length) FROM mv_users") > 0
    after = snapshots(db)
    assert {k: v for k, v in after.items() if k != "mv_users"} == {k: v for k, v in before.items() if k != "mv_users"}
    kept = dict(
        after["mv_users"], column_settings=[c for c in after["mv_users"]["column_settings"] if c[0] != "email_length"]
    )
    assert kept == before["mv_users"]  # the new column aside
    change = mv.history(kind="create", limit=1)[0]["meta"]["change"]
    added = [line for line in change["diff"].splitlines() if line.startswith("+") and "email_length" in line]
    assert added and change["action"] == "change", change  # PostgreSQL 15 writes users.email, 18 email
    assert mv.refresh("mv_users").created is None, "applied once: the next refresh is a refresh"


def test_a_dependent_that_needs_a_removed_column_rolls_everything_back(make_mv, db, decorated) -> None:
    before = snapshots(db)
    oid = scalar(db, "SELECT 'mv_users'::regclass::oid")
    without_email = BASE.model_copy(update={"sql": "SELECT id, plan FROM users"})
    result = make_mv(without_email).refresh("mv_users")
    assert result.status == "failed"
    assert "public.v_pro (view) is built on the view and could not be recreated" in result.error
    assert re.search(r'column ("email"|mv_users\.email) does not exist', result.error), result.error  # 18 | 15
    assert "nothing was changed" in result.error
    assert "cascade=True" in result.hint
    assert snapshots(db) == before
    assert scalar(db, "SELECT 'mv_users'::regclass::oid") == oid
    assert leftovers(db) == []


def test_a_function_body_that_reads_the_view_is_named_and_nothing_changes(make_mv, db, users) -> None:
    assert make_mv(BASE).create("mv_users").ok
    db.execute(
        "CREATE FUNCTION pro_count() RETURNS bigint LANGUAGE sql BEGIN ATOMIC SELECT count(*) FROM mv_users; END"
    )
    oid = scalar(db, "SELECT 'mv_users'::regclass::oid")
    result = make_mv(BASE).create("mv_users", force=True)
    assert result.status == "failed"
    assert "function public.pro_count() depends on it" in result.error and "nothing was changed" in result.error
    assert scalar(db, "SELECT 'mv_users'::regclass::oid") == oid
    assert scalar(db, "SELECT pro_count()") == 10


def test_a_declared_index_is_checked_then_created_by_the_next_materialization(make_mv, db, users) -> None:
    assert make_mv(BASE).create("mv_users").ok
    indexed = BASE.model_copy(update={"indexes": [["plan"]]})
    mv = make_mv(indexed)
    with mv.connect() as conn:
        (outcome,) = run_checks(conn, indexed, ["definition_matches"])
    assert not outcome.passed and "add index (plan)" in outcome.description
    oid = scalar(db, "SELECT 'mv_users'::regclass::oid")
    result = mv.refresh("mv_users")
    assert result.status == "success", result
    assert scalar(db, "SELECT 'mv_users'::regclass::oid") != oid  # a swap view's refresh rebuilt it
    indexes = [r[0] for r in db.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'mv_users' ORDER BY 1")]
    assert any(index.endswith("USING btree (plan)") for index in indexes), indexes
    with mv.connect() as conn:
        assert run_checks(conn, indexed, ["definition_matches"])[0].passed


def test_an_index_the_definition_no_longer_declares_is_dropped_others_are_kept(make_mv, db, users) -> None:
    indexed = MatViewDefinition.model_validate(
        {**BASE.model_dump(), "indexes": [["plan"], ["email"]], "refresh_strategy": "regular"}
    )
    assert make_mv(indexed).create("mv_users").ok
    db.execute("CREATE INDEX mine ON mv_users (plan, id)")
    fewer = indexed.model_copy(update={"indexes": [["plan"]]})
    result = make_mv(fewer).refresh("mv_users")
    assert result.status == "success", result
    names = [r[0] for r in db.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'mv_users' ORDER BY 1")]
    assert names == ["mine", "mv_users_id_idx", "mv_users_plan_idx"]
    assert result.created is not None and result.created.outcome == "updated"


@pytest.mark.parametrize("policy", ["warn", "fail"])
def test_warn_refreshes_the_deployed_query_and_fail_refreshes_nothing(make_mv, db, users, policy) -> None:
    assert make_mv(BASE).create("mv_users").ok
    users(20)
    changed = BASE.model_copy(update={"sql": "SELECT id, email FROM users", "on_definition_change": policy})
    result = make_mv(changed).refresh("mv_users")
    columns = [r[0] for r in db.execute("SELECT attname FROM pg_attribute WHERE attrelid = 'mv_users'::regclass")]
    assert "plan" in columns, "the change was not applied"
    if policy == "warn":
        assert result.status == "success", result
        assert any("was not applied (on_definition_change: warn)" in w for w in result.warnings)
        assert scalar(db, "SELECT count(*) FROM mv_users") == 20
    else:
        assert result.status == "failed"
        assert (
            "differs from its definition (query changed (removed plan)) and on_definition_change is fail"
            in result.error
        )
        assert "apply_many()" in result.hint
        assert scalar(db, "SELECT count(*) FROM mv_users") == 10


def test_a_dependent_is_refreshed_as_its_owner_not_as_the_rebuilding_role(make_mv, db, users, roles) -> None:
    """A role that may only read the view must not gain the rebuilding role's rights through a
    materialized view of its own built on it (its query runs again when it is recreated)."""
    intruder = roles["reader"]
    assert make_mv(BASE).create("mv_users").ok
    db.execute(sql.SQL("ALTER ROLE {} LOGIN").format(sql.Identifier(intruder)))
    db.execute(sql.SQL("GRANT SELECT ON mv_users TO {}").format(sql.Identifier(intruder)))
    db.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(*[sql.Identifier(intruder)] * 2))
    body = (
        f"BEGIN IF current_user <> '{intruder}' THEN EXECUTE 'ALTER ROLE {intruder} SUPERUSER'; END IF; RETURN id; END"
    )
    db.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(intruder)))
    db.execute(
        sql.SQL("CREATE FUNCTION {}.f(id int) RETURNS int LANGUAGE plpgsql AS {}").format(
            sql.Identifier(intruder), sql.Literal(body)
        )
    )
    db.execute(
        sql.SQL("CREATE MATERIALIZED VIEW {}.m AS SELECT {}.f(id) AS id FROM public.mv_users").format(
            *[sql.Identifier(intruder)] * 2
        )
    )
    db.execute("RESET ROLE")
    result = make_mv(BASE).refresh("mv_users")  # a swap: the dependent is recreated
    assert result.status == "success", result
    assert scalar(db, "SELECT rolsuper FROM pg_roles WHERE rolname = %s", (intruder,)) is False
    assert scalar(db, sql.SQL("SELECT count(*) FROM {}.m").format(sql.Identifier(intruder))) == 10
    db.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(intruder)))


def test_readers_of_a_dependent_view_wait_and_are_never_deadlocked(make_mv, db, dsn, users) -> None:
    import threading

    assert make_mv(BASE).create("mv_users").ok
    db.execute("CREATE VIEW v_pro AS SELECT id, email FROM mv_users WHERE plan = 'pro'")
    errors: list[str] = []
    stop = threading.Event()

    def read() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not stop.is_set():
                try:
                    with conn.transaction():  # locks v_pro, then mv_users: the order a rebuild takes
                        conn.execute("SELECT count(*) FROM v_pro").fetchone()
                        conn.execute("SELECT pg_sleep(0.005)")
                except psycopg.Error as exc:
                    errors.append(str(exc))

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        results = [make_mv(BASE).refresh("mv_users") for _ in range(6)]
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert [r.status for r in results] == ["success"] * 6, [r.error for r in results]
    assert errors == []


def test_a_function_returning_the_views_rows_is_named_and_nothing_changes(make_mv, db, users) -> None:
    assert make_mv(BASE).create("mv_users").ok
    db.execute("CREATE FUNCTION all_users() RETURNS SETOF mv_users LANGUAGE sql AS 'SELECT * FROM mv_users'")
    oid = scalar(db, "SELECT 'mv_users'::regclass::oid")
    for result in (make_mv(BASE).refresh("mv_users"), make_mv(BASE).create("mv_users", force=True)):
        assert result.status == "failed"
        assert "function public.all_users() depends on it" in result.error, result.error
    assert scalar(db, "SELECT 'mv_users'::regclass::oid") == oid and leftovers(db) == []
    deleted = make_mv(BASE).delete("mv_users")
    assert deleted.status == "failed" and "all_users" in deleted.error and "cascade=True" in deleted.hint
    assert scalar(db, "SELECT count(*) FROM all_users()") == 10


def test_comparing_needs_no_create_on_the_schema(make_mv, db, dsn, users, roles) -> None:
    owner = roles["owner"]
    assert (
        make_mv(MatViewDefinition.model_validate({**BASE.model_dump(), "refresh_strategy": "regular"}))
        .create("mv_users")
        .ok
    )
    db.execute(sql.SQL("ALTER MATERIALIZED VIEW mv_users OWNER TO {}").format(sql.Identifier(owner)))
    db.execute(sql.SQL("ALTER ROLE {} LOGIN").format(sql.Identifier(owner)))
    db.execute(sql.SQL("REVOKE CREATE ON SCHEMA public FROM {}, PUBLIC").format(sql.Identifier(owner)))
    db.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(owner)))
    db.execute(sql.SQL("GRANT SELECT ON users TO {}").format(sql.Identifier(owner)))
    make_mv(BASE).migrate()
    db.execute(sql.SQL("GRANT ALL ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(owner)))
    db.execute(sql.SQL("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {}").format(sql.Identifier(owner)))
    db.execute("UPDATE mat_view_definitions SET applied = '{}'")  # as after an upgrade: nothing recorded
    regular = MatViewDefinition.model_validate({**BASE.model_dump(), "refresh_strategy": "regular"})
    as_owner = psycopg.conninfo.make_conninfo(dsn, user=owner)
    with MatViews(as_owner, [regular]) as mv:
        assert [p.action for p in mv.plan()] == ["unchanged"]
        assert mv.refresh("mv_users").status == "success"


def test_a_definition_that_does_not_compile_fails_its_view_alone(make_mv, db, users) -> None:
    other = MatViewDefinition(name="mv_ids", sql="SELECT id FROM users")
    assert all(result.ok for result in make_mv(BASE, other).create_many())  # both, not the first to finish
    broken = BASE.model_copy(update={"sql": "SELECT id, nosuchcol FROM users"})
    mv = make_mv(broken, other)
    mv.create("mv_ids")
    results = {r.view: r for r in mv.refresh_many()}
    assert results["public.mv_ids"].status == "success"
    failed = results["public.mv_users"]
    assert failed.status == "failed" and failed.run_id is not None
    assert "the definition of public.mv_users does not compile" in failed.error and "nosuchcol" in failed.error
    plans = {p.view: p for p in mv.plan()}
    assert plans["public.mv_users"].action == "error" and plans["public.mv_ids"].action == "unchanged"


def test_a_view_and_a_defined_view_built_on_it_change_together(make_mv, db, users) -> None:
    base = MatViewDefinition(name="mv_base", sql="SELECT id, email, plan FROM users")
    child = MatViewDefinition(name="mv_child", sql="SELECT email, count(*) AS n FROM mv_base GROUP BY email")
    mv = make_mv(base, child)
    assert all(r.ok for r in mv.create_many())
    db.execute("CREATE INDEX mv_child_n ON mv_child (n)")
    new_base = base.model_copy(update={"sql": "SELECT id, plan FROM users"})
    new_child = child.model_copy(update={"sql": "SELECT plan, count(*) AS n FROM mv_base GROUP BY plan"})
    results = list(make_mv(new_base, new_child).apply_many())
    assert [r.status for r in results] == ["success", "success"], [r.error for r in results]
    expected = db.execute("SELECT plan, count(*) FROM users GROUP BY plan ORDER BY 1").fetchall()
    assert db.execute("SELECT plan, n FROM mv_child ORDER BY 1").fetchall() == expected
    assert [r[0] for r in db.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'mv_child'")] == ["mv_child_n"]
    assert [p.action for p in make_mv(new_base, new_child).plan()] == ["unchanged", "unchanged"]
