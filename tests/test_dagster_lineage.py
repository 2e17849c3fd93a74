"""Column lineage and the schema-change check, as a Dagster run reports them."""

from __future__ import annotations

import dagster as dg
import psycopg

from matviews_dagster import DagsterMatViewTranslator, MatViewDefinition, build_definitions
from matviews_dagster.check_specs import SCHEMA_CHANGE_CHECK
from matviews_dagster.core.names import QualifiedName

BASE = MatViewDefinition(name="mv_totals", sql="SELECT customer_id, sum(amount) AS total FROM orders GROUP BY 1")
TOP = MatViewDefinition(
    name="mv_top",
    sql="SELECT t.customer_id, t.total * 2 AS twice, c.name FROM mv_totals t JOIN v_customers c USING (customer_id)",
)


def setup(db: psycopg.Connection) -> None:
    db.execute("CREATE TABLE orders (id int, customer_id int, amount numeric)")
    db.execute("CREATE TABLE customers (customer_id int, name text)")
    db.execute("CREATE VIEW v_customers AS SELECT customer_id, upper(name) AS name FROM customers")
    db.execute("INSERT INTO orders VALUES (1, 1, 10); INSERT INTO customers VALUES (1, 'ada')")


def materialize(defs: dg.Definitions, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    job = dg.Definitions.merge(defs, dg.Definitions(jobs=[dg.define_asset_job("all", dg.AssetSelection.all())]))
    return job.resolve_job_def("all").execute_in_process(instance=instance, raise_on_error=False)


def lineage_of(result: dg.ExecuteInProcessResult, name: str) -> dict[str, list[tuple[str, str]]]:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == name]
    lineage = event.materialization.metadata["dagster/column_lineage"].value
    return {
        column: sorted((dep.asset_key.to_user_string(), dep.column_name) for dep in deps)
        for column, deps in lineage.deps_by_column.items()
    }


class Prefixed(DagsterMatViewTranslator):
    def get_asset_spec(self, definition, graph):  # type: ignore[no-untyped-def]
        spec = super().get_asset_spec(definition, graph)
        return spec.replace_attributes(key=spec.key.with_prefix("wh"))

    def get_source_asset_key(self, relation: QualifiedName) -> dg.AssetKey:
        return super().get_source_asset_key(relation).with_prefix("src")


def test_materializations_carry_column_lineage_keyed_by_the_translator(dsn, db) -> None:
    setup(db)
    with dg.instance_for_test() as instance:
        result = materialize(build_definitions([BASE, TOP], dsn=dsn, translator=Prefixed()), instance)
    assert result.success
    assert lineage_of(result, "mv_totals") == {
        "customer_id": [("src/public/orders", "customer_id")],
        "total": [("src/public/orders", "amount")],
    }
    assert lineage_of(result, "mv_top") == {  # an upstream view by its own key; a plain view followed
        "customer_id": [("wh/public/mv_totals", "customer_id")],
        "twice": [("wh/public/mv_totals", "total")],
        "name": [("src/public/customers", "name")],
    }
    (top,) = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "mv_top"]
    assert top.materialization.metadata["column_lineage"].value.splitlines() == [  # what the open-source UI shows
        "| column | computed from |",
        "|---|---|",
        "| `customer_id` | wh/public/mv_totals `customer_id` |",
        "| `twice` | wh/public/mv_totals `total` |",
        "| `name` | src/public/customers `name` |",
    ]


def test_a_column_whose_source_cannot_be_known_says_why_and_the_refresh_succeeds(dsn, db) -> None:
    setup(db)
    db.execute("CREATE FUNCTION big_orders() RETURNS SETOF orders LANGUAGE sql AS 'SELECT * FROM public.orders'")
    odd = MatViewDefinition(name="mv_odd", sql="SELECT b.id, b.amount * 2 AS twice FROM big_orders() b")
    with dg.instance_for_test() as instance:
        result = materialize(build_definitions([odd], dsn=dsn), instance)
    assert result.success
    (event,) = result.get_asset_materialization_events()
    assert event.materialization.metadata["dagster/column_lineage"].value.deps_by_column == {}
    table = event.materialization.metadata["column_lineage"].value
    assert "| `twice` | not known: the columns of function big_orders() are not known |" in table.splitlines()


def test_schema_change_check_fails_on_a_removed_or_retyped_column_and_passes_on_an_added_one(dsn, db) -> None:
    setup(db)

    def check_after(definition: MatViewDefinition, instance: dg.DagsterInstance) -> dg.AssetCheckEvaluation:
        result = materialize(build_definitions([definition], dsn=dsn), instance)
        assert result.success
        (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == SCHEMA_CHANGE_CHECK]
        return evaluation

    with dg.instance_for_test() as instance:
        first = check_after(BASE, instance)
        assert first.passed and "no earlier materialization" in (first.description or "")
        same = check_after(BASE, instance)
        assert same.passed and same.description == "since the last materialization: no change"
        added = BASE.model_copy(
            update={"sql": "SELECT customer_id, sum(amount) AS total, count(*) AS n FROM orders GROUP BY 1"}
        )
        grown = check_after(added, instance)
        assert grown.passed and grown.description == "since the last materialization: added n"
        renamed = BASE.model_copy(
            update={"sql": "SELECT customer_id::bigint AS customer_id, sum(amount) AS amount FROM orders GROUP BY 1"}
        )
        broken = check_after(renamed, instance)
        assert not broken.passed and broken.severity == dg.AssetCheckSeverity.WARN
        assert broken.description == (
            "since the last materialization: removed total, n; type of customer_id: integer -> bigint; added amount"
        )
        strict = renamed.model_copy(update={"sql": "SELECT customer_id FROM orders", "schema_change_severity": "error"})
        failed = check_after(strict, instance)
        assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
        assert failed.metadata["removed_columns"].value == "amount"


def test_schema_change_checks_can_be_turned_off_per_view_or_for_the_whole_file(dsn, db, tmp_path) -> None:
    from matviews_dagster import load_definitions

    setup(db)
    (tmp_path / "views.yaml").write_text(
        "schema_change_severity: off\n"
        "views:\n"
        "  - {name: mv_quiet, sql: SELECT id FROM orders}\n"
        "  - {name: mv_strict, sql: SELECT id FROM orders, schema_change_severity: error}\n"
    )
    definitions = load_definitions(tmp_path / "views.yaml")
    assert [d.schema_change_severity for d in definitions] == ["off", "error"]
    with dg.instance_for_test() as instance:
        result = materialize(build_definitions(definitions, dsn=dsn), instance)
    assert result.success
    assert sorted((e.asset_key.path[-1], e.check_name) for e in result.get_asset_check_evaluations()) == [
        ("mv_quiet", "deployed_as_defined"),
        ("mv_strict", SCHEMA_CHANGE_CHECK),
        ("mv_strict", "deployed_as_defined"),
    ]
