"""How a view's columns changed between two readings, for the ``column_schema_change`` verdict
of a view's ``deployed_as_defined`` check (``health_checks.schema_change_outcome``).

The semantics of Dagster's ``build_column_schema_change_checks`` with one difference: a column
only added breaks no reader (``SELECT a, b`` still works), so additions pass; a column removed
(a rename is a removal and an addition) or whose type changed fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

SCHEMA_CHANGE = "column_schema_change"
"""The verdict's name (Dagster's name for such a check, ``build_column_schema_change_checks``)."""

Columns = Sequence[tuple[str, str]]
"""A relation's columns in order, as ``(name, type)`` (``format_type`` text)."""


@dataclass(frozen=True)
class ColumnChanges:
    """``removed`` and ``added`` column names; ``retyped``: ``(name, old type, new type)``."""

    removed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    retyped: tuple[tuple[str, str, str], ...] = ()

    @property
    def breaking(self) -> bool:
        """A reader of the old columns may fail: a column removed, renamed or retyped."""
        return bool(self.removed or self.retyped)

    def summary(self) -> str:
        """One line, e.g. ``removed amount; type of id: integer -> bigint; added total``."""
        parts = []
        if self.removed:
            parts.append("removed " + ", ".join(self.removed))
        parts += [f"type of {name}: {old} -> {new}" for name, old, new in self.retyped]
        if self.added:
            parts.append("added " + ", ".join(self.added))
        return "; ".join(parts) or "no change"


def column_changes(before: Columns, after: Columns) -> ColumnChanges:
    """What changed from ``before`` to ``after`` (order alone is not a change)."""
    old, new = dict(before), dict(after)
    return ColumnChanges(
        removed=tuple(name for name in old if name not in new),
        added=tuple(name for name in new if name not in old),
        retyped=tuple((name, old[name], new[name]) for name in old if name in new and old[name] != new[name]),
    )
