"""Column lineage against a real server: every query shape the issue names, each with the
upstream columns of each view column written by hand."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest

from matviews_dagster import MatViewDefinition, MatViews

SOURCES = """
CREATE TABLE customers (customer_id int PRIMARY KEY, name text, region text);
CREATE TABLE orders (id int PRIMARY KEY, customer_id int, amount numeric, status text,
                     created_at timestamptz, payload jsonb, tags text[]);
CREATE TABLE refunds (id int PRIMARY KEY, order_id int, amount numeric);
CREATE SCHEMA sales;
CREATE TABLE sales.targets (region text, target numeric);
CREATE VIEW v_paid AS SELECT id, customer_id, amount AS paid FROM orders WHERE status = 'paid';
CREATE VIEW v_paid_big AS SELECT id AS order_id, paid * 2 AS doubled FROM v_paid WHERE paid > 100;
CREATE SCHEMA other;
CREATE TABLE other.customers (customer_id int, nickname text);
CREATE VIEW other.v_both AS
  SELECT p.customer_id AS pid, c.nickname FROM public.customers p CROSS JOIN other.customers c;
CREATE FUNCTION my_rows() RETURNS TABLE (a int, b text) LANGUAGE sql AS $$ SELECT id, status FROM public.orders $$;
INSERT INTO customers VALUES (1, 'Ada', 'eu'), (2, 'Bob', 'us');
INSERT INTO orders VALUES (1, 1, 120, 'paid', now(), '{"k": 1}', '{x,y}'), (2, 2, 5, 'open', now(), '{}', '{}');
INSERT INTO refunds VALUES (1, 1, 20);
INSERT INTO sales.targets VALUES ('eu', 1000);
"""

ORD, C, R, T, M = "public.orders", "public.customers", "public.refunds", "sales.targets", "public.mv_totals"
ORDER_COLS = ["id", "amount", "status", "created_at", "payload", "tags"]

# name -> (query, {column: [upstream "relation.column", ...]}, {column: words the reason holds})
SHAPES: dict[str, tuple[str, dict[str, list[str]], dict[str, str]]] = {
    "plain": ("SELECT id, amount FROM orders", {"id": [f"{ORD}.id"], "amount": [f"{ORD}.amount"]}, {}),
    "alias": (
        "SELECT o.id AS order_id, o.amount AS total FROM orders o",
        {"order_id": [f"{ORD}.id"], "total": [f"{ORD}.amount"]},
        {},
    ),
    "expression": (
        "SELECT o.amount - r.amount AS net FROM orders o JOIN refunds r ON r.order_id = o.id",
        {"net": [f"{ORD}.amount", f"{R}.amount"]},
        {},
    ),
    "aggregate": (
        "SELECT customer_id, sum(amount) AS total, count(*) AS n FROM orders GROUP BY customer_id HAVING count(*) > 0",
        {"customer_id": [f"{ORD}.customer_id"], "total": [f"{ORD}.amount"], "n": []},
        {},
    ),
    "window": (
        "SELECT id, row_number() OVER (PARTITION BY customer_id ORDER BY created_at) AS rn FROM orders",
        {"id": [f"{ORD}.id"], "rn": [f"{ORD}.created_at", f"{ORD}.customer_id"]},
        {},
    ),
    "star": (
        "SELECT * FROM customers",
        {"customer_id": [f"{C}.customer_id"], "name": [f"{C}.name"], "region": [f"{C}.region"]},
        {},
    ),
    "table_star": (
        "SELECT c.*, o.amount FROM customers c JOIN orders o ON o.customer_id = c.customer_id",
        {
            "customer_id": [f"{C}.customer_id"],
            "name": [f"{C}.name"],
            "region": [f"{C}.region"],
            "amount": [f"{ORD}.amount"],
        },
        {},
    ),
    "join_using": (
        "SELECT * FROM orders JOIN customers USING (customer_id)",
        {
            "customer_id": [f"{ORD}.customer_id"],
            **{c: [f"{ORD}.{c}"] for c in ORDER_COLS},
            "name": [f"{C}.name"],
            "region": [f"{C}.region"],
        },
        {},
    ),
    "right_join_using": (
        "SELECT customer_id, name FROM orders RIGHT JOIN customers USING (customer_id)",
        {"customer_id": [f"{C}.customer_id"], "name": [f"{C}.name"]},
        {},
    ),
    "full_join_using": (
        "SELECT customer_id FROM orders FULL JOIN customers USING (customer_id)",
        {"customer_id": [f"{C}.customer_id", f"{ORD}.customer_id"]},
        {},
    ),
    "natural_join": (
        "SELECT * FROM customers NATURAL JOIN sales.targets",
        {
            "region": [f"{C}.region"],
            "customer_id": [f"{C}.customer_id"],
            "name": [f"{C}.name"],
            "target": [f"{T}.target"],
        },
        {},
    ),
    "cte": (
        "WITH paid AS (SELECT customer_id, amount FROM orders WHERE status = 'paid') "
        "SELECT customer_id, sum(amount) AS paid FROM paid GROUP BY 1",
        {"customer_id": [f"{ORD}.customer_id"], "paid": [f"{ORD}.amount"]},
        {},
    ),
    "recursive_cte": (
        "WITH RECURSIVE days(d) AS (SELECT min(created_at) FROM orders "
        "UNION ALL SELECT d + interval '1 day' FROM days WHERE d < now() - interval '1 day') SELECT d AS day FROM days",
        {"day": [f"{ORD}.created_at"]},
        {},
    ),
    "subquery_in_from": (
        "SELECT s.total FROM (SELECT customer_id, sum(amount) AS total FROM orders GROUP BY 1) s",
        {"total": [f"{ORD}.amount"]},
        {},
    ),
    "union": (
        "SELECT id, amount FROM orders UNION ALL SELECT id, -amount FROM refunds",
        {"id": [f"{ORD}.id", f"{R}.id"], "amount": [f"{ORD}.amount", f"{R}.amount"]},
        {},
    ),
    "intersect": (
        "SELECT customer_id FROM orders INTERSECT SELECT customer_id FROM customers",
        {"customer_id": [f"{C}.customer_id", f"{ORD}.customer_id"]},
        {},
    ),
    "except": (
        "SELECT customer_id AS id FROM customers EXCEPT SELECT customer_id FROM orders",
        {"id": [f"{C}.customer_id", f"{ORD}.customer_id"]},
        {},
    ),
    "lateral": (
        "SELECT c.name, last.amount FROM customers c CROSS JOIN LATERAL "
        "(SELECT o.amount FROM orders o WHERE o.customer_id = c.customer_id ORDER BY o.created_at DESC LIMIT 1) last",
        {"name": [f"{C}.name"], "amount": [f"{ORD}.amount"]},
        {},
    ),
    "values": (
        "SELECT v.code, v.label FROM (VALUES (1, 'one'), (2, 'two')) AS v(code, label)",
        {"code": [], "label": []},
        {},
    ),
    "plain_view": (
        "SELECT id, paid FROM v_paid",
        {"id": [f"{ORD}.id"], "paid": [f"{ORD}.amount"]},
        {},
    ),
    "view_over_view": (
        "SELECT order_id, doubled FROM v_paid_big",
        {"order_id": [f"{ORD}.id"], "doubled": [f"{ORD}.amount"]},
        {},
    ),
    "scalar_subquery": (
        "SELECT c.name, (SELECT max(o.amount) FROM orders o WHERE o.customer_id = c.customer_id) AS biggest "
        "FROM customers c",
        {"name": [f"{C}.name"], "biggest": [f"{ORD}.amount"]},
        {},
    ),
    "case_coalesce": (
        "SELECT CASE WHEN status = 'paid' THEN amount ELSE 0 END AS paid_amount, coalesce(status, 'none') FROM orders",
        {"paid_amount": [f"{ORD}.amount", f"{ORD}.status"], "coalesce": [f"{ORD}.status"]},
        {},
    ),
    "unnest": (
        "SELECT o.id, t.tag FROM orders o, unnest(o.tags) AS t(tag)",
        {"id": [f"{ORD}.id"], "tag": [f"{ORD}.tags"]},
        {},
    ),
    "jsonb_each": (
        "SELECT o.id, e.key, e.value FROM orders o, jsonb_each(o.payload) e",
        {"id": [f"{ORD}.id"], "key": [f"{ORD}.payload"], "value": [f"{ORD}.payload"]},
        {},
    ),
    "generate_series": (
        "SELECT d::date AS day FROM generate_series(date '2024-01-01', date '2024-01-03', interval '1 day') AS d",
        {"day": []},
        {},
    ),
    "function_star": (
        "SELECT * FROM my_rows()",
        {"a": [], "b": []},
        {"a": "my_rows", "b": "my_rows"},
    ),
    "function_named_columns": (
        "SELECT f.a AS n, o.amount FROM my_rows() AS f(a, b) JOIN orders o ON o.id = f.a",
        {"n": [], "amount": [f"{ORD}.amount"]},
        {"n": "function my_rows()"},
    ),
    "defined_view": (
        "SELECT customer_id, total * 2 AS twice FROM mv_totals",
        {"customer_id": [f"{M}.customer_id"], "twice": [f"{M}.total"]},
        {},
    ),
    "filters_are_not_deps": (
        "SELECT DISTINCT ON (customer_id) id FROM orders WHERE amount > 0 ORDER BY customer_id, created_at DESC",
        {"id": [f"{ORD}.id"]},
        {},
    ),
    "three_part_name": ("SELECT sales.targets.target FROM sales.targets", {"target": [f"{T}.target"]}, {}),
    "exists": (
        "SELECT c.name, EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.customer_id) AS has_orders "
        "FROM customers c",
        {"name": [f"{C}.name"], "has_orders": []},
        {},
    ),
    "whole_row": (
        "SELECT to_jsonb(c) AS doc FROM customers c",
        {"doc": [f"{C}.customer_id", f"{C}.name", f"{C}.region"]},
        {},
    ),
    "in_subquery": (
        "SELECT o.id, o.customer_id IN (SELECT customer_id FROM customers WHERE region = 'eu') AS eu FROM orders o",
        {"id": [f"{ORD}.id"], "eu": [f"{C}.customer_id", f"{ORD}.customer_id"]},
        {},
    ),
    "lateral_in_a_join": (
        "SELECT o.id, t.tag FROM orders o CROSS JOIN LATERAL unnest(o.tags) AS t(tag)",
        {"id": [f"{ORD}.id"], "tag": [f"{ORD}.tags"]},
        {},
    ),
    "lateral_subquery_in_a_left_join": (
        "SELECT c.name, l.total FROM customers c LEFT JOIN LATERAL "
        "(SELECT sum(o.amount) + c.customer_id AS total FROM orders o WHERE o.customer_id = c.customer_id) l ON true",
        {"name": [f"{C}.name"], "total": [f"{C}.customer_id", f"{ORD}.amount"]},
        {},
    ),
    "field_of_a_row": ("SELECT (c).name AS n2 FROM customers c", {"n2": [f"{C}.name"]}, {}),
    "view_reading_same_named_tables": (
        "SELECT pid, nickname FROM other.v_both",
        {"pid": [f"{C}.customer_id"], "nickname": ["other.customers.nickname"]},
        {},
    ),
    "dynamic_jsonb": (
        "SELECT o.id, r.* FROM orders o, jsonb_populate_record(NULL::customers, o.payload) r",
        {"id": [f"{ORD}.id"], "customer_id": [], "name": [], "region": []},
        {"customer_id": "jsonb_populate_record", "name": "jsonb_populate_record", "region": "jsonb_populate_record"},
    ),
}

TOTALS = MatViewDefinition(
    name="mv_totals", sql="SELECT customer_id, sum(amount) AS total FROM orders GROUP BY customer_id"
)


@pytest.fixture
def shapes(db: psycopg.Connection, make_mv: Callable[..., MatViews]) -> Iterator[MatViews]:
    db.execute(SOURCES)
    definitions = [TOTALS, *(MatViewDefinition(name=f"mv_{name}", sql=query) for name, (query, _, _) in SHAPES.items())]
    mv = make_mv(*definitions)
    failed = [r for r in mv.create_many() if not r.ok]
    assert not failed, [(r.view, r.error) for r in failed]
    yield mv


def test_every_query_shape_has_the_lineage_written_by_hand(shapes: MatViews) -> None:
    assert len(SHAPES) >= 25
    found = {lineage.view: lineage for lineage in shapes.column_lineage()}
    mismatches = {}
    for name, (_, expected, reasons) in SHAPES.items():
        lineage = found[f"public.mv_{name}"]
        got = {column: [str(source) for source in sources] for column, sources in lineage.columns.items()}
        want = {column: sorted(deps) for column, deps in expected.items()}
        reasons_ok = set(lineage.unresolved) == set(reasons) and all(
            words in lineage.unresolved[column] for column, words in reasons.items()
        )
        if got != want or not reasons_ok:
            mismatches[name] = {"got": got, "want": want, "unresolved": lineage.unresolved}
    assert not mismatches, mismatches


def test_lineage_json_shape_and_a_view_not_deployed(shapes: MatViews, dsn: str) -> None:
    lineage = {item.view: item for item in shapes.column_lineage(["mv_alias", "mv_function_star"])}
    assert lineage["public.mv_alias"].to_dict() == {
        "view": "public.mv_alias",
        "columns": {
            "order_id": [{"relation": "public.orders", "column": "id"}],
            "total": [{"relation": "public.orders", "column": "amount"}],
        },
        "unresolved": {},
    }
    assert set(lineage["public.mv_function_star"].to_dict()["unresolved"]) == {"a", "b"}
    later = MatViewDefinition(
        name="mv_later",
        sql="SELECT o.amount * 2 AS double, nullif(amount, 0), ARRAY[id], CASE WHEN id > 1 THEN 1 ELSE 0::int END, "
        '(status COLLATE "C"), current_date, (SELECT max(id) FROM refunds), amount::text FROM orders o',
    )
    with MatViews(dsn, [later]) as mv:
        (found,) = mv.column_lineage()  # not created yet: the columns as PostgreSQL will name them
    assert {name: [str(s) for s in sources] for name, sources in found.columns.items()} == {
        "double": ["public.orders.amount"],
        "nullif": ["public.orders.amount"],
        "array": ["public.orders.id"],
        "case": ["public.orders.id"],
        "status": ["public.orders.status"],
        "current_date": [],
        "max": ["public.refunds.id"],
        "amount": ["public.orders.amount"],
    }
    assert list(found.columns) == [c.name for c in mv_columns_after_create(dsn, later)]


def mv_columns_after_create(dsn: str, definition: MatViewDefinition) -> list[psycopg.Column]:
    """The columns PostgreSQL gives the view's query (what a created view would have)."""
    with psycopg.connect(dsn) as conn, conn.cursor() as cursor:
        cursor.execute(f"SELECT * FROM ({definition.sql}) q LIMIT 0")
        return list(cursor.description or [])


def test_a_change_not_applied_yet_keeps_the_lineage_of_the_deployed_query(shapes: MatViews, dsn: str) -> None:
    swapped = MatViewDefinition(name="mv_alias", sql="SELECT o.amount AS total, o.id AS order_id FROM orders o")
    with MatViews(dsn, [swapped]) as mv:
        (found,) = mv.column_lineage()
    assert {name: [str(s) for s in sources] for name, sources in found.columns.items()} == {
        "order_id": ["public.orders.id"],  # the deployed view's columns, as its query computes them
        "total": ["public.orders.amount"],
    }


PROJECT = """
views:
  - name: mv_totals
    sql: SELECT customer_id, sum(amount) AS total, count(*) AS n FROM orders GROUP BY 1
  - name: mv_top
    sql: SELECT t.customer_id, t.total * 2 AS twice, c.name FROM mv_totals t JOIN v_named c USING (customer_id)
  - name: mv_days
    sql: SELECT g AS day, o.amount FROM generate_series(1, 3) g, orders o
"""


@pytest.fixture
def project(tmp_path, db: psycopg.Connection, dsn: str):  # type: ignore[no-untyped-def]
    from test_cli import matviews

    db.execute(SOURCES)
    db.execute("CREATE VIEW v_named AS SELECT customer_id, upper(name) AS name FROM customers")
    (tmp_path / "matviews.yaml").write_text(PROJECT)
    assert matviews(tmp_path, dsn, "create", "--all", "--yes").returncode == 0
    return tmp_path


def test_the_lineage_command_both_directions_as_text_and_json(project, dsn: str) -> None:
    import json

    from test_cli import matviews

    text = matviews(project, dsn, "lineage", "mv_top")
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines() == [
        "public.mv_top",
        "  customer_id  <- public.mv_totals.customer_id",
        "  twice        <- public.mv_totals.total",
        "  name         <- public.customers.name",
    ]
    one = json.loads(matviews(project, dsn, "lineage", "mv_top", "--column", "twice", "--json").stdout)
    assert one == [
        {
            "view": "public.mv_top",
            "columns": {"twice": [{"relation": "public.mv_totals", "column": "total"}]},
            "unresolved": {},
        }
    ]
    down = json.loads(matviews(project, dsn, "lineage", "mv_totals", "--downstream", "--json").stdout)
    assert [(item["view"], sorted(item["columns"])) for item in down] == [("public.mv_top", ["customer_id", "twice"])]
    used = json.loads(
        matviews(project, dsn, "lineage", "--source", "public.orders", "--column", "amount", "--json").stdout
    )
    assert used == {
        "source": "public.orders",
        "column": "amount",
        "used_by": [  # a view over a view that reads it too
            {"view": "public.mv_totals", "column": "total"},
            {"view": "public.mv_days", "column": "amount"},
            {"view": "public.mv_top", "column": "twice"},
        ],
    }
    through_view = matviews(project, dsn, "lineage", "--source", "customers", "--column", "name")
    assert through_view.stdout.splitlines() == ["built on public.customers.name:", "  public.mv_top.name"]
    the_view = matviews(project, dsn, "lineage", "--source", "public.v_named", "--column", "name")
    assert the_view.stdout.splitlines() == ["built on public.v_named.name:", "  public.mv_top.name"]
    for args, words in [
        (("lineage", "--source", "public.orders"), "--source needs --column C"),
        (
            ("lineage", "mv_top", "--column", "nope"),
            "public.mv_top has no column nope; its columns: customer_id, twice, name",
        ),
        (("lineage", "mv_nope"), "unknown view 'mv_nope'"),
        (("lineage",), "name one view, or pass --source"),
        (("lineage", "--source", "public.orders", "--column", "nope"), "public.orders has no column nope; its columns"),
        (("lineage", "--source", "nosuch.t", "--column", "x"), "no relation nosuch.t in the database"),
    ]:
        done = matviews(project, dsn, *args)
        assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)


def test_plan_names_the_view_columns_a_removed_or_retyped_column_feeds(project, dsn: str) -> None:
    import json

    from test_cli import matviews

    changed = PROJECT.replace(
        "SELECT customer_id, sum(amount) AS total, count(*) AS n FROM orders GROUP BY 1",
        "SELECT customer_id::bigint AS customer_id, sum(amount) AS amount_total, count(*) AS n FROM orders GROUP BY 1",
    )
    (project / "matviews.yaml").write_text(changed)
    done = matviews(project, dsn, "plan", "--json")
    assert done.returncode == 1, done.stderr
    plan = {item["view"]: item for item in json.loads(done.stdout)}["public.mv_totals"]
    assert plan["columns_removed"] == ["total"] and plan["columns_added"] == ["amount_total"]
    assert plan["columns_retyped"] == [{"column": "customer_id", "from": "integer", "to": "bigint"}]
    assert plan["impact"] == ["public.mv_top.customer_id", "public.mv_top.twice"]
    assert plan["rebuilds"] == ["public.mv_top (materialized view)"]
    text = matviews(project, dsn, "plan").stdout
    assert "changed columns read by public.mv_top.customer_id, public.mv_top.twice" in text
