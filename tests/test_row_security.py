"""A view under row-level security holds what its owner may see, whoever refreshes it.

PostgreSQL's REFRESH runs the query as the view's owner. Every other statement that evaluates a
view's query on its behalf (a swap's new copy, a forced or applied rebuild, the dependents a
rebuild recreates, the concurrent refresh's check, ``validate``) must too, or a superuser's
refresh leaks every tenant's rows into a view its owner may read only one tenant of.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import scalar
from psycopg import sql
from psycopg.conninfo import make_conninfo
from test_cli import matviews

from matviews_dagster import MatViewDefinition, MatViews

TENANTS = 3
ROWS = 60  # 20 a tenant
VIEW = MatViewDefinition(name="mv_notes", sql="SELECT id, tenant, note FROM notes", unique_index_columns=["id"])


@pytest.fixture
def tenant(db: psycopg.Connection) -> Iterator[str]:
    """``notes`` under forced row-level security (a tenant sees its own rows), and a
    non-superuser tenant role that owns ``mv_notes`` (created by it: 20 of the 60 rows)."""
    role = f"tenant_{uuid.uuid4().hex[:8]}"
    others = ["tenant_b", "tenant_c"]
    db.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    db.execute("CREATE TABLE notes (id int PRIMARY KEY, tenant text NOT NULL, note text)")
    db.execute(
        "INSERT INTO notes SELECT g, (ARRAY[%s, %s, %s])[g %% 3 + 1], 'note ' || g FROM generate_series(1, %s) g",
        (role, *others, ROWS),
    )
    db.execute("ALTER TABLE notes ENABLE ROW LEVEL SECURITY")
    db.execute("ALTER TABLE notes FORCE ROW LEVEL SECURITY")
    db.execute("CREATE POLICY own_rows ON notes USING (tenant = current_user)")
    for grant in ("GRANT SELECT ON notes TO {}", "GRANT CREATE ON SCHEMA public TO {}"):
        db.execute(sql.SQL(grant).format(sql.Identifier(role)))
    with psycopg.connect(make_conninfo(db.info.dsn, user=role), autocommit=True) as conn:
        conn.execute("CREATE MATERIALIZED VIEW mv_notes AS SELECT id, tenant, note FROM notes")
        conn.execute("CREATE UNIQUE INDEX mv_notes_id_idx ON mv_notes (id)")
    assert scalar(db, "SELECT count(*) FROM mv_notes") == ROWS // TENANTS
    yield role
    db.execute("DROP TABLE notes CASCADE")
    db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def rows_by_tenant(db: psycopg.Connection, relation: str = "mv_notes") -> dict[str, int]:
    query = sql.SQL("SELECT tenant, count(*) FROM {} GROUP BY tenant").format(sql.Identifier(relation))
    return dict(db.execute(query).fetchall())


@pytest.mark.parametrize("strategy", ["regular", "concurrent", "swap"])
def test_a_superuser_refresh_holds_the_owners_rows_only(make_mv, db, tenant, strategy) -> None:
    db.execute("INSERT INTO notes VALUES (1001, %s, 'new'), (1002, 'tenant_b', 'new')", (tenant,))
    result = make_mv(VIEW).refresh("mv_notes", "exact", strategy=strategy)
    assert result.ok, result
    assert rows_by_tenant(db) == {tenant: 21}
    assert result.rows_count == 21
    owner = scalar(db, "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'mv_notes'")
    assert owner == tenant


def test_a_forced_create_and_an_applied_change_hold_the_owners_rows_only(make_mv, db, tenant) -> None:
    mv = make_mv(VIEW)
    assert mv.create("mv_notes", force=True).ok
    assert rows_by_tenant(db) == {tenant: 20}
    changed = VIEW.model_copy(update={"sql": "SELECT id, tenant, note, length(note) AS size FROM notes"})
    applied = list(make_mv(changed).apply_many())
    assert [r.outcome for r in applied] == ["updated"], applied
    assert rows_by_tenant(db) == {tenant: 20}
    assert scalar(db, "SELECT count(size) FROM mv_notes") == 20


def test_a_rebuilt_dependent_holds_its_owners_rows_only(make_mv, db, tenant) -> None:
    """A view built on the rebuilt one, reading the protected table too, is recreated and
    refreshed as its owner."""
    with psycopg.connect(make_conninfo(db.info.dsn, user=tenant), autocommit=True) as conn:
        conn.execute(
            "CREATE MATERIALIZED VIEW mv_joined AS SELECT m.id, n.tenant FROM mv_notes m JOIN notes n USING (id)"
        )
    assert make_mv(VIEW).refresh("mv_notes", strategy="swap").ok
    assert rows_by_tenant(db, "mv_joined") == {tenant: 20}


def test_the_concurrent_check_reads_the_query_as_the_owner(make_mv, db, tenant) -> None:
    """Rows with the same key and a NULL that only another tenant sees are no duplicate of the
    owner's view: the check must not roll the refresh back for them (as the connecting superuser
    it would), and it must still catch the owner's own."""
    view = MatViewDefinition(
        name="mv_codes",
        sql="SELECT code, note FROM codes",
        refresh_strategy="concurrent",
        unique_index_columns=["code"],
    )
    db.execute("CREATE TABLE codes (code text, note text, tenant text NOT NULL)")
    db.execute("INSERT INTO codes VALUES ('a1', NULL, %s), ('b1', NULL, 'tenant_b')", (tenant,))
    db.execute("ALTER TABLE codes ENABLE ROW LEVEL SECURITY")
    db.execute("ALTER TABLE codes FORCE ROW LEVEL SECURITY")
    db.execute("CREATE POLICY own_codes ON codes USING (tenant = current_user)")
    db.execute(sql.SQL("GRANT SELECT ON codes TO {}").format(sql.Identifier(tenant)))
    with psycopg.connect(make_conninfo(db.info.dsn, user=tenant), autocommit=True) as conn:
        conn.execute("CREATE MATERIALIZED VIEW mv_codes AS SELECT code, note FROM codes")
        conn.execute("CREATE UNIQUE INDEX mv_codes_code_idx ON mv_codes (code)")
    db.execute("INSERT INTO codes VALUES ('b1', NULL, 'tenant_b')")  # a duplicate only tenant_b sees
    mv = make_mv(view)
    result = mv.refresh("mv_codes")
    assert result.ok and not result.warnings, result
    assert scalar(db, "SELECT count(*) FROM mv_codes") == 1
    db.execute("INSERT INTO codes VALUES ('a1', NULL, %s)", (tenant,))  # the owner's own duplicate
    caught = mv.refresh("mv_codes")
    assert caught.status == "failed" and "2 rows with the same key (code) = ('a1')" in caught.error
    assert scalar(db, "SELECT count(*) FROM mv_codes") == 1


def test_validate_compares_the_view_with_what_its_owner_may_see(db, tenant, tmp_path: Path) -> None:
    (tmp_path / "matviews.yaml").write_text(
        "views:\n  - name: mv_notes\n    sql: SELECT id, tenant, note FROM notes\n    unique_index_columns: [id]\n"
    )
    done = matviews(tmp_path, db.info.dsn, "validate", "--iterations", "1", "--csv", str(tmp_path / "out.csv"))
    assert done.returncode == 0, done.stdout + done.stderr
    text = (tmp_path / "out.csv").read_text()
    assert ",20,20," in text and text.strip().endswith("True"), text
    db.execute("INSERT INTO notes VALUES (1001, %s, 'new')", (tenant,))
    stale = matviews(tmp_path, db.info.dsn, "validate", "--iterations", "1")
    assert stale.returncode == 1 and "mismatch: public.mv_notes" in stale.stderr, stale.stderr


def test_a_role_that_cannot_act_for_the_owner_is_refused_and_nothing_changes(make_mv, db, tenant) -> None:
    """A non-superuser operator that is a member of the owner role may rename the view, but the
    owner has no CREATE on the schema, so the new copy cannot be given to it: refused, with the
    grant or the strategy that works, and the view, its rows and its owner stay."""
    operator = f"operator_{uuid.uuid4().hex[:8]}"
    db.execute(sql.SQL("CREATE ROLE {} LOGIN BYPASSRLS").format(sql.Identifier(operator)))
    try:
        for grant in (
            sql.SQL("GRANT {} TO {}").format(sql.Identifier(tenant), sql.Identifier(operator)),
            sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(operator)),
            sql.SQL("GRANT ALL ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(operator)),
            sql.SQL("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {}").format(sql.Identifier(operator)),
            sql.SQL("REVOKE CREATE ON SCHEMA public FROM {}").format(sql.Identifier(tenant)),
        ):
            db.execute(grant)
        make_mv(VIEW).migrate()
        db.execute(sql.SQL("GRANT ALL ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(operator)))
        db.execute(sql.SQL("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {}").format(sql.Identifier(operator)))
        oid = scalar(db, "SELECT 'mv_notes'::regclass::oid")
        with MatViews(make_conninfo(db.info.dsn, user=operator), [VIEW]) as mv:
            swapped = mv.refresh("mv_notes", strategy="swap")
            forced = mv.create("mv_notes", force=True)
            in_place = mv.refresh("mv_notes", strategy="regular")
        for refused in (swapped, forced):
            assert refused.status == "failed"
            assert f"with the rights of its owner {tenant}" in refused.error, refused.error
            assert "nothing was changed" in refused.error
            assert f'GRANT CREATE ON SCHEMA "public" TO "{tenant}"' in refused.hint, refused.hint
        assert "strategy='regular'" in swapped.hint
        assert in_place.ok, "the way out the hint names works"
        assert scalar(db, "SELECT 'mv_notes'::regclass::oid") == oid
        assert rows_by_tenant(db) == {tenant: 20}
        assert scalar(db, "SELECT count(*) FROM pg_class WHERE relname ~ '^mv_notes_mv'") == 0
        statuses = db.execute("SELECT status FROM mat_view_refresh_runs ORDER BY id").fetchall()
        assert statuses == [("failed",), ("success",)]
    finally:
        db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(operator)))
        db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(operator)))


@pytest.mark.parametrize(
    "change",
    [
        "REVOKE {group} FROM {tenant}",
        "ALTER POLICY group_rows ON notes USING (false)",
        "ALTER TABLE notes NO FORCE ROW LEVEL SECURITY",
        "REVOKE SELECT ON notes FROM {tenant}",
    ],
)
def test_if_changed_never_skips_after_what_the_owner_may_see_changed(dsn, db, tenant, change) -> None:
    """No row was written, but the owner may now see other rows: ``--if-changed`` must refresh
    (and, where the owner may no longer read the table, fail saying so)."""
    from test_if_changed import counters

    group = f"group_{uuid.uuid4().hex[:8]}"
    db.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(group)))
    db.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(tenant)))
    db.execute(
        sql.SQL("CREATE POLICY group_rows ON notes USING (pg_has_role(current_user, {}, 'MEMBER') AND id <= 6)").format(
            sql.Literal(group)
        )
    )
    while not any(counters(db, "notes")):
        time.sleep(0.05)
    try:
        with MatViews(dsn, [VIEW]) as mv:
            (first,) = mv.refresh_many(if_changed=True)
            assert first.ok and first.outcome == "updated"
            assert scalar(db, "SELECT count(*) FROM mv_notes") == 24  # 20 of its own, 4 more through the group
            time.sleep(1.2)
            (quiet,) = mv.refresh_many(if_changed=True)
            assert quiet.outcome == "skipped (sources unchanged)", "nothing changed: skipped"
            db.execute(sql.SQL(change.format(group='"' + group + '"', tenant='"' + tenant + '"')))
            (again,) = mv.refresh_many(if_changed=True)
        assert again.outcome != "skipped (sources unchanged)", again
        if change.startswith("REVOKE SELECT"):
            assert again.status == "failed" and "permission denied for table notes" in again.error
        else:  # the table's owner is another role, so FORCE does not change what the tenant sees
            assert again.ok and scalar(db, "SELECT count(*) FROM mv_notes") == (24 if "FORCE" in change else 20)
    finally:
        db.execute("DROP POLICY IF EXISTS group_rows ON notes")
        db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(group)))
        db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(group)))
