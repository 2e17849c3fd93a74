"""``OperationResult``: what one create, refresh or delete of one view did."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .messages import happened
from .vocabulary import RunKind

if TYPE_CHECKING:
    from .catalog import ViewDescription
    from .health_checks import CheckOutcome

Status = Literal["success", "failed", "skipped"]


@dataclass(frozen=True)
class OperationResult:
    """The outcome of one operation on one view, as recorded in its run row.

    ``status`` is ``success`` or ``failed`` for an operation that ran (its row is ``run_id``),
    and ``skipped`` for one not started because an upstream view in the same batch failed
    (``skipped_because`` names them; no run row). ``outcome`` is the service's word:
    ``created``, ``updated``, ``deleted``, ``skipped`` or ``error``. ``duration_ms`` excludes
    the wait for the view's lock. ``created`` is the create run a refresh with
    ``create_if_missing`` made first; ``description`` and ``database`` are read on the same
    connection when asked for (``describe=True``), and ``checks`` are the health checks run
    right after a successful refresh when a batch asks for them. ``dropped`` lists what a
    ``cascade`` delete dropped with the view, e.g. ``public.v_pro (view)``. ``lock_wait_ms`` is
    the time spent waiting for locks (the view's own lock, then the table lock the statement
    needs: a regular refresh waits for every reader), kept out of ``duration_ms``. ``reason``
    is why a create ran (``create_if_missing``, ``definition_change``, ``apply``) or why an
    operation was skipped (``view exists``); ``what_happened`` says it in words. ``costs`` is
    what a refresh cost the server and whom it blocked (``core/costs.py``: ``wal_bytes``,
    ``temp_bytes``, ``buffers_read``, ``buffers_hit``, ``size_before_bytes``,
    ``size_after_bytes``, ``rows_changed``; ``readers_blocked``, ``reader_wait_ms``,
    ``reader_wait_max_ms``), ``None`` where not known; empty for other kinds; and
    ``readings_source`` which counters they came from. In an estate (``core/estate_runs.py``)
    ``database`` is the view's database (its ``databases:`` key, None for the default
    connection) and ``tenant`` the tenant whose copy the view is.
    """

    kind: RunKind
    view: str
    status: Status
    outcome: str
    run_id: int | None = None
    duration_ms: int | None = None
    rows_count: int | None = None
    error: str | None = None
    hint: str | None = None
    warnings: tuple[str, ...] = ()
    created: OperationResult | None = None
    skipped_because: tuple[str, ...] = ()
    checks: tuple[CheckOutcome, ...] = ()
    dropped: tuple[str, ...] = ()
    lock_wait_ms: int | None = None
    reason: str | None = None
    costs: dict[str, int | None] = field(default_factory=dict, compare=False)
    readings_source: dict[str, str] = field(default_factory=dict, compare=False)
    description: ViewDescription | None = field(default=None, compare=False)
    database: str | None = field(default=None, compare=False)
    tenant: str | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "success"

    @property
    def what_happened(self) -> str:
        """What the operation did, in words for people (the CLI's line, the Dagster event):
        ``happened`` of this result; a refresh that built its view first says what that build
        was: ``created (the view was missing)`` or ``rebuilt (definition changed)``."""
        if self.kind == "refresh" and self.created is not None and not self.outcome.startswith("skipped"):
            return self.created.what_happened if self.created.outcome != "error" else self.outcome
        return happened(self.kind, self.outcome, self.reason)

    @property
    def total_duration_ms(self) -> int:
        """Time of this operation and of the create run made first, if any."""
        return (self.duration_ms or 0) + (self.created.duration_ms or 0 if self.created else 0)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape (CLI ``--json``, job outputs): ``status, outcome, run_id, kind, view,
        duration_ms, rows_count, error, hint, warnings, skipped_because, dropped, lock_wait_ms,
        what_happened``, plus ``costs`` for a refresh that measured them, ``created`` when a
        create run came first, and ``database`` and ``tenant`` when known."""
        out: dict[str, Any] = {
            "status": self.status,
            "outcome": self.outcome,
            "run_id": self.run_id,
            "kind": self.kind,
            "view": self.view,
            "duration_ms": self.duration_ms,
            "rows_count": self.rows_count,
            "error": self.error,
            "hint": self.hint,
            "warnings": list(self.warnings),
            "skipped_because": list(self.skipped_because),
            "dropped": list(self.dropped),
            "lock_wait_ms": self.lock_wait_ms,
            "what_happened": self.what_happened,
        }
        if self.costs:
            out["costs"] = dict(self.costs)
        if self.created is not None:
            out["created"] = self.created.to_dict()
        out.update({key: value for key, value in (("database", self.database), ("tenant", self.tenant)) if value})
        return out

    @classmethod
    def skipped(cls, kind: RunKind, view: str, blocked_by: tuple[str, ...]) -> OperationResult:
        """Not started because ``blocked_by`` (views of the same batch) failed: the upstream
        views it is built on, or for a delete the views built on it."""
        names = ", ".join(blocked_by)
        error = (
            f"not deleted: {names}, built on it, could not be deleted"
            if kind == "delete"
            else f"not {'created' if kind == 'create' else 'refreshed'}: upstream {names} failed"
        )
        return cls(
            kind=kind,
            view=view,
            status="skipped",
            outcome="skipped",
            error=error,
            hint=f"fix {names}, then run again",
            skipped_because=blocked_by,
        )
