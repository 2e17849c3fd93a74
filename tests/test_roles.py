"""Least privilege: an owner role does everything, MAINTAIN (PostgreSQL 17+) refreshes in place,
a role without privileges gets a clear error and a failed run row, and the run tables may live
in a schema only the operator can create objects in."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from conftest import scalar
from psycopg import sql
from psycopg.conninfo import make_conninfo

from matviews_dagster import MatViewDefinition, MatViews

VIEW = MatViewDefinition(name="mv_users", sql="SELECT id, plan FROM users", unique_index_columns=["id"])
GRANTS = [
    "GRANT USAGE ON SCHEMA ops TO {role}",
    "GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA ops TO {role}",
    "GRANT USAGE ON ALL SEQUENCES IN SCHEMA ops TO {role}",
    "GRANT SELECT ON users TO {role}",
]


@pytest.fixture
def roles(db, users, make_mv) -> Iterator[dict[str, str]]:
    """``owner`` (CREATE on public), ``maintainer`` and ``nobody``; run tables in ``ops``, made by the operator."""
    suffix = uuid.uuid4().hex[:6]
    names = {kind: f"{kind}_{suffix}" for kind in ("owner", "maintainer", "nobody")}
    make_mv(runs_schema="ops").migrate()
    for role in names.values():
        db.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        for grant in GRANTS:
            db.execute(sql.SQL(grant).format(role=sql.Identifier(role)))
    db.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(names["owner"])))
    yield names
    db.execute("DROP MATERIALIZED VIEW IF EXISTS mv_users")
    for role in names.values():
        db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def as_role(dsn: str, role: str) -> MatViews:
    return MatViews(dsn=make_conninfo(dsn, user=role), definitions=[VIEW], runs_schema="ops", lock_timeout=1)


def test_run_tables_schema_is_not_writable_by_the_roles(roles, dsn) -> None:
    with (
        psycopg.connect(make_conninfo(dsn, user=roles["owner"])) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("CREATE TABLE ops.intruder (id int)")


def test_a_non_superuser_owner_can_do_everything(roles, dsn, db) -> None:
    with as_role(dsn, roles["owner"]) as mv:
        assert mv.create("mv_users").status == "success"
        for strategy in ("regular", "concurrent", "swap"):
            assert mv.refresh("mv_users", strategy=strategy).status == "success", strategy
        assert mv.create("mv_users", force=True).status == "success"
        assert mv.delete("mv_users").status == "success"
    assert scalar(db, "SELECT count(*) FROM ops.mat_view_refresh_runs WHERE status = 'success'") == 3


def test_a_role_without_privileges_gets_a_clear_error_and_a_failed_row(roles, dsn, db, make_mv) -> None:
    make_mv(VIEW, runs_schema="ops").create("mv_users")
    with as_role(dsn, roles["nobody"]) as mv:
        result = mv.refresh("mv_users")
    assert result.status == "failed"
    assert "must be owner of materialized view mv_users" in result.error or "permission denied" in result.error
    assert scalar(db, "SELECT status FROM ops.mat_view_refresh_runs ORDER BY id DESC LIMIT 1") == "failed"
    assert scalar(db, "SELECT count(*) FROM mv_users") == 10


def test_maintain_allows_refresh_in_place_only(roles, dsn, db, make_mv) -> None:
    if db.info.server_version < 170000:
        pytest.skip("the MAINTAIN privilege exists from PostgreSQL 17 on")
    make_mv(VIEW, runs_schema="ops").create("mv_users")
    db.execute(sql.SQL("GRANT MAINTAIN ON mv_users TO {}").format(sql.Identifier(roles["maintainer"])))
    with as_role(dsn, roles["maintainer"]) as mv:
        assert mv.refresh("mv_users", strategy="regular").status == "success"
        concurrent = mv.refresh("mv_users", strategy="concurrent")
        assert concurrent.status == "success", concurrent.error
        (warning,) = concurrent.warnings  # the check runs as the owner (a superuser here) or scans the view
        assert "could not be checked" in warning and "GRANT SELECT ON public.mv_users" in warning, warning
        assert 'GRANT "postgres"' not in warning, "never advise granting a superuser role"
        db.execute(sql.SQL("GRANT SELECT ON mv_users TO {}").format(sql.Identifier(roles["maintainer"])))
        checked = mv.refresh("mv_users", strategy="concurrent")
        assert checked.ok and not checked.warnings, "with SELECT on the view the check scans it"
        for outcome in (mv.refresh("mv_users", strategy="swap"), mv.create("mv_users", True), mv.delete("mv_users")):
            assert outcome.status == "failed"
            assert "must be owner" in outcome.error or "permission denied" in outcome.error, outcome
    assert scalar(db, "SELECT count(*) FROM mv_users") == 10
    assert scalar(db, "SELECT count(*) FROM pg_class WHERE relname LIKE 'mv_users_mv%%'") == 0


def test_swap_without_create_on_the_schema_says_what_it_needs(roles, dsn, db) -> None:
    owner = roles["owner"]
    with as_role(dsn, owner) as mv:
        assert mv.create("mv_users").ok
    db.execute(sql.SQL("REVOKE CREATE ON SCHEMA public FROM {}").format(sql.Identifier(owner)))
    with as_role(dsn, owner) as mv:
        swapped = mv.refresh("mv_users", strategy="swap")
        assert swapped.status == "failed"
        assert "swap builds a new copy of public.mv_users and renames it into place" in swapped.error
        assert "CREATE on schema public" in swapped.error and "permission denied for schema public" in swapped.error
        assert "strategy='regular'" in swapped.hint
        assert mv.refresh("mv_users", strategy="regular").ok, "the hint's way out works"
    assert scalar(db, "SELECT count(*) FROM mv_users") == 10


def test_maintain_with_an_exact_count_keeps_its_successful_refresh(roles, dsn, db, make_mv) -> None:
    if db.info.server_version < 170000:
        pytest.skip("the MAINTAIN privilege exists from PostgreSQL 17 on")
    make_mv(VIEW, runs_schema="ops").create("mv_users")
    db.execute(sql.SQL("GRANT MAINTAIN ON mv_users TO {}").format(sql.Identifier(roles["maintainer"])))
    db.execute("INSERT INTO users VALUES (11, 'u11@example.com', 'free')")
    with as_role(dsn, roles["maintainer"]) as mv:
        result = mv.refresh("mv_users", "exact", strategy="regular")
    assert result.ok and result.rows_count is None
    assert any("rows not counted (exact)" in warning and "GRANT SELECT" in warning for warning in result.warnings)
    assert scalar(db, "SELECT count(*) FROM mv_users") == 11
