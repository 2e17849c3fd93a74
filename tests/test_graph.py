"""The dependency graph: computed once from the definitions, read by every layer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from matviews_dagster import MatViewDefinition, ViewGraph
from matviews_dagster.core.names import QualifiedName
from matviews_dagster.core.scheduler import run_in_dependency_order

BASE = MatViewDefinition(name="mv_base", sql="SELECT id FROM users")
MIDDLE = MatViewDefinition(name="reports.mv_middle", sql="SELECT b.id FROM mv_base b JOIN raw.events e ON e.id = b.id")
TOP = MatViewDefinition(name="mv_top", sql="SELECT id FROM reports.mv_middle", dependencies=["ops.calendar"])
ALONE = MatViewDefinition(name="mv_alone", sql="WITH x AS (SELECT 1 AS id) SELECT id FROM x")


def test_order_upstream_downstream_and_sources() -> None:
    graph = ViewGraph([TOP, ALONE, MIDDLE, BASE])
    assert [d.name for d in graph] == ["public.mv_alone", "public.mv_base", "reports.mv_middle", "public.mv_top"]
    assert graph.upstream("reports.mv_middle") == ("public.mv_base",)
    assert graph.downstream("public.mv_base") == ("reports.mv_middle",)
    assert graph.sources("reports.mv_middle") == (QualifiedName("raw", "events"),)
    assert graph.sources("public.mv_top") == (QualifiedName("ops", "calendar"),)
    assert graph.sources("public.mv_alone") == ()  # a CTE is not a relation
    assert graph.with_downstream(["public.mv_base"]) == {"public.mv_base", "reports.mv_middle", "public.mv_top"}
    assert [d.name for d in graph.order(["public.mv_top", "public.mv_base"])] == ["public.mv_base", "public.mv_top"]


def test_cycles_and_duplicates_are_refused() -> None:
    a = MatViewDefinition(name="mv_a", sql="SELECT id FROM mv_b")
    b = MatViewDefinition(name="mv_b", sql="SELECT id FROM mv_a")
    with pytest.raises(ValueError, match="cycle"):
        ViewGraph([a, b])
    with pytest.raises(ValueError, match="defined twice"):
        ViewGraph([BASE, BASE])


def test_scheduler_skips_everything_built_on_a_failure_and_runs_the_rest() -> None:
    upstream = {"a": [], "b": ["a"], "c": ["b"], "d": [], "e": ["c", "d"]}
    ran: list[str] = []

    def work(name: str) -> tuple[str, bool]:
        ran.append(name)
        return name, name != "b"

    results = list(
        run_in_dependency_order(
            ["a", "d", "b", "c", "e"],
            upstream.__getitem__,
            work,
            succeeded=lambda result: result[1],
            skip=lambda name, failed: (f"{name} skipped after {','.join(failed)}", False),
            max_parallel=2,
        )
    )
    assert sorted(ran) == ["a", "b", "d"]
    assert ("c skipped after b", False) in results and ("e skipped after b", False) in results
    assert len(results) == 5


def test_scheduler_starts_the_longest_chain_first() -> None:
    upstream = {"short": [], "deep1": [], "deep2": ["deep1"], "deep3": ["deep2"]}
    ran: list[str] = []
    list(
        run_in_dependency_order(
            ["short", "deep1", "deep2", "deep3"],
            upstream.__getitem__,
            lambda name: ran.append(name) or True,
            succeeded=lambda result: True,
            skip=lambda name, failed: False,
            max_parallel=1,
        )
    )
    assert ran == ["deep1", "deep2", "short", "deep3"]  # ties go by the given order


def test_what_an_item_releases_runs_while_the_caller_handles_its_result() -> None:
    """A chain a -> b -> c: b starts before the caller is done with a's result (a Dagster step
    writing a's events), so the caller's time and the work overlap instead of adding up."""
    import threading
    import time

    started: dict[str, float] = {}
    handled: dict[str, float] = {}
    lock = threading.Lock()

    def work(name: str) -> str:
        with lock:
            started[name] = time.monotonic()
        return name

    for result in run_in_dependency_order(
        ["a", "b", "c"],
        {"a": [], "b": ["a"], "c": ["b"]}.__getitem__,
        work,
        succeeded=lambda result: True,
        skip=lambda name, failed: name,
        max_parallel=2,
    ):
        time.sleep(0.2)  # the caller's handling of the result
        handled[result] = time.monotonic()
    assert started["b"] < handled["a"] and started["c"] < handled["b"]


def run_two_until_interrupted(work: Callable[[str], bool], conns: dict[str, Any]) -> None:
    """Items ``a`` and ``b`` at once until a ``KeyboardInterrupt`` ends the batch; the batch's
    interrupt cancels the statements in flight on both items' connections."""

    def interrupt() -> None:
        for conn in conns.values():
            conn.cancel_safe(timeout=5)

    with pytest.raises(KeyboardInterrupt):
        batch = run_in_dependency_order(
            ["a", "b"], lambda _: [], work, succeeded=bool, skip=lambda *_: False, max_parallel=2, interrupt=interrupt
        )
        list(batch)


def test_an_interrupt_reaches_a_statement_sent_after_it(dsn) -> None:
    """A cancel request stops only the statement in flight: an item between two statements when
    the batch is interrupted (Ctrl-C, SIGTERM) sends its next one afterwards. The interrupt is
    repeated until every running item has ended, so that statement is cancelled too instead of
    running to its end."""
    import os
    import signal
    import threading
    import time

    import psycopg

    conns = {name: psycopg.connect(dsn, autocommit=True) for name in ("a", "b")}
    started = threading.Barrier(3)
    outcome: dict[str, str] = {}

    def work(name: str) -> bool:
        outcome[name] = "began"
        started.wait()
        time.sleep(1.5)  # between two statements when the interrupt comes (at most 0.5 s after it is sent)
        try:
            conns[name].execute("SELECT pg_sleep(30)")
            outcome[name] = "ran to its end"
        except psycopg.errors.QueryCanceled:
            outcome[name] = "cancelled"
        except BaseException as exc:
            outcome[name] = repr(exc)
            raise
        return True

    def sigterm() -> None:
        started.wait()  # both items began
        os.kill(os.getpid(), signal.SIGTERM)

    def as_ctrl_c(signum: int, frame: object) -> None:  # as the CLI handles SIGTERM
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, as_ctrl_c)
    threading.Thread(target=sigterm, daemon=True).start()
    began = time.monotonic()
    try:
        run_two_until_interrupted(work, conns)
        assert outcome == {"a": "cancelled", "b": "cancelled"}
        assert time.monotonic() - began < 10, "the statements sent after the interrupt were cancelled at once"
    finally:
        signal.signal(signal.SIGTERM, previous)
        for conn in conns.values():
            conn.close()


def test_an_interrupt_between_submitting_an_item_and_recording_it_still_stops_the_item(dsn, monkeypatch) -> None:
    """The signal can come after the pool queued an item and before the batch saw its future
    (a CI run met it): the item must still be cancelled and awaited, not left running."""
    import concurrent.futures
    import threading
    import time

    import psycopg

    from matviews_dagster.core import scheduler

    class InterruptedAfterSecondSubmit(concurrent.futures.ThreadPoolExecutor):
        submitted = 0

        def submit(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            future = super().submit(*args, **kwargs)
            InterruptedAfterSecondSubmit.submitted += 1
            if InterruptedAfterSecondSubmit.submitted == 2:
                began["b"].wait(5)
                raise KeyboardInterrupt  # as a signal handler does, before the caller keeps the future
            return future

    monkeypatch.setattr(scheduler, "ThreadPoolExecutor", InterruptedAfterSecondSubmit)
    conns = {name: psycopg.connect(dsn, autocommit=True) for name in ("a", "b")}
    began = {name: threading.Event() for name in conns}
    outcome: dict[str, str] = {}

    def work(name: str) -> bool:
        began[name].set()
        if name == "b":
            time.sleep(1)  # between two statements when the first cancel comes
        try:
            conns[name].execute("SELECT pg_sleep(10)")
            outcome[name] = "ran to its end"
        except psycopg.errors.QueryCanceled:
            outcome[name] = "cancelled"
        return True

    try:
        run_two_until_interrupted(work, conns)
        assert outcome == {"a": "cancelled", "b": "cancelled"}
    finally:
        for conn in conns.values():
            conn.close()
