"""Indexes: the definition's (declared) indexes, the catalog's, and how they compare.

A declared index is a plain btree index on columns, unique (``unique_index_columns``) or not
(``indexes``); an index in the catalog is the same index when its key columns, uniqueness,
method and (absent) predicate agree, whatever its name.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..definition import MatViewDefinition
from ..names import MAX_IDENTIFIER_BYTES, QualifiedName
from .response import ServiceError
from .statement_log import StatementLog

Declared = tuple[tuple[str, ...], bool]
"""A declared index: its columns and whether it is unique."""


@dataclass(frozen=True)
class IndexShape:
    """One index of a relation as the catalog holds it."""

    name: str
    definition: str
    unique: bool
    method: str
    partial: bool
    key_columns: tuple[str | None, ...]  # None for an expression
    include: bool
    default_order: bool = True  # no DESC, NULLS FIRST, collation or operator class of its own
    tablespace: str | None = None
    comment: str | None = None

    def is_declared(self, declared: Declared) -> bool:
        columns, unique = declared
        plain = self.method == "btree" and not self.partial and self.default_order  # INCLUDE is fine
        return plain and self.unique == unique and self.key_columns == columns

    def build(self, log: StatementLog, name: str, table: QualifiedName) -> None:
        """Build this index as ``name`` on ``table``, in its tablespace, with its comment."""
        log.execute(sql.SQL(retarget_index(self.definition, name, table, self.tablespace)))  # type: ignore[arg-type]
        if self.comment is not None:
            comment = sql.SQL("COMMENT ON INDEX {} IS {}")
            log.execute(comment.format(table.sibling(name).identifier, sql.Literal(self.comment)))

    def describe(self) -> str:
        return f"{self.name} ({self.definition.split(' USING ', 1)[-1]})"


def declared_indexes(definition: MatViewDefinition) -> list[Declared]:
    """The definition's indexes: the unique one first, then ``indexes`` in order."""
    found: list[Declared] = []
    if definition.unique_index_columns:
        found.append((tuple(definition.unique_index_columns), True))
    found += [(tuple(columns), False) for columns in definition.indexes]
    return found


def index_statement(declared: Declared, target: QualifiedName, name: str | None = None) -> sql.Composed:
    """``CREATE [UNIQUE] INDEX [name] ON target (columns)``."""
    columns, unique = declared
    return sql.SQL("CREATE {}INDEX {}ON {} ({})").format(
        sql.SQL("UNIQUE " if unique else ""),
        sql.SQL("{} ").format(sql.Identifier(name)) if name else sql.SQL(""),
        target.identifier,
        sql.SQL(", ").join(map(sql.Identifier, columns)),
    )


def definition_index_statements(definition: MatViewDefinition) -> list[sql.Composed]:
    """``CREATE [UNIQUE] INDEX`` for the definition's unique index and extra indexes."""
    return [index_statement(declared, definition.qualified) for declared in declared_indexes(definition)]


def index_shapes(conn: psycopg.Connection, oid: int, *, texts: bool = True) -> list[IndexShape]:
    """Every index of relation ``oid``, by name. Without ``texts`` (no definition, no comment)
    the read touches catalog tables only and takes no lock: ``pg_get_indexdef`` opens the
    relation, and waits behind any session refreshing it."""
    rows = conn.execute(
        f"""SELECT c.relname, {"pg_get_indexdef(i.indexrelid)" if texts else "''"}, i.indisunique, am.amname,
                  i.indpred IS NOT NULL,
                  ARRAY(SELECT a.attname FROM unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY k(attnum, n)
                        LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                        ORDER BY k.n),
                  i.indnatts > i.indnkeyatts,
                  (SELECT bool_and(o = 0) FROM unnest(i.indoption::int2[]) o)
                    AND (SELECT bool_and(k = 0 OR k = a.attcollation)
                         FROM unnest(i.indcollation::oid[]) WITH ORDINALITY x(k, n)
                         LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[x.n - 1])
                    AND (SELECT bool_and(op.opcdefault) FROM unnest(i.indclass::oid[]) y(oc)
                         JOIN pg_opclass op ON op.oid = y.oc),
                  (SELECT spcname FROM pg_tablespace WHERE oid = c.reltablespace),
                  {"obj_description(i.indexrelid, 'pg_class')" if texts else "NULL"}
           FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
           WHERE i.indrelid = %s ORDER BY c.relname""",
        (oid,),
    ).fetchall()
    return [IndexShape(r[0], r[1], r[2], r[3], r[4], tuple(r[5]), r[6], bool(r[7]), r[8], r[9]) for r in rows]


def declared_index_names(conn: psycopg.Connection, oid: int, definition: MatViewDefinition) -> list[str]:
    """The names of the catalog's indexes that are the definition's declared ones."""
    shapes = index_shapes(conn, oid)
    return [s.name for declared in declared_indexes(definition) for s in shapes if s.is_declared(declared)]


def check_declared_columns(definition: MatViewDefinition, columns: list[str]) -> None:
    """Fail with the view's columns when ``unique_index_columns``, ``indexes`` or
    ``column_descriptions`` name a column the query does not return: the one check ``plan``
    (on the compiled query), ``create`` and ``apply`` (on the new view) all make."""
    wanted = {
        "unique_index_columns": definition.unique_index_columns,
        "indexes": [column for index in definition.indexes for column in index],
        "column_descriptions": list(definition.column_descriptions),
    }
    missing = {field: sorted({c for c in names if c not in columns}) for field, names in wanted.items()}
    missing = {field: names for field, names in missing.items() if names}
    if missing:
        named = "; ".join(f"{field} names {', '.join(names)}" for field, names in missing.items())
        raise ServiceError(
            f"{definition.name}'s query returns no such column: {named}; its columns are: {', '.join(columns)}",
            hint=f"fix {', '.join(missing)} (names are case-sensitive) or the query",
        )


def free_index_name(conn: psycopg.Connection, table: QualifiedName, columns: tuple[str, ...], taken: set[str]) -> str:
    """A name for a new index, as Postgres would choose it (``<table>_<columns>_idx``, then
    ``..._idx1``, ...), used by no relation of the schema and not in ``taken``."""
    base = "_".join((table.name, *columns))
    for n in range(1000):
        tail = f"_idx{n or ''}"
        candidate = base.encode()[: MAX_IDENTIFIER_BYTES - len(tail)].decode(errors="ignore") + tail
        if candidate in taken:
            continue
        exists = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (table.sibling(candidate).identifier.as_string(conn),)
        )
        row = exists.fetchone()
        if row is not None and not row[0]:
            return candidate
    raise ServiceError(f"no free index name for {table} ({', '.join(columns)})")


def retarget_index(definition: str, index_name: str, table: QualifiedName, tablespace: str | None = None) -> str:
    """Rewrite a ``pg_get_indexdef`` statement to build ``index_name`` on ``table`` (in
    ``tablespace``, which ``pg_get_indexdef`` leaves out).

    The statement is parsed and re-emitted with pglast, so no text is spliced by hand.
    """
    from pglast import parse_sql  # only a rebuild copies indexes
    from pglast.stream import RawStream

    stmt = parse_sql(definition)[0].stmt
    stmt.idxname = index_name
    stmt.relation.schemaname = table.schema
    stmt.relation.relname = table.name
    if tablespace is not None:
        stmt.tableSpace = tablespace
    return RawStream()(stmt)
