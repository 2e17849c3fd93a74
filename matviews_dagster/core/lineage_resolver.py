"""Column lineage resolution: one walk of a query's parse tree, resolving every column of
every ``FROM`` item, CTE and subquery to the upstream columns it is computed from (the rules
are ``lineage``'s)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .lineage_names import figure_name
from .lineage_sql import (
    PURE_SRF,
    Col,
    ColumnSource,
    Deps,
    Range,
    RelationColumns,
    Resolve,
    Scope,
    column_def_name,
    first,
    function_name,
    joined,
    lookup_range,
    reads_itself,
    renamed,
    set_operation,
    star_fields,
    sval,
    tree,
    unqualified,
)
from .names import QualifiedName


class Resolver:
    """Walks one query (and the plain views it reads, ``depth`` deep, except those in
    ``stop_at``, whose own columns are the sources) against ``catalog``."""

    def __init__(
        self,
        resolve: Resolve,
        catalog: Mapping[QualifiedName, RelationColumns],
        depth: int = 0,
        stop_at: frozenset[QualifiedName] = frozenset(),
    ) -> None:
        self.resolve, self.catalog, self.depth, self.stop_at = resolve, catalog, depth, stop_at

    def select(self, stmt: dict[str, Any], parent: Scope | None, ctes: dict[str, list[Col] | None]) -> list[Col]:
        ctes = dict(ctes)
        with_clause = stmt.get("withClause")
        if with_clause:
            recursive = bool(with_clause.get("recursive"))
            for item in with_clause.get("ctes", []):
                cte = item["CommonTableExpr"]
                ctes[cte["ctename"]] = self._cte(cte, parent, ctes, recursive)
        op = stmt.get("op", "SETOP_NONE")
        if op != "SETOP_NONE":
            left = self.select(stmt["larg"], parent, ctes)
            right = self.select(stmt["rarg"], parent, ctes)
            return set_operation(left, right)
        if "valuesLists" in stmt:
            rows = [row["List"]["items"] for row in stmt["valuesLists"]]
            width = max((len(row) for row in rows), default=0)
            scope = parent or Scope([], None, ctes)
            cols = []
            for index in range(width):
                deps, whys = self.expr([row[index] for row in rows if index < len(row)], scope, ctes)
                cols.append(Col(f"column{index + 1}", deps, first(whys)))
            return cols
        scope = Scope([], parent, ctes)
        for item in stmt.get("fromClause", []):
            scope.ranges.append(self.from_item(item, scope, ctes))
        cols: list[Col] = []
        for target in stmt.get("targetList", []):
            res = target["ResTarget"]
            value = res.get("val")
            wanted = star_fields(value)
            if wanted is not None:
                cols.extend(self.expand(wanted, scope))
                continue
            deps, whys = self.expr(value, scope, ctes)
            cols.append(Col(res.get("name") or figure_name(value), deps, first(whys)))
        return cols

    def _cte(
        self, cte: dict[str, Any], parent: Scope | None, ctes: dict[str, list[Col] | None], recursive: bool
    ) -> list[Col] | None:
        name, query = cte["ctename"], cte["ctequery"]
        if "SelectStmt" not in query:
            return None  # a data-modifying CTE: refused by validation, never a view's
        stmt = query["SelectStmt"]
        names = [sval(n) for n in cte.get("aliascolnames", [])]
        if recursive and stmt.get("op", "SETOP_NONE") != "SETOP_NONE" and reads_itself(stmt, name):
            ctes = dict(ctes)
            ctes[name] = renamed(self.select(stmt["larg"], parent, ctes), names)
            for _ in range(20):  # deps only grow; a fixed point comes within the columns' number
                cols = renamed(self.select(stmt, parent, ctes), names)
                if cols == ctes[name]:
                    break
                ctes[name] = cols
            return ctes[name]
        return renamed(self.select(stmt, parent, ctes), names)

    def from_item(self, item: dict[str, Any], scope: Scope, ctes: dict[str, list[Col] | None]) -> Range:
        ((kind, node),) = item.items()
        alias = node.get("alias") or {}
        colnames = [sval(n) for n in alias.get("colnames", [])]
        if kind == "RangeVar":
            return self.relation(node, ctes, alias.get("aliasname"), colnames)
        if kind == "RangeTableSample":
            return self.from_item(node["relation"], scope, ctes)
        if kind == "RangeSubselect":
            cols = self.select(node["subquery"]["SelectStmt"], scope, ctes)
            return Range(alias.get("aliasname"), renamed(cols, colnames))
        if kind == "JoinExpr":
            return self.join(node, scope, ctes)
        if kind == "RangeFunction":
            return self.function(node, scope, ctes, alias.get("aliasname"), colnames)
        # XMLTABLE, JSON_TABLE: columns named in the query, computed from its document argument
        deps, whys = self.expr({k: v for k, v in node.items() if k not in ("columns", "alias")}, scope, ctes)
        names = [column_def_name(c) for c in node.get("columns", [])]
        why = first(whys)
        return Range(alias.get("aliasname"), renamed([Col(n, deps, why) for n in names if n], colnames))

    def relation(
        self, node: dict[str, Any], ctes: dict[str, list[Col] | None], alias: str | None, colnames: list[str]
    ) -> Range:
        schema, name = node.get("schemaname"), node["relname"]
        if schema is None and name in ctes:
            cols = ctes[name]
            return Range(alias or name, None if cols is None else renamed(cols, colnames))
        relation = self.resolve(schema, name)
        known = self.catalog.get(relation)
        if known is None:
            cols = None
        elif known.view_sql is not None and relation not in self.stop_at:
            cols = self.plain_view(known)
        else:
            cols = [Col(c, frozenset({ColumnSource(relation, c)})) for c in known.columns]
        if cols is not None:
            cols = renamed(cols, colnames)
        return Range(alias or name, cols, relation, None if alias else relation.schema)

    def plain_view(self, view: RelationColumns) -> list[Col]:
        """The columns of a plain view, each with the lineage of its query (followed to tables)."""
        why = f"plain view {view.name} could not be followed"
        if self.depth >= 16 or view.view_sql is None:
            return [Col(c, frozenset(), why) for c in view.columns]
        found = query_columns(view.view_sql, Resolver(view.bind, self.catalog, self.depth + 1, self.stop_at))
        if found is None or len(found) != len(view.columns) or any(c.unknown_width for c in found):
            return [Col(c, frozenset(), why) for c in view.columns]
        return [Col(name, c.deps, c.why) for name, c in zip(view.columns, found, strict=True)]

    def join(self, node: dict[str, Any], scope: Scope, ctes: dict[str, list[Col] | None]) -> Range:
        left = self.from_item(node["larg"], scope, ctes)
        scope.ranges.append(left)  # a LATERAL right side sees the left one
        try:
            right = self.from_item(node["rarg"], scope, ctes)
        finally:
            scope.ranges.pop()
        return joined(node, left, right)

    def function(
        self,
        node: dict[str, Any],
        scope: Scope,
        ctes: dict[str, list[Col] | None],
        alias: str | None,
        colnames: list[str],
    ) -> Range:
        cols: list[Col] | None = []
        for entry in node.get("functions", []):
            call, definitions = entry["List"]["items"]
            deps, whys = self.expr(call, scope, ctes)
            fname = function_name(call)
            defined = [column_def_name(c) for c in (definitions or {}).get("List", {}).get("items", [])]
            defined += [column_def_name(c) for c in node.get("coldeflist", [])]
            pure = fname in PURE_SRF
            why = first(whys) if pure else f"comes from function {fname}(), whose sources PostgreSQL does not show"
            shape = PURE_SRF.get(fname)
            if defined:
                names = defined
            elif shape:
                names = list(shape)
            elif pure and shape is None:
                names = [alias if alias and len(node.get("functions", [])) == 1 else fname]
            else:
                cols = None  # a function of the database returning a row type: columns not known
                break
            assert cols is not None
            cols.extend(Col(n, deps if pure else frozenset(), why) for n in names if n)
        if cols is not None and node.get("ordinality"):
            cols.append(Col("ordinality"))
        names = [function_name(entry["List"]["items"][0]) for entry in node.get("functions", [])]
        label = "function " + ", ".join(f"{n}()" for n in names)
        if cols is None:
            return Range(alias or names[0], None, label=label)
        return Range(alias or names[0], renamed(cols, colnames), label=label)

    def expand(self, star: list[str], scope: Scope) -> list[Col]:
        if not star:
            ranges = scope.ranges
        else:
            found = lookup_range(scope, star)
            if found is None:
                return [Col("*", frozenset(), f"{'.'.join(star)}.* names no relation of the query", True)]
            ranges = [found]
        cols: list[Col] = []
        for item in ranges:
            if item.cols is None:
                what = item.label or str(item.relation or item.alias or "a FROM item")
                cols.append(Col("*", frozenset(), f"the columns of {what} are not known", True))
            else:
                cols.extend(item.cols)
        return cols

    def expr(self, node: Any, scope: Scope, ctes: dict[str, list[Col] | None]) -> tuple[Deps, list[str]]:
        deps: set[ColumnSource] = set()
        whys: list[str] = []
        stack = [node]
        while stack:
            current = stack.pop()
            if isinstance(current, list):
                stack.extend(current)
                continue
            if not isinstance(current, dict):
                continue
            for key, value in current.items():
                if key == "ColumnRef":
                    found, why = self.column_ref(value, scope)
                    deps |= found
                    if why:
                        whys.append(why)
                elif key == "A_Indirection" and _field_of_row(value):  # (t).col: a column of t, not all of t
                    found, why = self.column_ref(
                        {"fields": [*value["arg"]["ColumnRef"]["fields"], value["indirection"][0]]}, scope
                    )
                    deps |= found
                    if why:
                        whys.append(why)
                    stack.append(value.get("indirection", [])[1:])
                elif key == "SubLink":
                    stack.append(value.get("testexpr"))
                    if value.get("subLinkType") != "EXISTS_SUBLINK":
                        for col in self.select(value["subselect"]["SelectStmt"], scope, ctes):
                            deps |= col.deps
                            if col.why:
                                whys.append(col.why)
                elif isinstance(value, (dict, list)):
                    stack.append(value)
        return frozenset(deps), whys

    def column_ref(self, ref: dict[str, Any], scope: Scope) -> tuple[Deps, str | None]:
        fields = ref.get("fields", [])
        if any("A_Star" in f for f in fields):  # t.* as an argument: the whole row of t
            names = [sval(f) for f in fields if "String" in f]
            cols = self.expand(names, scope)
            return frozenset().union(*(c.deps for c in cols)), first([c.why for c in cols if c.why])
        names = [sval(f) for f in fields]
        text = ".".join(names)
        if len(names) == 1:
            return unqualified(names[0], scope)
        found = lookup_range(scope, names[:-1])
        if found is None:
            deps, why = unqualified(names[0], scope)  # composite_column.field
            if deps:
                return deps, why
            return frozenset(), f"{text} names no column of the query"
        col = found.column(names[-1])
        if col is not None:
            return col.deps, col.why
        if found.cols is None and found.relation is not None:
            return frozenset({ColumnSource(found.relation, names[-1])}), None
        if found.cols is None:
            return frozenset(), f"the columns of {found.label or found.alias} are not known"
        return frozenset(), f"{text} names no column of {found.alias}"


def query_columns(query: str, resolver: Resolver) -> list[Col] | None:
    stmt = tree(query)
    if stmt is None:
        return None
    try:
        return resolver.select(stmt, None, {})
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, RecursionError):
        return None  # a tree shape not foreseen: unresolved, never a failed refresh


def _field_of_row(node: dict[str, Any]) -> bool:
    """``(t).col``: a field taken from a name (a row or a composite column)."""
    arg, path = node.get("arg") or {}, node.get("indirection") or []
    return "ColumnRef" in arg and len(arg["ColumnRef"].get("fields", [])) == 1 and bool(path) and "String" in path[0]
