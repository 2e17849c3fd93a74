"""docs/architecture.md stays true: its file map lists every module, modules stay small, and
the "to add X" table's claims hold in the code."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import scalar

from matviews_dagster.core.definition import MatViewDefinition
from matviews_dagster.core.services.refresh import STRATEGIES
from matviews_dagster.core.store import RunStore
from matviews_dagster.core.store.migrations import RESULT_COLUMNS, RUN_TABLES
from matviews_dagster.core.vocabulary import REFRESH_STRATEGIES, Strategy

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "matviews_dagster"
MAP = ROOT / "docs" / "architecture.md"
MAX_LINES = 300


def modules() -> set[str]:
    return {str(path.relative_to(ROOT)) for path in PACKAGE.rglob("*.py")}


def test_the_file_map_lists_every_module_once() -> None:
    listed = re.findall(r"^\| `(matviews_dagster/[^`]+\.py)` \|", MAP.read_text(), flags=re.M)
    assert len(listed) == len(set(listed)), "a module is listed twice"
    assert set(listed) - modules() == set(), "docs/architecture.md lists modules that do not exist"
    assert modules() - set(listed) == set(), "docs/architecture.md's file map misses modules"


def test_every_file_the_architecture_names_exists() -> None:
    named = set(re.findall(r"`((?:matviews_dagster/|core/|cli/|tests/|docs/)?[\w/]+\.(?:py|md))`", MAP.read_text()))
    missing = [
        name
        for name in named
        if not any((base / name).exists() for base in (ROOT, PACKAGE, ROOT / "docs", ROOT / "tests"))
    ]
    assert missing == [], "docs/architecture.md names files that do not exist"


def test_every_module_is_under_the_size_limit() -> None:
    sizes = {name: len((ROOT / name).read_text().splitlines()) for name in modules()}
    assert {name: lines for name, lines in sizes.items() if lines >= MAX_LINES} == {}


def test_every_strategy_name_has_an_implementation_and_every_interface_offers_it() -> None:
    assert set(STRATEGIES) == set(REFRESH_STRATEGIES)
    assert {member.value for member in Strategy} == set(REFRESH_STRATEGIES)  # the Dagster run config
    for name in REFRESH_STRATEGIES:  # the definition field accepts each name (concurrent needs a key)
        definition = MatViewDefinition(
            name="v", sql="SELECT 1 AS id", refresh_strategy=name, unique_index_columns=["id"]
        )
        assert definition.refresh_strategy == name


def test_a_mat_views_is_built_from_settings_alone() -> None:
    """One way to build the client from configuration: every ``MatViews(...)`` the package
    makes passes ``settings=`` (a ``MatViewsSettings``), never the settings' fields one by one."""
    import ast

    calls = [
        (str(path.relative_to(ROOT)), [keyword.arg for keyword in node.keywords])
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "MatViews"
    ]
    assert calls, "the package builds MatViews somewhere"
    assert [(path, keywords) for path, keywords in calls if "settings" not in keywords] == []


def test_result_columns_exist_in_their_tables_and_are_written_from_meta(dsn, db) -> None:
    store = RunStore(dsn)
    try:
        store.migrate()
        for column in RESULT_COLUMNS:
            for kind in column.kinds:
                found = scalar(
                    db,
                    "SELECT data_type FROM information_schema.columns WHERE table_name = %s AND column_name = %s",
                    (RUN_TABLES[kind], column.name),
                )
                assert found == column.sql_type, (kind, column.name)
                meta: dict = {}
                cursor = meta
                for key in column.path[:-1]:
                    cursor = cursor.setdefault(key, {})
                cursor[column.path[-1]] = 42
                run_id = store.start(kind, view_name="public.v", database_name="db", definition_id=None, meta={})
                store.finish(kind, run_id, status="success", duration_ms=1, meta=meta)
                assert store.history(kind=kind, view="public.v", limit=1)[0][column.name] == 42
    finally:
        store.close()


def test_every_definition_field_survives_the_mirror(dsn) -> None:
    values = {
        "refresh_strategy": "concurrent",
        "unique_index_columns": ["id"],
        "indexes": [["email"]],
        "row_count_strategy": "exact",
        "schedule_cron": "0 3 * * *",
        "statement_timeout": 30.0,
        "dependencies": ["public.users"],
        "description": "Users",
        "group_name": "reporting",
        "owners": ["team:data"],
        "tags": {"tier": "gold"},
        "search_path": ["reporting", "public"],
        "column_descriptions": {"email": "Primary email"},
        "on_definition_change": "fail",
        "automation": {"on_cron": "0 4 * * *"},
        "freshness": {"warn_after": "1h", "fail_after": "6h"},
        "schema_change_severity": "error",
        "strategy_advice": "off",
        "database": "warehouse",
    }
    tenant_values = {"tenants": {"schemas_like": "tenant_%", "exclude": ["tenant_test"]}}  # no search_path with it
    untested = set(MatViewDefinition.model_fields) - {"name", "sql"} - set(values) - set(tenant_values)
    assert untested == set(), "give the new field a non-default value here"
    definition = MatViewDefinition(name="reporting.mv_users", sql="SELECT 1 AS id, 'a' AS email", **values)
    template = MatViewDefinition(name="mv_usage", sql="SELECT 1 AS id", **tenant_values)
    store = RunStore(dsn)
    try:
        ids = store.upsert_definitions([definition, template])
        rebuilt = [store.get_definition(ids[d.name]) for d in (definition, template)]
    finally:
        store.close()
    assert rebuilt == [definition, template]


def imports_of(path: Path) -> set[str]:
    """The package modules ``path`` imports, anywhere in it (inside functions and
    ``TYPE_CHECKING`` blocks too), as paths relative to the repository."""
    import ast

    package = path.relative_to(ROOT).parent.parts
    found: set[str] = set()

    def add(parts: tuple[str, ...]) -> None:
        for candidate in (Path(*parts).with_suffix(".py"), Path(*parts) / "__init__.py"):
            if (ROOT / candidate).exists():
                found.add(str(candidate))
                return

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("matviews_dagster"):
                    add(tuple(alias.name.split(".")))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = (*base, *(node.module.split(".") if node.module else ()))
            elif node.module and node.module.startswith("matviews_dagster"):
                module = tuple(node.module.split("."))
            else:
                continue
            add(module)
            for alias in node.names:  # `from . import batch`: a module, not a name
                add((*module, alias.name))
    found.discard(str(path.relative_to(ROOT)))
    return found


def test_no_import_circles_in_the_package() -> None:
    """Strongly connected files of the import graph (Tarjan): every one must stand alone.
    A package's ``__init__`` re-exporting its own modules is not a circle of the code."""
    graph = {name: imports_of(ROOT / name) for name in modules()}
    graph = {
        name: {t for t in targets if not t.endswith("__init__.py") or not name.startswith(str(Path(t).parent))}
        for name, targets in graph.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                circles.append(sorted(members))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    assert circles == [], f"import circles: {circles}"


def test_the_core_imports_only_the_core_and_never_its_facade() -> None:
    """The core sits under the Dagster layer and the CLI, and its helpers take a small context,
    never the ``MatViews`` facade built on top of them (imports inside functions included;
    ``tests/test_layering.py`` proves no Dagster import is loaded). The estate (``Estate``, a
    ``MatViews`` per database, and running a command over them) sits on the facade, as the
    CLI and the Dagster layer do; nothing under the facade imports it either."""
    core, facade = "matviews_dagster/core/", "matviews_dagster/core/matviews.py"
    above = {facade, f"{core}estate.py", f"{core}estate_runs.py"}
    allowed = {"matviews_dagster/version.py"}  # the package's version, a constant (the cache key's)
    wrong = {
        name: sorted(t for t in imports_of(ROOT / name) if (not t.startswith(core) and t not in allowed) or t in above)
        for name in modules()
        if name.startswith(core) and name not in (*above, f"{core}__init__.py")
    }
    on_top = {
        name: sorted(t for t in imports_of(ROOT / name) if not t.startswith(core) and t not in allowed)
        for name in above
    }
    assert {name: targets for name, targets in on_top.items() if targets} == {}
    assert {name: targets for name, targets in wrong.items() if targets} == {}
