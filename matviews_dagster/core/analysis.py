"""SQL analysis with pglast, the real PostgreSQL parser.

``validate_query`` accepts exactly one read-only query statement; ``referenced_relations``
lists the tables and views a query reads (CTE names excluded). The parse tree comes from
PostgreSQL's parser as JSON (``parse_sql_json``), walked once per query text: about ten
times faster than building pglast's Python nodes, which matters for code locations of
hundreds of views.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

_WRITES = {"InsertStmt": "INSERT", "UpdateStmt": "UPDATE", "DeleteStmt": "DELETE", "MergeStmt": "MERGE"}


@dataclass(frozen=True)
class QueryFacts:
    """What one walk of a query's parse tree found."""

    relations: tuple[tuple[str | None, str], ...]
    cte_names: frozenset[str]
    writes: frozenset[str]
    into: bool
    locking: bool


def select_tree(query: str) -> dict[str, Any]:
    """The body of ``query``'s one ``SelectStmt`` in PostgreSQL's parse tree (JSON); else
    ``ValueError`` saying why (not one statement, not a query, a syntax error)."""
    from pglast.parser import ParseError, parse_sql_json  # imported when a query is parsed, not cached

    if not isinstance(query, str) or not query.strip():
        raise ValueError("sql must be a non-empty query")
    try:
        statements = json.loads(parse_sql_json(query)).get("stmts", [])
    except ParseError as exc:
        raise ValueError(f"sql has a syntax error: {exc}") from None
    if len(statements) != 1:
        raise ValueError(
            f"sql must be exactly one query statement, found {len(statements)}; remove the extra statements"
        )
    ((kind, body),) = statements[0]["stmt"].items()
    if kind != "SelectStmt":
        raise ValueError(
            f"sql must be a query (SELECT, WITH ... SELECT, VALUES or TABLE), not {kind.removesuffix('Stmt')}"
        )
    return body


_NOT_THE_STATEMENT = {"SQL_COMMENT", "C_COMMENT"}


def statement_text(query: str) -> str:
    """The query as PostgreSQL's lexer delimits it: from its first token to its last, without
    leading or trailing comments and trailing semicolons, so it can be embedded in a larger
    statement (``CREATE ... AS <query> WITH DATA``) without a comment swallowing the rest."""
    from pglast.parser import ParseError, scan

    if not isinstance(query, str) or not query.strip():
        raise ValueError("sql must be a non-empty query")
    try:
        tokens = [token for token in scan(query) if token.name not in _NOT_THE_STATEMENT]
    except ParseError as exc:
        raise ValueError(f"sql has a syntax error: {exc}") from None
    while tokens and tokens[-1].name == "ASCII_59":  # ';'
        tokens.pop()
    if not tokens:
        raise ValueError("sql must be a non-empty query")
    return query[tokens[0].start : tokens[-1].end + 1]


_FACTS: dict[str, QueryFacts] = {}
_MAX_FACTS = 4096


def analyze(query: str) -> QueryFacts:
    """Parse ``query`` (exactly one ``SELECT``, else ``ValueError``) and walk it once:
    validation and dependency discovery share the result, kept per query text."""
    if not isinstance(query, str):
        raise ValueError("sql must be a non-empty query")
    facts = _FACTS.get(query)
    if facts is None:
        facts = _walk(query)
        if len(_FACTS) >= _MAX_FACTS:
            _FACTS.clear()
        _FACTS[query] = facts
    return facts


def facts_as_json(query: str) -> dict[str, Any]:
    """The facts of an analysed query as plain JSON, for the definitions cache."""
    facts = asdict(analyze(query))
    return {key: sorted(value) if isinstance(value, frozenset) else value for key, value in facts.items()}


def remember(query: str, stored: dict[str, Any]) -> None:
    """Take facts from the definitions cache for ``query`` instead of parsing it again."""
    _FACTS[query] = QueryFacts(
        relations=tuple((schema, name) for schema, name in stored["relations"]),
        cte_names=frozenset(stored["cte_names"]),
        writes=frozenset(stored["writes"]),
        into=bool(stored["into"]),
        locking=bool(stored["locking"]),
    )


def _walk(query: str) -> QueryFacts:
    relations: list[tuple[str | None, str]] = []
    ctes: set[str] = set()
    writes: set[str] = set()
    into = locking = False
    stack: list[Any] = [{"SelectStmt": select_tree(query)}]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            if key == "RangeVar":
                relations.append((value.get("schemaname"), value["relname"]))
            elif key == "CommonTableExpr":
                ctes.add(value["ctename"])
            elif key in _WRITES:
                writes.add(_WRITES[key])
            elif key == "SelectStmt":
                into = into or "intoClause" in value
                locking = locking or bool(value.get("lockingClause"))
            if isinstance(value, (dict, list)):
                stack.append(value)
    return QueryFacts(tuple(relations), frozenset(ctes), frozenset(writes), into, locking)


def validate_query(query: str) -> None:
    """Raise ``ValueError`` unless ``query`` is exactly one read-only query statement."""
    facts = analyze(query)
    if facts.writes:
        raise ValueError(f"sql must not modify data, but it contains {', '.join(sorted(facts.writes))}")
    if facts.into:
        raise ValueError("sql must not use SELECT ... INTO; the view itself is the target")
    if facts.locking:
        raise ValueError("sql must not use FOR UPDATE/SHARE locking clauses")


def referenced_relations(query: str) -> list[tuple[str | None, str]]:
    """Relations read by ``query`` as ``(schema or None, name)``, sorted, without duplicates.

    Unqualified names that match a CTE of the query are not relations and are left out.
    """
    facts = analyze(query)
    seen: dict[tuple[str | None, str], None] = {}
    for schema, name in facts.relations:
        if schema is None and name in facts.cte_names:
            continue
        seen.setdefault((schema, name), None)
    return sorted(seen, key=lambda rel: (rel[0] or "", rel[1]))
