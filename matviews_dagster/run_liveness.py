"""Is the worker of a queued run still alive? A run Dagster still calls started whose worker
died (``kill -9``, a crash, the daemon's process group killed) never ends by itself."""

import dagster as dg

from .core.processes import process_exists
from .core.store.requests import Claim, RunRequestQueue


def fail_if_worker_died(instance: dg.DagsterInstance, queue: RunRequestQueue, claim: Claim, run: dg.DagsterRun) -> None:
    """A run Dagster still calls started whose worker is gone (``kill -9``, a crash, the
    daemon's process group killed) never ends by itself: its requests fail saying so, and
    Dagster is told, so the run's concurrency slot frees. Gone means: it began serving the
    claim and no longer holds the claim's liveness lock; or, with the default run launcher
    (run workers on this host), the process Dagster recorded for the run no longer exists."""
    if run.status != dg.DagsterRunStatus.STARTED or queue.worker_alive(claim.run_key):
        return
    if any(row.running_since is not None for row in claim.requests):
        how = "its worker no longer holds the request's lock"
    else:
        pid = _local_run_pid(instance, run.run_id)
        if pid is None or process_exists(pid):
            return
        how = f"its process {pid} is gone"
    reason = f"the run serving it (Dagster run {run.run_id}) died before it finished: {how}; enqueue the request again"
    if queue.settle({row.id: reason for row in claim.requests}):
        current = instance.get_run_by_id(run.run_id)
        if current is not None and not current.is_finished:
            instance.report_run_failed(current, message=f"matviews queue: the run's worker died ({how})")


def _local_run_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid of the run's worker when the default run launcher started it on this host."""
    if not isinstance(instance.run_launcher, dg.DefaultRunLauncher):
        return None  # other launchers' workers live elsewhere; Dagster's run monitoring covers them
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records
    for record in records:
        event = record.event_log_entry.dagster_event
        data = getattr(event, "event_specific_data", None) if event else None
        pid = getattr(getattr(data, "metadata", None), "get", lambda _: None)("pid")
        value = str(getattr(pid, "value", pid))
        if value.isascii() and value.isdigit():
            return int(value)
    return None
