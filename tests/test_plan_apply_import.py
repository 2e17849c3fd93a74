"""``matviews plan``, ``apply`` and ``import`` as real processes against real Postgres."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
import yaml
from conftest import new_database, scalar
from test_cli import matviews

YAML = """
views:
  - name: mv_users
    sql: SELECT id, email, plan FROM users
    refresh_strategy: concurrent
    unique_index_columns: [id]
  - name: mv_pro
    sql: SELECT id, email FROM mv_users WHERE plan = 'pro'
"""


@pytest.fixture
def project(tmp_path: Path, users) -> Path:
    (tmp_path / "matviews.yaml").write_text(YAML)
    return tmp_path


def plan_of(project: Path, dsn: str) -> tuple[int, dict[str, dict]]:
    done = matviews(project, dsn, "plan", "--json")
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, {p["view"]: p for p in json.loads(done.stdout)}


def test_plan_says_what_apply_would_do_and_exits_1_until_nothing_would(project, dsn, db) -> None:
    code, plans = plan_of(project, dsn)
    assert code == 1 and {v: p["action"] for v, p in plans.items()} == {
        "public.mv_users": "create",
        "public.mv_pro": "create",
    }
    done = matviews(project, dsn, "apply", "--all", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert scalar(db, "SELECT count(*) FROM mv_pro") > 0
    code, plans = plan_of(project, dsn)
    assert code == 0 and {p["action"] for p in plans.values()} == {"unchanged"}
    (project / "matviews.yaml").write_text(
        YAML.replace("SELECT id, email FROM mv_users", "SELECT id, email, 1 AS tier FROM mv_users").replace(
            "unique_index_columns: [id]", "unique_index_columns: [id]\n    indexes: [[plan]]"
        )
    )
    done = matviews(project, dsn, "plan")
    assert done.returncode == 1
    assert "change     public.mv_pro    query changed" in done.stdout
    assert "+    1 AS tier" in done.stdout
    assert "change     public.mv_users  add index (plan)" in done.stdout
    assert matviews(project, dsn, "apply", "--all").returncode == 1, "no terminal, no --yes: nothing applied"
    assert scalar(db, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'mv_pro'::regclass AND attname = 'tier'") == 0
    done = matviews(project, dsn, "apply", "--all", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert scalar(db, "SELECT max(tier) FROM mv_pro") == 1
    assert plan_of(project, dsn)[0] == 0


def test_an_orphan_is_a_view_with_history_and_no_definition(project, dsn, db) -> None:
    assert matviews(project, dsn, "create", "--all").returncode == 0
    (project / "matviews.yaml").write_text(YAML.split("  - name: mv_pro")[0])
    code, plans = plan_of(project, dsn)
    assert plans["public.mv_pro"]["action"] == "orphan"
    assert code == 0, "an orphan is not changed by apply"


def test_a_blocking_dependent_is_named_with_the_cli_flag(project, dsn, db) -> None:
    assert matviews(project, dsn, "create", "--all").returncode == 0
    (project / "matviews.yaml").write_text(
        YAML.replace("SELECT id, email, plan FROM users", "SELECT id, plan FROM users")
    )
    done = matviews(project, dsn, "apply", "mv_users", "--yes")
    assert done.returncode == 1
    assert "public.mv_pro (materialized view) is built on the view and could not be recreated" in done.stdout
    assert "--cascade" in done.stdout and "cascade=True" not in done.stdout
    assert scalar(db, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'mv_users'::regclass AND attname = 'email'")


def catalog(conn: psycopg.Connection) -> dict[str, object]:
    """Columns, indexes (without their names) and comments of every materialized view."""
    views = [r[0] for r in conn.execute("SELECT format('%I.%I', schemaname, matviewname) FROM pg_matviews ORDER BY 1")]
    return {
        view: {
            "columns": conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0 ORDER BY attnum",
                (view,),
            ).fetchall(),
            "indexes": sorted(
                r[0].split(" ON ", 1)[1]
                for r in conn.execute(
                    "SELECT indexdef FROM pg_indexes WHERE format('%%I.%%I', schemaname, tablename) = %s", (view,)
                )
            ),
            "comments": conn.execute(
                "SELECT objsubid, description FROM pg_description WHERE objoid = %s::regclass ORDER BY 1", (view,)
            ).fetchall(),
        }
        for view in views
    }


def test_import_then_create_elsewhere_gives_the_same_views_and_an_unchanged_plan(
    project, dsn, db, server_dsn, tmp_path
) -> None:
    db.execute("CREATE SCHEMA reports")
    db.execute("CREATE MATERIALIZED VIEW reports.plans AS SELECT plan, count(*) AS n FROM users GROUP BY plan")
    db.execute("CREATE UNIQUE INDEX ON reports.plans (plan)")
    db.execute("CREATE INDEX ON reports.plans (n)")
    db.execute("CREATE INDEX plans_big ON reports.plans (n) WHERE n > 100")
    db.execute("COMMENT ON MATERIALIZED VIEW reports.plans IS 'users per plan'")
    db.execute("COMMENT ON COLUMN reports.plans.n IS 'how many'")
    db.execute("CREATE MATERIALIZED VIEW emails AS SELECT id, lower(email) AS email FROM users")
    out = tmp_path / "adopted.yaml"
    done = matviews(project, dsn, "import", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "plans_big" in done.stderr and "partial index" in done.stderr
    assert "refresh_strategy: concurrent" in out.read_text()
    again = matviews(project, dsn, "import", "--out", str(out))
    assert again.returncode == 2 and "exists" in again.stderr, "an existing file is never overwritten"
    assert matviews(project, dsn, "--definitions", str(out), "plan").returncode == 0
    with new_database(server_dsn, "mvimport") as other, psycopg.connect(other, autocommit=True) as conn:
        conn.execute("CREATE TABLE users (id int PRIMARY KEY, email text, plan text)")
        conn.execute("INSERT INTO users SELECT g, 'u' || g, 'free' FROM generate_series(1, 5) g")
        conn.execute("CREATE SCHEMA reports")
        done = matviews(project, other, "--definitions", str(out), "create", "--all")
        assert done.returncode == 0, done.stdout + done.stderr
        plan = matviews(project, other, "--definitions", str(out), "plan")
        assert plan.returncode == 0 and plan.stdout.count("unchanged") == 2, plan.stdout
        db.execute("DROP INDEX reports.plans_big")  # not declarable: named in the notes instead
        assert catalog(conn) == catalog(db)


def test_plan_names_a_definition_that_does_not_compile_and_exits_2(project, dsn, db) -> None:
    assert matviews(project, dsn, "create", "--all").returncode == 0
    (project / "matviews.yaml").write_text(
        YAML.replace("SELECT id, email, plan FROM users", "SELECT id, nosuch FROM users")
    )
    done = matviews(project, dsn, "plan")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "error      public.mv_users" in done.stdout and "does not compile" in done.stdout
    assert "unchanged  public.mv_pro" in done.stdout, "the other views are still compared"


def test_import_skips_what_a_definition_cannot_hold_and_says_why(project, dsn, db, tmp_path) -> None:
    db.execute('CREATE SCHEMA "Odd Schema"')
    db.execute('CREATE MATERIALIZED VIEW "Odd Schema".plans AS SELECT DISTINCT plan FROM users')
    db.execute("CREATE MATERIALIZED VIEW ids AS SELECT id FROM users WITH DATA")
    db.execute("CREATE INDEX ids_desc ON ids (id DESC)")
    db.execute("ALTER MATERIALIZED VIEW ids SET (fillfactor = 70)")
    done = matviews(project, dsn, "import")
    assert done.returncode == 0, done.stderr
    assert [v["name"] for v in yaml.safe_load(done.stdout)["views"]] == ["public.ids"]
    assert "Odd Schema.plans: not imported" in done.stderr
    assert "ids_desc" in done.stderr and "sort order" in done.stderr and "fillfactor=70" in done.stderr
    missing = matviews(project, dsn, "import", "--out", str(tmp_path / "no" / "such.yaml"))
    assert missing.returncode == 2 and "no directory" in missing.stderr
    none = matviews(project, dsn, "import", "--schema", "nope")
    assert none.returncode == 0 and "no materialized views in schema nope" in none.stderr
