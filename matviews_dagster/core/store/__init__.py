"""``RunStore``: the run tables (create/refresh/delete history), their migrations, the
definitions mirror and the request queue, in the database and schema they were given.

One concern per module: ``connection`` (the store's own connection and its retries),
``migrations``, ``definitions`` (the mirror), ``records`` (writing run rows), ``history``
(reading them) and ``requests`` (the adapter's queue).

>>> store = RunStore("postgresql://localhost/app", schema="public")  # doctest: +SKIP
>>> store.history(kind="refresh", view="public.mv_users", limit=5)    # doctest: +SKIP
"""

from __future__ import annotations

from .definitions import DefinitionsMirror
from .history import RunHistory
from .migrations import MIGRATIONS, RUN_TABLES, SCHEMA_VERSION
from .records import RunRecords


class RunStore(DefinitionsMirror, RunRecords, RunHistory):
    """Persists runs in the run tables of ``schema`` (created on first use)."""


__all__ = ["MIGRATIONS", "RUN_TABLES", "SCHEMA_VERSION", "RunStore"]
