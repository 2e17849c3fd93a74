"""The parse-tree side of column lineage (``lineage``): the shapes a query's columns take
while it is walked (``Col``, ``Range``, ``Scope``), PostgreSQL's naming of unnamed columns
(``FigureColname``), name lookup in ``FROM`` scopes, and the parse tree itself, from pglast
(the JSON tree, parsed once per query text). Internal to ``lineage`` and
``lineage_resolver``; relations are ``ColumnSource`` / ``RelationColumns``, the public shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .analysis import select_tree
from .names import QualifiedName


@dataclass(frozen=True, order=True)
class ColumnSource:
    """One upstream column: ``relation.column`` (a table, a materialized view, a foreign table)."""

    relation: QualifiedName
    column: str

    def __str__(self) -> str:
        return f"{self.relation}.{self.column}"


@dataclass(frozen=True)
class RelationColumns:
    """A relation as the catalog lists it: its columns in order; for a plain view, its query
    (``pg_get_viewdef``) and the relations it reads (``pg_depend``), so lineage is followed
    through it to its tables; for a materialized view, the query it was built with
    (``deployed_sql``, which may differ from its definition until the change is applied)."""

    name: QualifiedName
    columns: tuple[str, ...]
    view_sql: str | None = None
    view_reads: tuple[QualifiedName, ...] = ()
    deployed_sql: str | None = None

    def bind(self, schema: str | None, name: str) -> QualifiedName:
        """A name in this view's query (every name but ``pg_catalog``'s is qualified, as the
        catalog read them): the relation it reads of that name."""
        if schema is not None:
            return QualifiedName(schema, name)
        return next((r for r in self.view_reads if r.name == name), QualifiedName("pg_catalog", name))


Resolve = Callable[[str | None, str], QualifiedName]
"""Binds a relation name of a query, ``(schema or None, name)``, to the relation it means."""

Deps = frozenset[ColumnSource]


@dataclass(frozen=True)
class Col:
    name: str
    deps: Deps = frozenset()
    why: str | None = None
    unknown_width: bool = False  # a ``*`` over columns the catalog does not list


@dataclass
class Range:
    """A ``FROM`` item: its alias, its columns (``None``: not known), the relation it reads."""

    alias: str | None
    cols: list[Col] | None
    relation: QualifiedName | None = None
    schema: str | None = None
    children: list[Range] = field(default_factory=list)
    label: str | None = None  # what to call it in a reason, e.g. ``function f()``

    def find(self, alias: str, schema: str | None = None) -> Range | None:
        if self.alias == alias and (schema is None or self.schema == schema):
            return self
        for child in self.children:
            found = child.find(alias, schema)
            if found is not None:
                return found
        return None

    def column(self, name: str) -> Col | None:
        if self.cols is None:
            return None
        matches = [c for c in self.cols if c.name == name]
        return matches[0] if matches else None


@dataclass
class Scope:
    ranges: list[Range]
    parent: Scope | None
    ctes: dict[str, list[Col] | None]


# Set-returning functions of PostgreSQL whose rows come from their arguments alone: their
# columns depend on the columns the arguments name. (Column names: a function returning a
# scalar gives one column named after its alias or itself.)
PURE_SRF: dict[str, tuple[str, ...] | None] = {
    "generate_series": None,
    "generate_subscripts": None,
    "unnest": None,
    "regexp_matches": None,
    "regexp_split_to_table": None,
    "string_to_table": None,
    "json_array_elements": None,
    "jsonb_array_elements": None,
    "json_array_elements_text": None,
    "jsonb_array_elements_text": None,
    "json_object_keys": None,
    "jsonb_object_keys": None,
    "jsonb_path_query": None,
    "json_each": ("key", "value"),
    "jsonb_each": ("key", "value"),
    "json_each_text": ("key", "value"),
    "jsonb_each_text": ("key", "value"),
    "json_to_record": (),
    "jsonb_to_record": (),
    "json_to_recordset": (),
    "jsonb_to_recordset": (),
}


def unqualified(name: str, scope: Scope | None) -> tuple[Deps, str | None]:
    """A column named without its relation: the one FROM item that has it, in this query, then
    the enclosing ones (a correlated reference); else a FROM item's whole row."""
    while scope is not None:
        having = [item.column(name) for item in scope.ranges if item.column(name) is not None]
        if len(having) == 1 and having[0] is not None:
            return having[0].deps, having[0].why
        unknown = [item for item in scope.ranges if item.cols is None]
        if not having and len(unknown) == 1 and unknown[0].relation is not None:
            return frozenset({ColumnSource(unknown[0].relation, name)}), None
        if not having and len(unknown) == 1:
            what = unknown[0].label or str(unknown[0].relation or unknown[0].alias)
            return frozenset(), f"column {name} comes from {what}, whose columns are not known"
        if not having and unknown:
            return frozenset(), f"column {name} may come from relations whose columns are not known"
        whole = next((item for item in scope.ranges if item.find(name) is not None), None)
        if not having and whole is not None:
            row = whole.find(name)
            assert row is not None
            if row.cols is None:
                return frozenset(), f"the columns of {name} are not known"
            return frozenset().union(*(c.deps for c in row.cols)), first([c.why for c in row.cols if c.why])
        scope = scope.parent
    return frozenset(), f"column {name} was not found among the query's FROM items"


def lookup_range(scope: Scope | None, names: list[str]) -> Range | None:
    schema, alias = (names[-2], names[-1]) if len(names) >= 2 else (None, names[-1])
    while scope is not None:
        for item in scope.ranges:
            found = item.find(alias, schema)
            if found is not None:
                return found
        scope = scope.parent
    return None


def set_operation(left: list[Col], right: list[Col]) -> list[Col]:
    if any(c.unknown_width for c in (*left, *right)) or len(left) != len(right):
        why = first([c.why for c in (*left, *right) if c.why]) or "the branches' columns could not be matched"
        return [Col(c.name, frozenset(), why, c.unknown_width) for c in left]
    return [Col(a.name, a.deps | b.deps, a.why or b.why) for a, b in zip(left, right, strict=True)]


def renamed(cols: list[Col], names: Sequence[str]) -> list[Col]:
    """Columns renamed by an alias's column list (``AS t(a, b)``), the first ones only."""
    if not names:
        return cols
    return [Col(names[i], c.deps, c.why, c.unknown_width) if i < len(names) else c for i, c in enumerate(cols)]


def reads_itself(stmt: Any, name: str) -> bool:
    stack = [stmt]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            rv = node.get("RangeVar")
            if isinstance(rv, dict) and rv.get("relname") == name and rv.get("schemaname") is None:
                return True
            stack.extend(v for v in node.values() if isinstance(v, (dict, list)))
    return False


def star_fields(value: Any) -> list[str] | None:
    """``[]`` for ``*``, ``["t"]`` for ``t.*``; ``None`` when the target is not a star."""
    ref = value.get("ColumnRef") if isinstance(value, dict) else None
    if not ref or "A_Star" not in ref["fields"][-1]:
        return None
    return [sval(f) for f in ref["fields"][:-1]]


def sval(node: dict[str, Any]) -> str:
    return str(node.get("String", {}).get("sval", ""))


def first(items: Iterable[str | None]) -> str | None:
    return next((item for item in items if item), None)


def function_name(call: Any) -> str:
    if isinstance(call, dict) and "FuncCall" in call:
        return sval(call["FuncCall"]["funcname"][-1])
    if isinstance(call, dict) and "SQLValueFunction" in call:
        return "sql_value_function"
    return "function"


def column_def_name(node: Any) -> str:
    if not isinstance(node, dict):
        return ""
    for kind in ("ColumnDef", "RangeTableFuncCol", "JsonTableColumn"):
        if kind in node:
            return str(node[kind].get("colname") or node[kind].get("name") or "")
    return ""


TREES: dict[str, dict[str, Any] | None] = {}


def tree(query: str) -> dict[str, Any] | None:
    """The ``SelectStmt`` of ``query`` (parsed once per text), ``None`` when it is not one."""
    if query not in TREES:
        try:
            found: dict[str, Any] | None = select_tree(query)
        except ValueError:
            found = None
        if len(TREES) >= 4096:
            TREES.clear()
        TREES[query] = found
    return TREES[query]


def joined(node: dict[str, Any], left: Range, right: Range) -> Range:
    """A ``JoinExpr`` over its two sides: their columns, those of ``USING`` / ``NATURAL`` merged
    first, from the side PostgreSQL takes them (left for inner and left joins, right for right
    joins, both for full joins)."""
    alias = (node.get("alias") or {}).get("aliasname") or (node.get("join_using_alias") or {}).get("aliasname")
    kind = node.get("jointype", "JOIN_INNER")
    using = [sval(n) for n in node.get("usingClause", [])]
    if node.get("isNatural"):
        if left.cols is None or right.cols is None:
            return Range(alias, None, children=[left, right])
        right_names = {c.name for c in right.cols}
        using = [c.name for c in left.cols if c.name in right_names]
    if left.cols is None or right.cols is None:
        cols = None if using or left.cols is None or right.cols is None else [*left.cols, *right.cols]
        return Range(alias, cols, children=[left, right])
    merged = []
    for name in using:
        l_col, r_col = left.column(name), right.column(name)
        if l_col is None or r_col is None:
            merged.append(Col(name, frozenset(), f"join column {name} is not on both sides"))
            continue
        deps = {"JOIN_LEFT": l_col.deps, "JOIN_RIGHT": r_col.deps}.get(kind, l_col.deps)
        if kind == "JOIN_FULL":
            deps = l_col.deps | r_col.deps
        merged.append(Col(name, deps, l_col.why or r_col.why))
    rest = [c for c in left.cols if c.name not in using] + [c for c in right.cols if c.name not in using]
    return Range(alias, merged + rest, children=[left, right])
