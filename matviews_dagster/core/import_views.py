"""``matviews import``: definitions for materialized views that already exist, so a team can
adopt the views it has. The query is Postgres's own (``pg_get_viewdef``, every name
schema-qualified); a usable unique index becomes ``unique_index_columns`` (and the
``concurrent`` strategy), other plain btree indexes ``indexes``; comments become
``description`` and ``column_descriptions``. What a definition cannot declare (partial,
expression or non-btree indexes, a second unique index) is named in the notes: rebuilds keep
such indexes, but a fresh create does not make them."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import psycopg
from pydantic import ValidationError

from .definition import MatViewDefinition
from .services.carry_over import qualified_names
from .services.indexes import IndexShape, index_shapes

_TEMPORARY = re.compile(r"_mv(new|old|lock|probe)_[0-9a-f]{8}$")


def import_definitions(
    conn: psycopg.Connection, schemas: Sequence[str] = ()
) -> tuple[list[MatViewDefinition], list[str]]:
    """The definitions of the materialized views in ``schemas`` (empty: every schema but the
    system ones), by name, and notes on what could not be declared."""
    with conn.transaction(), qualified_names(conn):
        rows = conn.execute(
            """SELECT c.oid, n.nspname, c.relname, pg_get_viewdef(c.oid), obj_description(c.oid, 'pg_class'),
                      coalesce(c.reloptions, '{}'),
                      coalesce((SELECT jsonb_object_agg(attname, col_description(attrelid, attnum))
                                FROM pg_attribute WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped
                                  AND col_description(attrelid, attnum) IS NOT NULL), '{}')
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE c.relkind = 'm' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                 AND n.nspname NOT LIKE 'pg\\_%%' AND (cardinality(%s::text[]) = 0 OR n.nspname = ANY(%s::text[]))
               ORDER BY n.nspname, c.relname""",
            (list(schemas), list(schemas)),
        ).fetchall()
        found = [(row, index_shapes(conn, row[0])) for row in rows if not _TEMPORARY.search(row[2])]
    definitions, notes = [], []
    for (_, schema, name, query, comment, options, column_comments), shapes in found:
        qualified = f"{schema}.{name}"
        fields: dict[str, Any] = {"name": qualified, "sql": _tidy(query)}
        unique, plain, skipped = _classify(shapes)
        if unique is not None:
            fields.update(refresh_strategy="concurrent", unique_index_columns=list(unique.key_columns))
        if plain:
            fields["indexes"] = [list(shape.key_columns) for shape in plain]
        if comment is not None:
            fields["description"] = comment
        if column_comments:
            fields["column_descriptions"] = dict(column_comments)
        notes += [f"{qualified}: index {shape.describe()} not declared ({why})" for shape, why in skipped]
        if options:
            notes.append(f"{qualified}: storage options {', '.join(options)} not declared (rebuilds keep them)")
        try:
            definitions.append(MatViewDefinition(**fields))
        except ValidationError as exc:  # a name or column a definition cannot hold: the others are imported
            reason = "; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors())[:300]
            notes.append(f"{qualified}: not imported, a definition cannot hold it ({reason})")
    if not rows:
        where = f"schema {', '.join(schemas)}" if schemas else "this database"
        notes.append(f"no materialized views in {where}")
    return definitions, notes


def definitions_yaml(definitions: Sequence[MatViewDefinition], notes: Sequence[str]) -> str:
    """A definitions file: the notes as comments, then ``views:`` with the fields that differ
    from their defaults; queries as block literals."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    defaults = MatViewDefinition(name="x", sql="SELECT 1").model_dump(mode="json")
    views = [
        {
            key: value
            for key, value in definition.model_dump(mode="json").items()
            if key in ("name", "sql") or value != defaults[key]
        }
        for definition in definitions
    ]
    header = "".join(f"# {note}\n" for note in notes)
    return header + yaml.dump(
        {"views": views}, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=100, default_flow_style=None
    )


def _classify(shapes: list[IndexShape]) -> tuple[IndexShape | None, list[IndexShape], list[tuple[IndexShape, str]]]:
    """(the unique index to declare, the plain indexes to declare, the others with why)."""
    unique, plain, skipped = None, [], []
    for shape in shapes:
        if shape.method != "btree":
            skipped.append((shape, f"{shape.method} index"))
        elif shape.partial:
            skipped.append((shape, "partial index"))
        elif None in shape.key_columns:
            skipped.append((shape, "expression index"))
        elif shape.include:
            skipped.append((shape, "INCLUDE columns"))
        elif not shape.default_order:
            skipped.append((shape, "a sort order, collation or operator class of its own"))
        elif shape.unique and unique is None:
            unique = shape
        elif shape.unique:
            skipped.append((shape, f"a second unique index; {unique.name} is the declared one"))
        else:
            plain.append(shape)
    return unique, plain, skipped


def _tidy(query: str) -> str:
    """``pg_get_viewdef``'s text without its leading space and trailing ``;``."""
    lines = [line.rstrip() for line in query.strip().rstrip(";").splitlines()]
    return "\n".join(line[1:] if line.startswith(" ") else line for line in lines)
