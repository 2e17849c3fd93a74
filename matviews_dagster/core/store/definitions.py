"""The definitions mirror: ``mat_view_definitions``, one row per view (upserted by name), so
run rows can reference a definition and a definition can be rebuilt from its id alone."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from ..definition import MatViewDefinition
from .migrations import Migrations

MIRROR_BATCH = 1000
"""Definitions upserted by one statement: bounded, whatever the file holds (10 parameters each)."""


@dataclass(frozen=True)
class Applied:
    """The definition a view was last created or changed to: its ``fingerprint``
    (``MatViewDefinition.fingerprint``), the names of its declared indexes, and the digest of the
    query of the view it was applied to (``deployed.DeployedIdentity.query``; None in records
    written before it was kept)."""

    fingerprint: str
    indexes: tuple[str, ...]
    query: str | None = None

    @classmethod
    def of(cls, entry: dict[str, Any]) -> Applied:
        return cls(entry["fingerprint"], tuple(entry.get("indexes", ())), entry.get("query"))


class DefinitionsMirror(Migrations):
    """Definitions upserted by name; each definition object's id is asked for once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ids: dict[str, tuple[MatViewDefinition, int]] = {}  # name -> (definition object, id)
        self._applied: dict[str, dict[str, Any]] = {}  # name -> {database: what was applied there}
        self._mirrors: list[Future[None]] = []
        self._ids_lock = threading.Lock()

    def mirror(self, definitions: list[MatViewDefinition]) -> None:
        """Upsert ``definitions`` in a thread of its own (while a batch's workers connect);
        the first ``definition_id`` call waits for it."""
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(1, thread_name_prefix="matviews-mirror")
        future = pool.submit(self._remember_ids, definitions)
        pool.shutdown(wait=False)
        with self._ids_lock:
            self._mirrors.append(future)

    def definition_id(self, definition: MatViewDefinition) -> int:
        """The id of ``definition`` in ``mat_view_definitions``, upserted once per object."""
        with self._ids_lock:
            pending = list(self._mirrors)
        for future in pending:
            future.result()  # a failed mirror fails every caller, not the first one only
        with self._ids_lock:
            self._mirrors = [future for future in self._mirrors if future not in pending]
        known = self._ids.get(definition.name)
        if known is None or known[0] is not definition:
            self._remember_ids([definition])
            known = self._ids[definition.name]
        return known[1]

    def _remember_ids(self, definitions: list[MatViewDefinition]) -> None:
        ids = self.upsert_definitions(definitions)
        self._ids.update({d.name: (d, ids[d.name]) for d in definitions})

    def applied(self, definition: MatViewDefinition, database: str) -> Applied | None:
        """What was last created or applied for the view in ``database`` (read with the
        mirror's upsert, so it costs no round trip of its own), or None."""
        self.definition_id(definition)
        found = self._applied.get(definition.name, {}).get(database)
        return Applied.of(found) if found else None

    def read_applied(self, names: list[str], database: str) -> dict[str, Applied]:
        """What was last applied in ``database`` for each of the views ``names``, without
        writing anything (for a plan)."""
        self.ensure_migrated()
        query = sql.SQL("SELECT name, applied -> %s AS entry FROM {} WHERE name = ANY(%s)").format(
            self.table("mat_view_definitions")
        )
        rows = self.run(lambda conn: conn.execute(query, (database, names)).fetchall())
        return {row["name"]: Applied.of(row["entry"]) for row in rows if row["entry"]}

    def record_applied(self, definition: MatViewDefinition, database: str, indexes: list[str], query: str) -> None:
        """The view in ``database`` now matches ``definition``, whose declared indexes have these
        names (a later change drops those it no longer declares) and whose deployed query has
        the digest ``query``."""
        entry = {"fingerprint": definition.fingerprint, "indexes": indexes, "query": query}
        self._set_applied(definition, database, entry)

    def forget_applied(self, definition: MatViewDefinition, database: str) -> None:
        """The view was dropped from ``database``."""
        self._set_applied(definition, database, None)

    def _set_applied(self, definition: MatViewDefinition, database: str, entry: dict[str, Any] | None) -> None:
        definition_id = self.definition_id(definition)
        change = (
            sql.SQL("applied || jsonb_build_object(%(db)s::text, %(entry)s::jsonb)")
            if entry is not None
            else sql.SQL("applied - %(db)s::text")
        )
        query = sql.SQL("UPDATE {} SET applied = {} WHERE id = %(id)s RETURNING applied").format(
            self.table("mat_view_definitions"), change
        )
        params = {"db": database, "entry": Jsonb(entry), "id": definition_id}
        row = self.run(lambda conn: conn.execute(query, params).fetchone())
        self._applied[definition.name] = row["applied"] if row else {}

    def upsert_definitions(self, definitions: list[MatViewDefinition]) -> dict[str, int]:
        """Mirror ``definitions`` into ``mat_view_definitions`` (by name) in one transaction, at
        most ``MIRROR_BATCH`` rows a statement (a statement holds at most 65,535 parameters);
        returns ``{name: id}``. ``updated_at`` moves only when a field changed."""
        if not definitions:
            return {}
        self.ensure_migrated()
        rows = [_definition_row(definition) for definition in definitions]
        columns = list(rows[0])

        def upsert(conn: psycopg.Connection) -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            with conn.transaction():
                for start in range(0, len(rows), MIRROR_BATCH):
                    batch = rows[start : start + MIRROR_BATCH]
                    query = self._upsert_statement(columns, len(batch))
                    found += conn.execute(query, [value for row in batch for value in row.values()]).fetchall()
            return found

        found = self.run(upsert)
        self._applied.update({row["name"]: row["applied"] for row in found})
        return {row["name"]: int(row["id"]) for row in found}

    def _upsert_statement(self, columns: list[str], rows: int) -> sql.Composed:
        return sql.SQL(
            """INSERT INTO {table} AS t ({columns}) VALUES {values}
               ON CONFLICT (name) DO UPDATE SET {updates},
                 updated_at = CASE WHEN ({old}) IS DISTINCT FROM ({new}) THEN now() ELSE t.updated_at END
               RETURNING id, name, applied"""
        ).format(
            table=self.table("mat_view_definitions"),
            columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
            values=sql.SQL(", ").join(
                sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() for _ in columns)) for _ in range(rows)
            ),
            updates=sql.SQL(", ").join(sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in columns[1:]),
            old=sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in columns[1:]),
            new=sql.SQL(", ").join(sql.SQL("excluded.{}").format(sql.Identifier(c)) for c in columns[1:]),
        )

    def get_definition(self, definition_id: int) -> MatViewDefinition | None:
        """Rebuild a definition from its id alone."""
        self.ensure_migrated()
        query = sql.SQL("SELECT * FROM {} WHERE id = %s").format(self.table("mat_view_definitions"))
        row = self.run(lambda conn: conn.execute(query, (definition_id,)).fetchone())
        if row is None:
            return None
        fields = {field: row[field] for field in _COLUMNS}
        return MatViewDefinition(name=row["name"], **fields, **row["attributes"])


_COLUMNS = (
    "sql",
    "refresh_strategy",
    "unique_index_columns",
    "indexes",
    "row_count_strategy",
    "dependencies",
    "schedule_cron",
)
"""Definition fields with a column of their own (the queryable ones); every other field of
``MatViewDefinition`` is kept in the ``attributes`` JSON, so a new field needs no change here."""


def _definition_row(definition: MatViewDefinition) -> dict[str, Any]:
    """The ``mat_view_definitions`` columns of one definition (name first)."""
    fields = definition.stored_fields()
    name = fields.pop("name")
    columns = {field: fields.pop(field) for field in _COLUMNS}
    json_columns = {
        field: Jsonb(value) if isinstance(value, list | dict) else value for field, value in columns.items()
    }
    return {"name": name, **json_columns, "attributes": Jsonb(fields), "sql_sha256": definition.sql_sha256}
