"""The names PostgreSQL gives a query's unnamed output columns (``FigureColname`` in
``parse_target.c``), from the raw parse tree: what a view not yet created will call its columns."""

from __future__ import annotations

from typing import Any

from .lineage_sql import sval

NAMED_BY_KIND = {
    "A_ArrayExpr": "array",
    "RowExpr": "row",
    "CoalesceExpr": "coalesce",
    "GroupingFunc": "grouping",
    "XmlSerialize": "xmlserialize",
    "JsonObjectConstructor": "json_object",
    "JsonArrayConstructor": "json_array",
    "JsonArrayQueryConstructor": "json_array",
    "JsonParseExpr": "json",
    "JsonScalarExpr": "json_scalar",
    "JsonSerializeExpr": "json_serialize",
    "JsonObjectAgg": "json_objectagg",
    "JsonArrayAgg": "json_arrayagg",
}


def figure_name(value: Any) -> str:
    """The name PostgreSQL gives an unnamed output column (``FigureColname``)."""
    name, strength = _figure(value)
    return name if strength else "?column?"


def _figure(value: Any) -> tuple[str, int]:
    """``(name, strength)`` as PostgreSQL's ``FigureColnameInternal``: 2 a sure name, 1 a type's
    name (a weaker guess, which ``CASE`` and a cast override), 0 none."""
    if not isinstance(value, dict) or not value:
        return "?column?", 0
    ((kind, node),) = value.items()
    if kind == "ColumnRef":
        last = node["fields"][-1]
        return (sval(last), 2) if "String" in last else ("?column?", 0)
    if kind == "A_Indirection":
        strings = [sval(i) for i in node.get("indirection", []) if "String" in i]
        return (strings[-1], 2) if strings else _figure(node.get("arg"))
    if kind == "FuncCall":
        return sval(node["funcname"][-1]), 2
    if kind == "A_Expr" and node.get("kind") == "AEXPR_NULLIF":
        return "nullif", 2
    if kind == "TypeCast":
        inner = _figure(node.get("arg"))
        names = node.get("typeName", {}).get("names", [])
        return inner if inner[1] > 1 or not names else (sval(names[-1]), 1)
    if kind == "CollateClause":
        return _figure(node.get("arg"))
    if kind == "CaseExpr":
        result = _figure(node.get("defresult"))
        return result if result[1] > 1 else ("case", 1)
    if kind == "SubLink":
        link = node.get("subLinkType")
        if link in ("EXISTS_SUBLINK", "ARRAY_SUBLINK"):
            return ("exists" if link == "EXISTS_SUBLINK" else "array"), 2
        targets = node["subselect"]["SelectStmt"].get("targetList", []) if link == "EXPR_SUBLINK" else []
        if targets:
            res = targets[0]["ResTarget"]
            return (res["name"], 2) if res.get("name") else _figure(res.get("val"))
        return "?column?", 0
    if kind == "MinMaxExpr":
        return ("greatest" if node.get("op") == "IS_GREATEST" else "least"), 2
    if kind == "SQLValueFunction":
        return str(node.get("op", "")).removeprefix("SVFOP_").removesuffix("_N").lower(), 2
    if kind == "XmlExpr":
        return str(node.get("op", "IS_XMLELEMENT")).removeprefix("IS_").lower(), 2
    if kind == "JsonFuncExpr":
        return str(node.get("op", "JSON_VALUE_OP")).removesuffix("_OP").lower(), 2
    if kind in NAMED_BY_KIND:
        return NAMED_BY_KIND[kind], 2
    return "?column?", 0
