"""Estates from the command line: several databases (two servers), tenant schemas, run rows
where they belong, narrowing with --database and --tenant, and the faults of issue 22, all
against real PostgreSQL servers and through the real `matviews` process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from conftest import free_port, rows, scalar, tenant_schema

from matviews_dagster.core.definitions_file import parse_definitions
from matviews_dagster.core.estate import Estate

MATVIEWS = str(Path(sys.executable).with_name("matviews"))

ESTATE = """
databases:
  app: {dsn: "${APP_DSN}", max_parallel: 2}
  warehouse: {dsn: "${WAREHOUSE_DSN}"}
views:
  - name: mv_usage
    sql: SELECT account, count(*) AS n FROM events GROUP BY account
    database: app
    tenants: {schemas: [acme, globex]}
    unique_index_columns: [account]
    refresh_strategy: concurrent
  - name: mv_usage_total
    sql: SELECT sum(n) AS total FROM mv_usage
    database: app
    tenants: {schemas: [acme, globex]}
  - name: mv_orders
    sql: SELECT id FROM orders
    database: warehouse
"""


@pytest.fixture
def app(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        tenant_schema(conn, "acme", 30)
        tenant_schema(conn, "globex", 6)
    return dsn


@pytest.fixture
def warehouse(second_dsn: str) -> str:
    with psycopg.connect(second_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int)")
        conn.execute("INSERT INTO orders SELECT generate_series(1, 5)")
    return second_dsn


def matviews(
    project: Path, *args: str, env: dict[str, str] | None = None, **variables: str
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MATVIEWS_DSN", "MATVIEWS_RUNS_DSN")}
    return subprocess.run(
        [MATVIEWS, *args],
        cwd=project,
        env={**base, **(env or {}), **variables},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


@pytest.fixture
def project(tmp_path: Path, app: str, warehouse: str) -> tuple[Path, dict[str, str]]:
    (tmp_path / "matviews.yaml").write_text(ESTATE)
    return tmp_path, {"APP_DSN": app, "WAREHOUSE_DSN": warehouse, "MATVIEWS_DSN": app}


def test_an_estate_of_two_servers_and_tenant_schemas_from_the_cli(project, app, warehouse) -> None:
    path, env = project
    created = matviews(path, "create", "--all", "--json", env=env)
    assert created.returncode == 0, created.stderr
    results = [json.loads(line) for line in created.stdout.splitlines()]
    assert sorted((r["database"], r.get("tenant"), r["view"]) for r in results) == [
        ("app", "acme", "acme.mv_usage"),
        ("app", "acme", "acme.mv_usage_total"),
        ("app", "globex", "globex.mv_usage"),
        ("app", "globex", "globex.mv_usage_total"),
        ("warehouse", None, "public.mv_orders"),
    ]
    # each tenant's view reads its own schema's events, and its upstream view in its own schema
    assert rows(app, "SELECT total FROM acme.mv_usage_total") == [(30,)]
    assert rows(app, "SELECT total FROM globex.mv_usage_total") == [(6,)]
    assert rows(warehouse, "SELECT count(*) FROM mv_orders") == [(5,)]
    with psycopg.connect(app, autocommit=True) as conn:
        conn.execute("INSERT INTO acme.events SELECT 1 FROM generate_series(1, 4)")
    refreshed = matviews(path, "refresh", "mv_usage", "mv_usage_total", "--json", env=env)
    assert refreshed.returncode == 0, refreshed.stderr
    assert sorted(json.loads(line)["view"] for line in refreshed.stdout.splitlines()) == [
        "acme.mv_usage",
        "acme.mv_usage_total",
        "globex.mv_usage",
        "globex.mv_usage_total",
    ]
    assert rows(app, "SELECT total FROM acme.mv_usage_total") == [(34,)]
    # run rows go to each view's own database, named by its databases: key
    assert rows(app, "SELECT DISTINCT database_name FROM mat_view_refresh_runs") == [("app",)]
    assert rows(app, "SELECT count(*) FROM mat_view_refresh_runs WHERE status = 'success'") == [(4,)]
    assert rows(warehouse, "SELECT database_name, view_name FROM mat_view_create_runs") == [
        ("warehouse", "public.mv_orders")
    ]
    # --tenant and --database narrow; list shows database and tenant
    narrowed = matviews(path, "refresh", "--all", "--tenant", "globex", "--json", env=env)
    assert sorted(json.loads(line)["view"] for line in narrowed.stdout.splitlines()) == [
        "globex.mv_usage",
        "globex.mv_usage_total",
    ]
    listed = matviews(path, "list", "--json", "--database", "warehouse", env=env)
    assert [(r["database"], r["tenant"], r["name"], r["exists"]) for r in json.loads(listed.stdout)] == [
        ("warehouse", None, "public.mv_orders", True)
    ]
    history = matviews(path, "runs", "--json", "--tenant", "acme", "--kind", "refresh", env=env)
    assert {r["view_name"] for r in json.loads(history.stdout)} == {"acme.mv_usage", "acme.mv_usage_total"}
    whole = matviews(path, "runs", "--json", "--limit", "100", env=env)
    assert {r["database_name"] for r in json.loads(whole.stdout)} == {"app", "warehouse"}


def test_a_tenant_added_later_gets_the_view_and_a_dropped_one_is_gone(tmp_path, app, warehouse) -> None:
    (tmp_path / "matviews.yaml").write_text(
        ESTATE.replace(
            "tenants: {schemas: [acme, globex]}", "tenants: {schemas_like: 'tenant_%', exclude: [tenant_test]}"
        )
    )
    env = {"APP_DSN": app, "WAREHOUSE_DSN": warehouse}
    empty = matviews(tmp_path, "create", "--all", "--database", "app", env=env)
    assert empty.returncode == 0, empty.stderr
    assert "no schema matches tenants schemas like 'tenant_%' except tenant_test" in empty.stderr  # a warning
    with psycopg.connect(app, autocommit=True) as conn:
        tenant_schema(conn, "tenant_a", 3)
        tenant_schema(conn, "tenant_test", 3)
    first = matviews(tmp_path, "create", "--all", "--database", "app", "--json", env=env)
    assert sorted(json.loads(line)["view"] for line in first.stdout.splitlines()) == [
        "tenant_a.mv_usage",
        "tenant_a.mv_usage_total",
    ]
    with psycopg.connect(app, autocommit=True) as conn:
        tenant_schema(conn, "tenant_b", 2)
        conn.execute("DROP SCHEMA tenant_a CASCADE")
    later = matviews(tmp_path, "apply", "--all", "--yes", "--json", "--database", "app", env=env)
    assert later.returncode == 0, later.stderr
    assert sorted(json.loads(line)["view"] for line in later.stdout.splitlines()) == [
        "tenant_b.mv_usage",
        "tenant_b.mv_usage_total",
    ]
    refreshed = matviews(tmp_path, "refresh", "mv_usage", "--json", env=env)
    assert refreshed.returncode == 0, refreshed.stderr  # the dropped tenant is gone, not a failure
    assert [json.loads(line)["view"] for line in refreshed.stdout.splitlines()] == ["tenant_b.mv_usage"]
    assert scalar(psycopg.connect(app), "SELECT to_regclass('tenant_test.mv_usage')") is None


def test_an_unreachable_server_and_an_unset_variable_fail_only_their_own_views(project, app) -> None:
    path, env = project
    down = {**env, "WAREHOUSE_DSN": f"postgresql://postgres:s3cret-pw@127.0.0.1:{free_port()}/postgres"}
    created = matviews(path, "create", "--all", "--json", env=down)
    assert created.returncode == 1
    results = {json.loads(line)["view"]: json.loads(line) for line in created.stdout.splitlines()}
    assert all(results[name]["status"] == "success" for name in results if name != "public.mv_orders")
    failed = results["public.mv_orders"]
    assert failed["status"] == "failed" and failed["database"] == "warehouse"
    assert failed["error"].startswith("database warehouse: cannot connect to ${WAREHOUSE_DSN}")
    assert "s3cret-pw" not in created.stdout + created.stderr
    unset = {k: v for k, v in env.items() if k != "WAREHOUSE_DSN"}
    loaded = matviews(path, "list", "--json", "--database", "app", env=unset)  # not read at load
    assert loaded.returncode == 0, loaded.stderr
    refreshed = matviews(path, "refresh", "mv_orders", env=unset)  # one database: one error line, as ever
    assert refreshed.returncode == 2
    assert refreshed.stderr.startswith("error: database warehouse: cannot connect: environment variable WAREHOUSE_DSN")


def test_a_tenant_missing_a_source_table_fails_alone(project, app) -> None:
    path, env = project
    with psycopg.connect(app, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA initech")  # a tenant without its events table
    (path / "matviews.yaml").write_text(ESTATE.replace("[acme, globex]", "[acme, globex, initech]"))
    created = matviews(path, "create", "--all", "--json", "--database", "app", env=env)
    assert created.returncode == 1
    results = {json.loads(line)["view"]: json.loads(line) for line in created.stdout.splitlines()}
    assert results["initech.mv_usage"]["status"] == "failed"
    assert 'relation "events" does not exist' in results["initech.mv_usage"]["error"]
    assert results["initech.mv_usage_total"]["status"] == "skipped"
    assert [results[f"{t}.mv_usage_total"]["status"] for t in ("acme", "globex")] == ["success", "success"]
    assert rows(app, "SELECT status FROM mat_view_create_runs WHERE view_name = 'initech.mv_usage'") == [("failed",)]


def test_a_central_run_store_holds_the_whole_estate(project, app, warehouse, second_dsn) -> None:
    path, env = project
    (path / "matviews.yaml").write_text(
        ESTATE.replace('{dsn: "${APP_DSN}", max_parallel: 2}', '{dsn: "${APP_DSN}", runs: local}')
    )
    central = {**env, "MATVIEWS_RUNS_DSN": warehouse}
    created = matviews(path, "create", "--all", env=central)
    assert created.returncode == 0, created.stderr
    # warehouse's rows in the central store, app (runs: local) keeps its own
    assert rows(warehouse, "SELECT database_name, view_name FROM mat_view_create_runs") == [
        ("warehouse", "public.mv_orders")
    ]
    assert rows(app, "SELECT DISTINCT database_name FROM mat_view_create_runs") == [("app",)]
    history = matviews(path, "runs", "--json", "--limit", "50", env=central)
    assert sorted({r["database_name"] for r in json.loads(history.stdout)}) == ["app", "warehouse"]
    bad = path / "bad.yaml"
    bad.write_text(ESTATE.replace('{dsn: "${WAREHOUSE_DSN}"}', '{dsn: "${WAREHOUSE_DSN}", runs: central}'))
    refused = matviews(path, "--definitions", str(bad), "list", env=env)
    assert refused.returncode == 2
    assert "database warehouse has runs: central but no central run store is set" in refused.stderr


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {"views": [{"name": "mv_a", "sql": "SELECT 1 AS x", "database": "nope"}], "databases": {"app": "${A}"}},
            "database nope is not in databases: (app)",
        ),
        (
            {"views": [{"name": "acme.mv_a", "sql": "SELECT 1 AS x", "tenants": {"schemas": ["acme"]}}]},
            "needs an unqualified name (each tenant's view is <tenant>.mv_a); write name: mv_a",
        ),
        (
            {"views": [{"name": "mv_a", "sql": "SELECT 1 AS x", "tenants": {"databases": ["eu"]}}]},
            "database eu is not in databases: (none)",
        ),
        (
            {"views": [{"name": "mv_a", "sql": "SELECT 1 AS x", "tenants": {"schemas": []}}]},
            "tenants schemas must list at least one schema",
        ),
        ({"views": [], "databases": {"Bad-Name": "x"}}, "database name 'Bad-Name' must be lower-case"),
        ({"views": [], "databases": {"default": "x"}}, "database name default names the default connection"),
        (
            {
                "views": [
                    {"name": "mv_a", "sql": "SELECT 1 AS x"},
                    {"name": "mv_a", "sql": "SELECT 1 AS x", "tenants": {"schemas": ["acme"]}},
                ]
            },
            "a view with tenant schemas takes its name in public too: rename mv_a",
        ),
    ],
)
def test_bad_estate_fields_are_refused_at_load(document, message) -> None:
    with pytest.raises(ValueError, match=None) as raised:
        parse_definitions(document, "matviews.yaml")
    assert message in str(raised.value)


def test_a_view_reading_a_view_of_another_database_is_refused_naming_both() -> None:
    document = {
        "databases": {"app": "${A}", "warehouse": "${W}"},
        "views": [
            {"name": "mv_a", "sql": "SELECT 1 AS x", "database": "app"},
            {"name": "mv_b", "sql": "SELECT x FROM mv_a", "database": "warehouse"},
        ],
    }
    with pytest.raises(ValueError) as raised:
        Estate(parse_definitions(document))
    assert str(raised.value) == (
        "view public.mv_b (database warehouse) reads public.mv_a, a view of database app; "
        "a view may read only views of its own database"
    )
