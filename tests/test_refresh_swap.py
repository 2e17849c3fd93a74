"""Swap refresh: new copy, indexes/grants/comments/owner carried over, failures leave the original."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest
from conftest import scalar
from psycopg import sql

from matviews_dagster import MatViewDefinition
from matviews_dagster.core.names import QualifiedName
from matviews_dagster.core.services.swap import swap_names

SWAP = MatViewDefinition(
    name="mv_users",
    sql="SELECT id, email, plan FROM users",
    refresh_strategy="swap",
    unique_index_columns=["id"],
    indexes=[["plan"]],
)


def catalog_snapshot(db: psycopg.Connection, view: str = "mv_users") -> dict[str, object]:
    """What readers and admins see of the view, independent of its OID."""
    return {
        "indexes": db.execute(
            "SELECT indexname, regexp_replace(indexdef, 'INDEX \\S+ ', 'INDEX ') FROM pg_indexes "
            "WHERE tablename = %s ORDER BY 1",
            (view,),
        ).fetchall(),
        "acl": db.execute(
            "SELECT a.grantee::regrole::text, a.privilege_type, a.is_grantable FROM pg_class c, "
            "aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a "
            "WHERE c.relname = %s ORDER BY 1, 2",
            (view,),
        ).fetchall(),
        "owner": scalar(db, "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = %s", (view,)),
        "comment": scalar(db, "SELECT obj_description(%s::regclass, 'pg_class')", (view,)),
        "column_comments": db.execute(
            "SELECT attname, col_description(attrelid, attnum) FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 ORDER BY attnum",
            (view,),
        ).fetchall(),
    }


def leftovers(db: psycopg.Connection) -> list[str]:
    rows = db.execute(
        "SELECT relname FROM pg_class WHERE relname LIKE '%%mvnew%%' OR relname LIKE '%%mvold%%'"
    ).fetchall()
    return [row[0] for row in rows]


@pytest.fixture
def decorated(make_mv, db, users):
    """A created swap view with extra index, grants, comments and a non-default owner (roles
    named for this test: roles are the server's, shared by the tests other workers run)."""
    suffix = uuid.uuid4().hex[:8]
    reader, owner = (sql.Identifier(f"mv_{role}_{suffix}") for role in ("reader", "owner"))
    make_mv(SWAP).create("mv_users")
    db.execute(sql.SQL("CREATE ROLE {}").format(reader))
    db.execute(sql.SQL("CREATE ROLE {}").format(owner))
    db.execute(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(owner))
    db.execute(sql.SQL("GRANT SELECT ON users TO {}").format(owner))  # a refresh runs the query as the owner
    db.execute("CREATE INDEX mv_users_email_lower ON mv_users (lower(email)) WHERE plan = 'pro'")
    db.execute(sql.SQL("ALTER MATERIALIZED VIEW mv_users OWNER TO {}").format(owner))
    db.execute(sql.SQL("GRANT SELECT ON mv_users TO {} WITH GRANT OPTION").format(reader))
    db.execute("GRANT SELECT ON mv_users TO PUBLIC")
    db.execute("COMMENT ON MATERIALIZED VIEW mv_users IS 'users for reporting'")
    db.execute("COMMENT ON COLUMN mv_users.email IS 'primary email'")
    yield
    db.execute("DROP MATERIALIZED VIEW IF EXISTS mv_users CASCADE")
    db.execute(sql.SQL("REVOKE ALL ON SCHEMA public FROM {}").format(owner))
    db.execute(sql.SQL("REVOKE ALL ON users FROM {}").format(owner))
    db.execute(sql.SQL("DROP ROLE {}").format(reader))
    db.execute(sql.SQL("DROP ROLE {}").format(owner))


def test_swap_replaces_data_and_keeps_everything_else(make_mv, db, users, decorated) -> None:
    before = catalog_snapshot(db)
    old_oid = scalar(db, "SELECT 'mv_users'::regclass::oid")
    users(40)
    result = make_mv(SWAP).refresh("mv_users", "estimated")
    assert result.status == "success", result
    assert result.rows_count == 40
    assert scalar(db, "SELECT count(*) FROM mv_users") == 40
    assert scalar(db, "SELECT 'mv_users'::regclass::oid") != old_oid
    after = catalog_snapshot(db)
    assert after == before
    assert len(after["indexes"]) == 3  # type: ignore[arg-type]
    assert leftovers(db) == []


def test_swap_with_failing_sql_leaves_the_original(make_mv, db, users, decorated) -> None:
    before = catalog_snapshot(db)
    broken = SWAP.model_copy(update={"sql": "SELECT id, email, plan, 1 / (id - id) AS boom FROM users"})
    result = make_mv(broken).refresh("mv_users")
    assert result.status == "failed" and "division by zero" in result.error
    assert catalog_snapshot(db) == before
    assert scalar(db, "SELECT count(*) FROM mv_users") == 10
    assert leftovers(db) == []


def test_swap_recreates_the_views_built_on_it_reading_the_new_data(make_mv, db, users) -> None:
    mv = make_mv(SWAP)
    mv.create("mv_users")
    db.execute("CREATE VIEW v_pro AS SELECT * FROM mv_users WHERE plan = 'pro'")
    db.execute("CREATE MATERIALIZED VIEW mv_pro_count AS SELECT count(*) AS n FROM v_pro")
    users(40)
    result = mv.refresh("mv_users")
    assert result.status == "success", result
    assert scalar(db, "SELECT count(*) FROM v_pro") == scalar(db, "SELECT count(*) FROM users WHERE plan = 'pro'")
    assert scalar(db, "SELECT n FROM mv_pro_count") == scalar(db, "SELECT count(*) FROM v_pro")
    reads = scalar(
        db,
        "SELECT count(*) FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid "
        "WHERE r.ev_class = 'v_pro'::regclass AND d.refobjid = 'mv_users'::regclass",
    )
    assert reads > 0  # the recreated view reads the new copy, not a dropped one
    row = mv.history(kind="refresh", limit=1)[0]
    assert row["meta"]["recreated_dependents"] == ["public.v_pro (view)", "public.mv_pro_count (materialized view)"]
    assert leftovers(db) == []


def test_swap_gives_up_on_a_held_lock_and_names_the_holder(make_mv, db, dsn, users) -> None:
    mv = make_mv(SWAP, lock_timeout=0.1, lock_retries=2)
    mv.create("mv_users")
    with psycopg.connect(dsn, application_name="long reader") as reader:
        reader.execute("SELECT count(*) FROM mv_users").fetchone()  # holds ACCESS SHARE until rollback
        result = mv.refresh("mv_users")
        reader.rollback()
    assert result.status == "failed"
    assert "2 attempts of 100 ms" in result.error and "'long reader'" in result.error
    assert scalar(db, "SELECT count(*) FROM mv_users") == 10
    assert leftovers(db) == []


def test_swap_waits_out_a_short_reader(make_mv, db, dsn, users) -> None:
    mv = make_mv(SWAP, lock_timeout=0.2, lock_retries=10)
    mv.create("mv_users")
    users(15)
    reader = psycopg.connect(dsn)
    reader.execute("SELECT count(*) FROM mv_users").fetchone()
    releaser = threading.Timer(0.5, reader.rollback)
    releaser.start()
    result = mv.refresh("mv_users")
    releaser.join()
    reader.close()
    assert result.status == "success"
    assert mv.history(kind="refresh", limit=1)[0]["meta"]["lock_attempts"] > 1
    assert scalar(db, "SELECT count(*) FROM mv_users") == 15


def test_leftovers_of_an_interrupted_swap_are_dropped_by_the_next_operation(make_mv, db, users) -> None:
    mv = make_mv(SWAP)
    mv.create("mv_users")
    new, backup = swap_names(QualifiedName("public", "mv_users"))
    db.execute(f'CREATE MATERIALIZED VIEW "{new.name}" AS SELECT 1 AS x')
    db.execute(f'CREATE MATERIALIZED VIEW "{backup.name}" AS SELECT 1 AS x')
    result = mv.refresh("mv_users", strategy="regular")
    assert result.status == "success"
    assert leftovers(db) == []
    meta = mv.history(kind="refresh", limit=1)[0]["meta"]
    assert sorted(meta["dropped_swap_leftovers"]) == sorted([str(new), str(backup)])


def test_temporary_names_fit_in_63_bytes(make_mv, db, users) -> None:
    long_name = "v" * 63
    definition = SWAP.model_copy(update={"name": f"public.{long_name}"})
    mv = make_mv(definition)
    mv.create(long_name)
    users(11)
    assert mv.refresh(long_name, "exact").rows_count == 11
    for name in swap_names(QualifiedName("public", long_name)):
        assert len(name.name.encode()) <= 63
    assert scalar(db, "SELECT count(*) FROM pg_class WHERE relname = %s", (long_name,)) == 1
    assert leftovers(db) == []


@pytest.mark.parametrize("strategy", ["regular", "swap"])
def test_a_view_left_with_no_data_is_refreshed_by_every_strategy_that_can(make_mv, db, users, strategy) -> None:
    """``REFRESH ... WITH NO DATA`` (by hand, or a restore) leaves a view unreadable; the next
    refresh fills it (``concurrent`` cannot, PostgreSQL refuses it on an unpopulated view)."""
    mv = make_mv(SWAP)
    mv.create("mv_users")
    db.execute("REFRESH MATERIALIZED VIEW mv_users WITH NO DATA")
    users(12)
    result = mv.refresh("mv_users", "exact", strategy=strategy)
    assert result.status == "success", result.error
    assert scalar(db, "SELECT relispopulated FROM pg_class WHERE relname = 'mv_users'") is True
    assert scalar(db, "SELECT count(*) FROM mv_users") == result.rows_count == 12


def test_swap_row_count_comes_from_the_build(make_mv, db, users) -> None:
    mv = make_mv(SWAP)
    mv.create("mv_users")
    users(33)
    result = mv.refresh("mv_users", "exact")
    assert result.rows_count == 33
    statements = mv.history(kind="refresh", limit=1)[0]["meta"]["sql"]
    assert not any("count(" in statement for statement in statements)


def test_an_index_whose_column_the_new_query_drops_is_named_and_not_recreated(make_mv, db, users) -> None:
    view = MatViewDefinition(name="mv_plans", sql="SELECT id, plan FROM users", refresh_strategy="swap")
    mv = make_mv(view)
    assert mv.create("mv_plans").ok
    db.execute("CREATE INDEX mv_plans_plan_idx ON mv_plans (plan)")
    db.execute("CREATE INDEX mv_plans_id_idx ON mv_plans (id)")
    changed = view.model_copy(update={"sql": "SELECT id FROM users"})
    result = make_mv(changed).refresh("mv_plans")
    assert result.status == "success", result
    assert result.created is not None and result.created.outcome == "updated"
    assert any(
        "index mv_plans_plan_idx not recreated" in w and 'column "plan" does not exist' in w
        for w in result.created.warnings
    ), result.created.warnings
    indexes = [r[0] for r in db.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'mv_plans'")]
    assert indexes == ["mv_plans_id_idx"]
    columns = db.execute("SELECT attname FROM pg_attribute WHERE attrelid = 'mv_plans'::regclass AND attnum > 0")
    assert [c[0] for c in columns] == ["id"]
