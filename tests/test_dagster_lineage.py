"""Column lineage and the schema-change check, as a Dagster run reports them."""

from __future__ import annotations

import dagster as dg
import psycopg

from matviews_dagster import DagsterMatViewTranslator, MatViewDefinition, build_definitions
from matviews_dagster.core.names import QualifiedName
from matviews_dagster.core.schema_change import SCHEMA_CHANGE

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


def test_the_schema_change_verdict_fails_on_a_removed_or_retyped_column_and_passes_on_an_added_one(dsn, db) -> None:
    setup(db)

    def check_after(definition: MatViewDefinition, instance: dg.DagsterInstance) -> dg.AssetCheckEvaluation:
        result = materialize(build_definitions([definition], dsn=dsn), instance)
        assert result.success
        (evaluation,) = result.get_asset_check_evaluations()
        assert evaluation.check_name == "deployed_as_defined"
        return evaluation

    def verdict(evaluation: dg.AssetCheckEvaluation) -> str:
        return evaluation.metadata[SCHEMA_CHANGE].value

    with dg.instance_for_test() as instance:
        first = check_after(BASE, instance)
        assert first.passed and verdict(first) == "passed"
        assert first.metadata["columns_compared_with"].value == "nothing: no earlier column schema"
        same = check_after(BASE, instance)
        assert same.passed and same.metadata["columns_compared_with"].value == "the last materialization"
        added = BASE.model_copy(
            update={"sql": "SELECT customer_id, sum(amount) AS total, count(*) AS n FROM orders GROUP BY 1"}
        )
        grown = check_after(added, instance)
        assert grown.passed and grown.metadata["added_columns"].value == "n"
        renamed = BASE.model_copy(
            update={"sql": "SELECT customer_id::bigint AS customer_id, sum(amount) AS amount FROM orders GROUP BY 1"}
        )
        broken = check_after(renamed, instance)
        assert not broken.passed and broken.severity == dg.AssetCheckSeverity.WARN
        assert verdict(broken) == "failed (warn)"
        assert broken.description == (
            "columns since the last materialization: removed total, n; type of customer_id: integer -> bigint; "
            "added amount"
        )
        strict = renamed.model_copy(update={"sql": "SELECT customer_id FROM orders", "schema_change_severity": "error"})
        failed = check_after(strict, instance)
        assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
        assert verdict(failed) == "failed (error)" and failed.metadata["removed_columns"].value == "amount"


def test_the_schema_change_verdict_can_be_turned_off_per_view_or_for_the_whole_file(dsn, db, tmp_path) -> None:
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
    found = {e.asset_key.path[-1]: e for e in result.get_asset_check_evaluations()}
    assert (
        SCHEMA_CHANGE not in found["mv_quiet"].metadata and found["mv_strict"].metadata[SCHEMA_CHANGE].value == "passed"
    )


def test_selecting_only_the_check_compares_the_deployed_columns_with_the_last_materialization(dsn, db) -> None:
    setup(db)
    with dg.instance_for_test() as instance:
        assert materialize(build_definitions([BASE], dsn=dsn), instance).success
        db.execute("DROP MATERIALIZED VIEW mv_totals")  # another tool rebuilds it without a column
        db.execute("CREATE MATERIALIZED VIEW mv_totals AS SELECT customer_id FROM orders")
        defs = build_definitions([BASE], dsn=dsn)
        checks = dg.define_asset_job(
            "checks", selection=dg.AssetSelection.checks_for_assets(dg.AssetKey(["public", "mv_totals"]))
        )
        job = dg.Definitions.merge(defs, dg.Definitions(jobs=[checks])).resolve_job_def("checks")
        (evaluation,) = job.execute_in_process(instance=instance).get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.metadata[SCHEMA_CHANGE].value == "failed (warn)"
    assert evaluation.metadata["removed_columns"].value == "total"
