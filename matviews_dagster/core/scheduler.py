"""Work over a dependency graph: up to N items at once, upstream first, each result as it ends.

An item starts when every upstream item in the batch has succeeded. When one fails, the items
built on it (at any depth) are not started: they are reported as skipped with the name of the
failed item, and independent items go on. Among ready items, the one with the longest chain
of work behind it starts first, so deep chains do not finish last. The items an ended one
releases start before its result is handed over, so the caller's handling of a result (a
Dagster step writing its events) overlaps the work that follows it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Generic, TypeVar

R = TypeVar("R")


def run_in_dependency_order(
    order: Sequence[str],
    upstream: Callable[[str], Iterable[str]],
    work: Callable[[str], R],
    *,
    succeeded: Callable[[R], bool],
    skip: Callable[[str, tuple[str, ...]], R],
    max_parallel: int,
    interrupt: Callable[[], None] = lambda: None,
) -> Iterator[R]:
    """Run ``work(name)`` for every name in ``order`` (a dependency order) and yield the results.

    ``upstream(name)`` lists the names ``name`` waits for (names outside ``order`` are ignored);
    ``skip(name, failed)`` makes the result of an item not started because the items in
    ``failed`` did not succeed. With ``max_parallel`` 1 (or a single item) everything runs in
    the calling thread.
    When the caller stops early or is interrupted, items not started are dropped,
    ``interrupt()`` is called (to cancel the statements in flight) and the items running are
    awaited; after an interrupt (not a closed generator) their results are yielded before
    the exception goes on. When ``work`` itself raises, nothing new starts, the items running
    finish and are reported, then the exception is raised.
    """
    if max_parallel < 1:
        raise ValueError(f"max_parallel must be at least 1, got {max_parallel}")
    names = list(dict.fromkeys(order))
    selected = set(names)
    parents = {name: [p for p in upstream(name) if p in selected and p != name] for name in names}
    children: dict[str, list[str]] = {name: [] for name in names}
    for name, ups in parents.items():
        for parent in ups:
            children[parent].append(name)
    priority = _priority(names, children)
    failed_roots: dict[str, tuple[str, ...]] = {}  # item -> the failed items that block it
    waiting = {name: len(ups) for name, ups in parents.items()}

    def settle(name: str, ok: bool) -> tuple[list[str], list[R]]:
        """Release the children of a finished item: those now ready, and skip results."""
        ready: list[str] = []
        skipped: list[R] = []
        roots = () if ok else failed_roots.get(name, (name,))
        stack = [(name, roots)]
        while stack:
            current, blockers = stack.pop()
            for child in children[current]:
                if blockers:
                    failed_roots[child] = tuple(dict.fromkeys((*failed_roots.get(child, ()), *blockers)))
                waiting[child] -= 1
                if waiting[child] == 0:
                    if child in failed_roots:
                        skipped.append(skip(child, failed_roots[child]))
                        stack.append((child, failed_roots[child]))
                    else:
                        ready.append(child)
        return ready, skipped

    ready = [name for name in names if waiting[name] == 0]
    if max_parallel == 1 or len(names) == 1:
        while ready:
            ready.sort(key=priority.__getitem__)
            name = ready.pop(0)
            result = work(name)
            yield result
            released, skipped = settle(name, succeeded(result))
            yield from skipped
            ready.extend(released)
        return

    flight: _Flight[R] = _Flight(work)
    with ThreadPoolExecutor(max_workers=min(max_parallel, len(names)), thread_name_prefix="matviews") as pool:
        running: dict[Future[R], str] = {}
        error: Exception | None = None
        finished: deque[R] = deque()  # ended, not yet handed to the caller

        def start_ready() -> None:
            ready.sort(key=priority.__getitem__)
            while error is None and ready and len(running) < max_parallel:
                name = ready.pop(0)
                running[pool.submit(flight.run, name)] = name

        try:
            while running or (ready and error is None):
                start_ready()
                # a timeout, so a signal the kernel gave another thread (SIGTERM, Ctrl-C) is seen here
                done, _ = wait(running, timeout=CANCEL_AGAIN_S, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: priority[running[f]]):
                    name = running.pop(future)
                    try:
                        result = future.result()
                    except Exception as exc:  # work() itself broke: start nothing new, report the rest
                        error = error or exc
                        continue
                    released, skipped = settle(name, succeeded(result))
                    finished.extend((result, *skipped))
                    ready.extend(released)
                # the items the ended ones released start before the caller sees the results, so
                # they run while it handles them (a Dagster step writing each view's events)
                start_ready()
                while finished:
                    yield finished.popleft()
        except GeneratorExit:  # the caller stopped listening: cancel, wait, report nothing more
            flight.stop(running, interrupt)
            raise
        except BaseException:  # Ctrl-C, SIGTERM, a Dagster step terminated: cancel, then report what ended
            flight.stop(running, interrupt)
            yield from finished
            for future in running:
                if future.done() and not future.cancelled() and future.exception() is None:
                    yield future.result()
            raise
        if error is not None:
            raise error


CANCEL_AGAIN_S = 0.5
"""Seconds: how often the waiting thread wakes to see a signal delivered to another thread
(Python runs handlers in the main thread, but the kernel may give the signal to any thread and
leave the main one asleep), and how often an interrupt is repeated while items still run."""


class _NotStarted(Exception):
    """Raised in place of an item's work when the batch stopped before a thread took it."""


class _Flight(Generic[R]):
    """The items whose work runs in the pool's threads, as the threads themselves see them.

    The futures ``submit()`` returns are not enough to stop a batch: an interrupt (Ctrl-C, a
    SIGTERM turned into one) can come after ``submit()`` queued an item and before the caller
    recorded its future, and that item would start, unseen, and run to its end. Here a thread
    records an item before it calls ``work`` and refuses to start one once the batch stops.
    """

    def __init__(self, work: Callable[[str], R]) -> None:
        self._work = work
        self._changed = threading.Condition()
        self._active = 0
        self._stopped = False

    def run(self, name: str) -> R:
        """``work(name)`` in a pool thread, unless the batch has stopped (``_NotStarted``)."""
        with self._changed:
            if self._stopped:
                raise _NotStarted(name)
            self._active += 1
        try:
            return self._work(name)
        finally:
            with self._changed:
                self._active -= 1
                self._changed.notify_all()

    def stop(self, running: dict[Future[R], str], interrupt: Callable[[], None]) -> None:
        """Start nothing more, interrupt what runs, and wait until no item's work runs.

        A cancel request stops only the statement in flight when it arrives (PostgreSQL ignores
        one for an idle session), so an item between two statements would send its next one and
        run it to the end: the interrupt is repeated every ``CANCEL_AGAIN_S`` until every
        running item has ended."""
        with self._changed:
            self._stopped = True
        for future in running:
            future.cancel()
        while True:
            interrupt()
            with self._changed:
                if self._changed.wait_for(lambda: self._active == 0, CANCEL_AGAIN_S):
                    return


def _priority(names: list[str], children: dict[str, list[str]]) -> dict[str, tuple[int, int]]:
    """Sort key: the longest chain of items behind an item first, then the given order."""
    height: dict[str, int] = {}
    for name in reversed(names):  # children come later in a dependency order
        height[name] = 1 + max((height[child] for child in children[name]), default=0)
    return {name: (-height[name], index) for index, name in enumerate(names)}
