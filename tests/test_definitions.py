"""Definitions: every field and rule of design section 2, checked before any connection."""

from __future__ import annotations

from pathlib import Path

import pytest

from matviews_dagster import MatViewDefinition, MatViews, load_definitions

SQL = "SELECT id, email FROM users"


def test_defaults_and_qualified_name() -> None:
    definition = MatViewDefinition(name="mv_users", sql=SQL)
    assert definition.name == "public.mv_users"
    assert definition.qualified.schema == "public"
    assert definition.refresh_strategy == "regular"
    assert definition.row_count_strategy == "estimated"
    assert definition.unique_index_columns == [] and definition.indexes == []
    assert MatViewDefinition(name="reports.mv_users", sql=SQL).qualified.schema == "reports"


def test_sql_is_trimmed_of_trailing_semicolon() -> None:
    assert MatViewDefinition(name="v", sql="  SELECT 1 AS one ;  ").sql == "SELECT 1 AS one"


@pytest.mark.parametrize(
    "name",
    [
        "",
        "1abc",
        "mv users",
        "mv;drop",
        'mv"',
        "mv--x",
        "a.b.c",
        ".mv",
        "mv.",
        "x" * 64,
        "mv_usérs",
        "mv_\u0430",  # Cyrillic look-alike
        "mv\x00x",
        "public.",
    ],
)
def test_invalid_names_are_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="name"):
        MatViewDefinition(name=name, sql=SQL)


def test_63_byte_name_is_accepted() -> None:
    assert MatViewDefinition(name="v" * 63, sql=SQL).qualified.name == "v" * 63


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELECT 1; DROP TABLE users", "exactly one query statement"),
        ("DROP TABLE users", "must be a query"),
        ("INSERT INTO users VALUES (1)", "must be a query"),
        ("UPDATE users SET email = ''", "must be a query"),
        ("CREATE TABLE t (id int)", "must be a query"),
        ("WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d", "must not modify data"),
        ("WITH i AS (INSERT INTO users VALUES (1) RETURNING *) SELECT * FROM i", "must not modify data"),
        ("SELECT * INTO copy FROM users", "SELECT ... INTO"),
        ("SELECT * FROM users FOR UPDATE", "FOR UPDATE"),
        ("SELEC * FROM users", "syntax error"),
        ("", "non-empty"),
    ],
)
def test_invalid_sql_is_rejected_with_reason(query: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MatViewDefinition(name="mv", sql=query)


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1 AS one",
        "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
        "VALUES (1, 'a'), (2, 'b')",
        "TABLE users",
        "SELECT u.id FROM users u JOIN (SELECT 1 AS id) s USING (id) WHERE EXISTS (SELECT 1)",
    ],
)
def test_query_forms_are_accepted(query: str) -> None:
    assert MatViewDefinition(name="mv", sql=query).sql == query


def test_concurrent_requires_unique_index_columns() -> None:
    with pytest.raises(ValueError, match="unique_index_columns"):
        MatViewDefinition(name="mv", sql=SQL, refresh_strategy="concurrent")
    ok = MatViewDefinition(name="mv", sql=SQL, refresh_strategy="concurrent", unique_index_columns=["id"])
    assert ok.unique_index_columns == ["id"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("refresh_strategy", "fast", "refresh_strategy"),
        ("row_count_strategy", "guess", "row_count_strategy"),
        ("unique_index_columns", ["id; drop"], "unique_index_columns column"),
        ("unique_index_columns", ["id", "id"], "twice"),
        ("indexes", [["email", "bad name"]], r"indexes\[0\] column"),
        ("indexes", [[]], "non-empty"),
        ("dependencies", ["a.b.c"], "dependencies"),
        ("schedule_cron", "every day", "cron"),
        ("unknown_field", 1, "unknown_field"),
    ],
)
def test_field_rules(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MatViewDefinition(name="mv", sql=SQL, **{field: value})


def test_definitions_are_frozen() -> None:
    definition = MatViewDefinition(name="mv", sql=SQL)
    with pytest.raises(ValueError):
        definition.sql = "SELECT 2"  # type: ignore[misc]


def test_load_definitions_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "matviews.yaml"
    path.write_text(
        """
views:
  - name: mv_users
    sql: SELECT id, email FROM users
    refresh_strategy: concurrent
    unique_index_columns: [id]
    indexes: [[email]]
    row_count_strategy: exact
    schedule_cron: "0 3 * * *"
    dependencies: [raw.events]
    description: Users
    group_name: core
    owners: [team:data]
    tags: {tier: gold}
  - name: reports.mv_plans
    sql: SELECT plan, count(*) AS n FROM users GROUP BY plan
"""
    )
    first, second = load_definitions(path)
    assert first.name == "public.mv_users" and first.indexes == [["email"]]
    assert first.dependencies == ["raw.events"] and first.tags == {"tier": "gold"}
    assert second.name == "reports.mv_plans" and second.refresh_strategy == "regular"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("views:\n  - sql: SELECT 1\n", r"views\[0\].*name: Field required"),
        ("views:\n  - name: mv\n", "sql: Field required"),
        ("views:\n  - name: mv\n    sql: SELECT 1\n    indexes: id\n", "indexes"),
        ("views:\n  - {name: mv, sql: SELECT 1}\n  - {name: public.mv, sql: SELECT 2}\n", "defined twice"),
        ("views: {name: mv}\n", "'views' must be a list"),
        ("other: []\n", "views:"),
        ("views: [\n", "invalid YAML"),
        ("views:\n  - just a string\n", "must be a mapping"),
    ],
)
def test_bad_yaml_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "matviews.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        load_definitions(path)
    assert "\n" not in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read definitions file"):
        load_definitions(tmp_path / "absent.yaml")


def test_bad_arguments_fail_before_any_connection() -> None:
    """An unreachable DSN proves that validation happens before connecting."""
    definition = MatViewDefinition(name="mv", sql=SQL)
    mv = MatViews(dsn="postgresql://nobody@127.0.0.1:1/none", definitions=[definition])
    with pytest.raises(ValueError, match="accepted"):
        mv.refresh("mv", "approximately")
    with pytest.raises(ValueError, match="accepted"):
        mv.create("mv", "please")
    with pytest.raises(ValueError, match="accepted"):
        mv.delete("mv", {"cascade": True, "force": True})
    with pytest.raises(ValueError, match="strategy"):
        mv.refresh("mv", strategy="fastest")
    with pytest.raises(ValueError, match="unknown view 'nope'"):
        mv.refresh("nope")
    with pytest.raises(ValueError, match="view name"):
        mv.refresh('mv"; DROP TABLE users; --')
