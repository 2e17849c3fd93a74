"""``matviews advise --try STRATEGY NAME``: one refresh with the view's own strategy (a real,
recorded run) and, right after it, the alternative measured on a copy of the view, so both
come from the same run against the same data.

The copy is built as a swap builds its new copy (``services/swap.py``): empty, given to the
view's owner, populated with ``REFRESH`` so its query runs with the owner's rights, with every
index copied; ``regular`` then refreshes the copy once more, which is what a regular refresh of
the view costs. The copy is dropped afterwards, whatever happens. ``concurrent`` cannot be
tried: its cost is the rows changed since the last refresh, and a copy built now has none.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psycopg import sql

from . import costs
from .catalog import dependent_relations, matview_state
from .deployed import deployed_definition
from .locks import view_lock
from .names import derived_name
from .result import OperationResult
from .services import carry_over, owner_rights
from .services.rebuild_indexes import Rebuilt, build_indexes
from .services.statement_log import StatementLog
from .services.swap import build_empty_copy
from .timing import elapsed_ms

if TYPE_CHECKING:
    from .database import Database
    from .definition import MatViewDefinition

TRIED = ("swap", "regular")
"""The strategies ``--try`` measures on a copy."""


@dataclass(frozen=True)
class Trial:
    """``current``: the view's own refresh; ``alternative``: ``{"strategy", "duration_ms",
    "costs", "readers"}`` measured on the copy (``readers`` says how long readers would wait)."""

    current: OperationResult
    strategy: str
    alternative: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        own = {"strategy": self.current_strategy, "duration_ms": self.current.duration_ms, **self.current.costs}
        return {"view": self.current.view, "current": own, "alternative": self.alternative}

    @property
    def current_strategy(self) -> str:
        return str(self.alternative["current_strategy"])


def check_trial(definition: MatViewDefinition, strategy: str) -> None:
    """Raise ``ValueError`` for a strategy that cannot be tried (``TRIED``), or is the view's own."""
    if strategy not in TRIED:
        raise ValueError(
            f"--try measures {' or '.join(TRIED)} on a copy; a concurrent refresh's cost is the rows changed since "
            "the last one, which a fresh copy does not have: set refresh_strategy: concurrent and advise reads its runs"
        )
    if strategy == definition.refresh_strategy:
        raise ValueError(f"{definition.name} already refreshes with {strategy}; --try another strategy")


def measure_on_copy(db: Database, definition: MatViewDefinition, strategy: str, current: OperationResult) -> Trial:
    """``strategy`` measured on a copy of the view, right after ``current``, its own successful
    refresh (``MatViews.try_strategy`` runs both); the copy is dropped whatever happens."""
    name_ = definition.qualified
    copy = name_.sibling(derived_name(name_.name, "mvtry"))
    # the copy's own lock (another --try of the view waits), not the view's: its refreshes go on
    with db.connect("advise --try") as conn, view_lock(conn, copy, db.lock_wait_timeout):
        drop = sql.SQL("DROP MATERIALIZED VIEW IF EXISTS {}").format(copy.identifier)
        conn.execute(drop)
        state, query = matview_state(conn, name_), deployed_definition(conn, name_)
        assert state is not None and query is not None  # refreshed just now, under the view's lock
        old, log = carry_over.capture(conn, state.oid), StatementLog(conn)
        dependents = [name for name, _ in dependent_relations(conn, state.oid)]
        try:
            before, started = costs.read(conn, copy), time.monotonic()
            build_empty_copy(
                conn, log, definition, copy, query, old.tablespace, old.owner
            )  # the deployed query, as its names read here
            owner_rights.give_to_owner(conn, log, copy, old.owner, view=name_, what="advise --try")
            if strategy == "regular":  # a regular refresh of the view: the populated copy refreshed again
                owner_rights.populate(conn, log, copy, view=name_, owner=old.owner)
                build_indexes(conn, log, definition, old.indexes, copy, "copy", set(), Rebuilt(rows=0))
                before, started = costs.read(conn, copy), time.monotonic()
            owner_rights.populate(conn, log, copy, view=name_, owner=old.owner)
            if strategy == "swap":
                build_indexes(conn, log, definition, old.indexes, copy, "copy", set(), Rebuilt(rows=0))
            duration = elapsed_ms(started)
            after = costs.read(conn, copy)
            measured = costs.costs(before, after, rows_known=False, server=costs.Sources.of(conn))["costs"]
        finally:
            with contextlib.suppress(Exception):
                conn.execute(drop)
    measured["size_before_bytes"] = current.costs.get("size_after_bytes")
    readers = "only for the rename, milliseconds" if strategy == "swap" else f"for the whole refresh, {duration} ms"
    if strategy == "swap" and dependents:  # recreated in the renaming transaction
        readers += f", and while it recreates {', '.join(dependents)} (built on it)"
    alternative = {
        "strategy": strategy,
        "current_strategy": definition.refresh_strategy,
        "duration_ms": duration,
        "readers_wait": readers,
        **{key: measured.get(key) for key in costs.COST_FIELDS},
    }
    return Trial(current, strategy, alternative)
