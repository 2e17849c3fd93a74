"""SQL analysis with pglast, the real PostgreSQL parser.

``validate_query`` accepts exactly one read-only query statement; ``referenced_relations``
lists the tables and views a query reads (CTE names excluded).
"""

from __future__ import annotations

from functools import lru_cache

from pglast import ast, parse_sql
from pglast.parser import ParseError
from pglast.visitors import Visitor

_WRITES = (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)


class _Collector(Visitor):
    def __init__(self) -> None:
        self.relations: list[ast.RangeVar] = []
        self.cte_names: set[str] = set()
        self.writes: list[str] = []
        self.into = False
        self.locking = False

    def visit_RangeVar(self, ancestors: object, node: ast.RangeVar) -> None:
        self.relations.append(node)

    def visit_CommonTableExpr(self, ancestors: object, node: ast.CommonTableExpr) -> None:
        self.cte_names.add(node.ctename)

    def visit_SelectStmt(self, ancestors: object, node: ast.SelectStmt) -> None:
        self.into = self.into or node.intoClause is not None
        self.locking = self.locking or bool(node.lockingClause)

    def visit(self, ancestors: object, node: object) -> None:
        if isinstance(node, _WRITES):
            self.writes.append(type(node).__name__.removesuffix("Stmt").upper())


def _parse_one_select(query: str) -> ast.SelectStmt:
    if not isinstance(query, str) or not query.strip():
        raise ValueError("sql must be a non-empty query")
    try:
        statements = parse_sql(query)
    except ParseError as exc:
        raise ValueError(f"sql has a syntax error: {exc}") from None
    if len(statements) != 1:
        raise ValueError(
            f"sql must be exactly one query statement, found {len(statements)}; remove the extra statements"
        )
    stmt = statements[0].stmt
    if not isinstance(stmt, ast.SelectStmt):
        kind = type(stmt).__name__.removesuffix("Stmt")
        raise ValueError(f"sql must be a query (SELECT, WITH ... SELECT, VALUES or TABLE), not {kind}")
    return stmt


def _analyze(query: str) -> _Collector:
    """Parse and walk ``query`` once: validation and dependency discovery share the result."""
    if not isinstance(query, str):
        raise ValueError("sql must be a non-empty query")
    return _analyze_text(query)


@lru_cache(maxsize=4096)
def _analyze_text(query: str) -> _Collector:
    collector = _Collector()
    collector(_parse_one_select(query))
    return collector


def validate_query(query: str) -> None:
    """Raise ``ValueError`` unless ``query`` is exactly one read-only query statement."""
    collector = _analyze(query)
    if collector.writes:
        raise ValueError(f"sql must not modify data, but it contains {', '.join(sorted(set(collector.writes)))}")
    if collector.into:
        raise ValueError("sql must not use SELECT ... INTO; the view itself is the target")
    if collector.locking:
        raise ValueError("sql must not use FOR UPDATE/SHARE locking clauses")


def referenced_relations(query: str) -> list[tuple[str | None, str]]:
    """Relations read by ``query`` as ``(schema or None, name)``, sorted, without duplicates.

    Unqualified names that match a CTE of the query are not relations and are left out.
    """
    collector = _analyze(query)
    seen: dict[tuple[str | None, str], None] = {}
    for rv in collector.relations:
        if rv.schemaname is None and rv.relname in collector.cte_names:
            continue
        seen.setdefault((rv.schemaname, rv.relname), None)
    return sorted(seen, key=lambda rel: (rel[0] or "", rel[1]))
