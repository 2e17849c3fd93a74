"""Index statements: the definition's indexes at create, copies of existing ones at swap."""

from __future__ import annotations

from psycopg import sql

from ..definition import MatViewDefinition
from ..names import QualifiedName
from .response import ServiceError


def definition_index_statements(definition: MatViewDefinition) -> list[sql.Composed]:
    """``CREATE [UNIQUE] INDEX`` for the definition's unique index and extra indexes."""
    target = definition.qualified.identifier
    statements = []
    if definition.unique_index_columns:
        statements.append(
            sql.SQL("CREATE UNIQUE INDEX ON {} ({})").format(
                target, sql.SQL(", ").join(map(sql.Identifier, definition.unique_index_columns))
            )
        )
    for columns in definition.indexes:
        statements.append(
            sql.SQL("CREATE INDEX ON {} ({})").format(target, sql.SQL(", ").join(map(sql.Identifier, columns)))
        )
    return statements


def check_index_columns(definition: MatViewDefinition, columns: list[str]) -> None:
    """Fail with the view's columns when an index names a column the view does not have."""
    wanted = [*definition.unique_index_columns, *(c for index in definition.indexes for c in index)]
    missing = sorted({column for column in wanted if column not in columns})
    if missing:
        raise ServiceError(
            f"{definition.name} has no column {', '.join(missing)} for its indexes; "
            f"its columns are: {', '.join(columns)}",
            hint="fix unique_index_columns/indexes (names are case-sensitive)",
        )


def retarget_index(definition: str, index_name: str, table: QualifiedName) -> str:
    """Rewrite a ``pg_get_indexdef`` statement to build ``index_name`` on ``table``.

    The statement is parsed and re-emitted with pglast, so no text is spliced by hand.
    """
    from pglast import parse_sql  # only a swap copies indexes
    from pglast.stream import RawStream

    stmt = parse_sql(definition)[0].stmt
    stmt.idxname = index_name
    stmt.relation.schemaname = table.schema
    stmt.relation.relname = table.name
    return RawStream()(stmt)
