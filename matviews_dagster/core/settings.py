"""``MatViewsSettings``: where the views and the run tables are and how long operations wait;
the one place a ``MatViews`` is built from configuration (the CLI's options, the Dagster
resources, the adapter)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .definition import MatViewDefinition
    from .matviews import MatViews


@dataclass(frozen=True)
class MatViewsSettings:
    """Connection and timing settings shared by every interface.

    ``dsn`` None: ``MATVIEWS_DSN``, ``DATABASE_URL``, else the embedded Postgres (``core.dsn``).
    ``runs_dsn`` None: the run tables live in the views' database, in ``runs_schema``.
    Timeouts are seconds; see ``MatViews`` for what each bounds.
    """

    dsn: str | None = None
    runs_dsn: str | None = None
    runs_schema: str = "public"
    lock_wait_timeout: float = 60.0
    lock_timeout: float = 2.0
    lock_retries: int = 5
    statement_timeout: float | None = None
    application_name: str = "matviews"

    @property
    def lock_timeout_ms(self) -> int:
        return int(self.lock_timeout * 1000)

    def matviews(self, definitions: Iterable[MatViewDefinition] = ()) -> MatViews:
        """A ``MatViews`` over ``definitions`` with these settings (no connection is opened
        yet). Raises ``ValueError`` when a view is defined twice."""
        from .matviews import MatViews

        return MatViews(
            dsn=self.dsn,
            definitions=definitions,
            runs_dsn=self.runs_dsn,
            runs_schema=self.runs_schema,
            lock_wait_timeout=self.lock_wait_timeout,
            lock_timeout=self.lock_timeout,
            lock_retries=self.lock_retries,
            statement_timeout=self.statement_timeout,
            application_name=self.application_name,
        )


DEFAULTS = MatViewsSettings()
"""The defaults every interface starts from (``MatViews``, the resources, ``LockPolicy``)."""
