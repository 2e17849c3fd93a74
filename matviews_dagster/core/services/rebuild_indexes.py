"""A rebuild's indexes: the definition's built and the old copy's others copied onto the new
copy, under temporary names that the swap renames to the final ones."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import psycopg
from psycopg import sql

from ..definition import MatViewDefinition
from ..names import QualifiedName, derived_name
from .indexes import IndexShape, declared_indexes, free_index_name, index_statement
from .response import ServiceError, describe_db_error
from .statement_log import StatementLog


@dataclass
class Rebuilt:
    """What a rebuild did: rows built, indexes (final names), and what it could not keep."""

    rows: int
    meta: dict[str, object] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def build_indexes(
    conn: psycopg.Connection,
    log: StatementLog,
    definition: MatViewDefinition,
    existing: Sequence[IndexShape],
    new: QualifiedName,
    mode: Literal["copy", "declared"],
    drop: set[str],
    result: Rebuilt,
) -> list[tuple[str, str, bool]]:
    """Build the new copy's indexes under temporary names, from the old copy's ``existing``
    ones; returns ``(final name, temporary name, an old index has the final name)`` for the
    renames. ``declared``: the definition's are built (keeping the names of those that exist),
    ``drop`` (declared before, not any more) left out, the others copied; ``copy``: every one
    copied as it is. What is left out goes to ``result``'s ``meta`` and ``warnings``."""
    existing = list(existing)
    renames: list[tuple[str, str, bool]] = []
    copies = existing
    if mode == "declared":
        taken = {shape.name for shape in existing}
        for declared in declared_indexes(definition):
            same = next((shape for shape in existing if shape.is_declared(declared)), None)
            final = same.name if same else free_index_name(conn, definition.qualified, declared[0], taken)
            taken.add(final)
            temp = derived_name(final, "mvnew")
            log.execute(index_statement(declared, new, temp))
            if same is not None and same.comment is not None:
                comment = sql.SQL("COMMENT ON INDEX {} IS {}")
                log.execute(comment.format(new.sibling(temp).identifier, sql.Literal(same.comment)))
            renames.append((final, temp, same is not None))
        declared_names = {final for final, _, _ in renames}
        dropped = [shape.name for shape in existing if shape.name in drop and shape.name not in declared_names]
        if dropped:
            result.meta["dropped_indexes"] = dropped
        copies = [shape for shape in existing if shape.name not in declared_names and shape.name not in dropped]
    for shape in copies:
        temp = derived_name(shape.name, "mvnew")
        if copy_index(conn, log, shape, temp, new, definition.qualified, lenient=mode == "declared", result=result):
            renames.append((shape.name, temp, True))
    return renames


def copy_index(
    conn: psycopg.Connection,
    log: StatementLog,
    index: IndexShape,
    temp_name: str,
    new: QualifiedName,
    name: QualifiedName,
    *,
    lenient: bool,
    result: Rebuilt,
) -> bool:
    """Build one of the old view's indexes on the new copy. When its column is gone: with
    ``lenient`` it is left out and named in the warnings, else the error names the index."""
    try:
        with conn.transaction():
            index.build(log, temp_name, new)
        return True
    except psycopg.errors.UndefinedColumn as exc:
        if lenient:
            result.warnings.append(f"index {index.name} not recreated: {describe_db_error(exc)} in the new query")
            result.meta.setdefault("indexes_not_recreated", []).append(index.name)  # type: ignore[union-attr]
            return False
        error: psycopg.Error = exc
    except psycopg.Error as exc:
        error = exc
    raise ServiceError(
        f"copying index {index.name} of {name} to its new copy failed: {describe_db_error(error)}; "
        f"the index is {index.definition}",
        hint=f"the query no longer gives the index what it needs: drop it (DROP INDEX {name.schema}.{index.name}) "
        "or keep its columns in the query, then try again; the view was left as it was",
        index=index.name,
    )
