"""One command over several databases of an estate: each database's views in their own batch
(upstream first, at most that database's ``max_parallel`` at once), the databases side by
side, results as they come. A database that cannot be reached fails its own views, each with
one error; the others are not held up."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from .connection import DatabaseUnavailable
from .definition import MatViewDefinition
from .estate import Member
from .matviews import MatViews
from .messages import shown
from .names import QualifiedName
from .result import OperationResult
from .vocabulary import RunKind

Call = Callable[[MatViews, list[MatViewDefinition], int], Iterator[OperationResult]]
"""One database's part of a command: ``(its MatViews, its selected views, max_parallel) -> results``."""

WAKE_S = 0.2
"""Seconds between looks at a signal while waiting for the next result (Python delivers
Ctrl-C to the main thread only when it runs)."""


@dataclass
class Part:
    """The views of one database a command works on, in the order they are taken."""

    member: Member
    definitions: list[MatViewDefinition]
    unexpanded: list[MatViewDefinition] = field(default_factory=list)
    """Views with tenant schemas named by the command whose database could not be read."""

    def labelled(self, result: OperationResult) -> OperationResult:
        """``result`` naming this database and the view's tenant."""
        return replace(result, database=self.member.name, tenant=self.member.tenant_of.get(result.view))

    def failed(self, kind: RunKind, error: str, names: Sequence[str]) -> list[OperationResult]:
        """A ``failed`` result per view named, when the database could not be worked on."""
        hint = "fix that database's DSN, the variable it reads or its server, then run again; the others went on"
        return [self.labelled(OperationResult(kind, name, "failed", "error", error=error, hint=hint)) for name in names]


def select_parts(
    members: Sequence[Member], names: Sequence[str] | None, *, downstream: bool = False, reverse: bool = False
) -> list[Part]:
    """The views ``names`` name in each database (None: all), upstream first (``reverse``: the
    views built on others first); with ``downstream``, also the views built on them. A name
    finds ``schema.view``, an unqualified view, or every tenant's copy of a view with
    ``tenants:`` (``mv_usage`` is ``acme.mv_usage``, ``globex.mv_usage``, ...). ``ValueError``
    names every name no database defines."""
    parts, found = [], set()
    for member in members:
        graph = member.matviews.graph
        if names is None:
            chosen = [d.name for d in member.matviews.definitions]
        else:
            chosen = []
            for name in names:
                matched = _matching(member, name)
                found.update([name] if matched else [])
                chosen.extend(matched)
        chosen = list(dict.fromkeys(chosen))
        ordered = graph.order(graph.with_downstream(chosen) if downstream else chosen)
        unexpanded = [t for t in member.unexpanded if names is None or t.qualified.name in names]
        parts.append(Part(member, list(reversed(ordered)) if reverse else ordered, unexpanded))
    found.update(t.qualified.name for part in parts for t in part.unexpanded)
    unknown = [name for name in names or () if name not in found]
    if unknown:
        listed = ", ".join(shown(name) for name in unknown[:5])
        raise ValueError(f"unknown view{'s' if len(unknown) > 1 else ''} {listed}; `matviews list` shows the views")
    return parts


def _matching(member: Member, name: str) -> list[str]:
    """The views of ``member`` that ``name`` names (see ``select_parts``)."""
    views = member.matviews
    qualified = str(QualifiedName.parse(name, "view name"))
    if views.is_defined(qualified):
        return [qualified]
    if "." in name:
        return []
    copies = [view for view, template in member.template_of.items() if template == name]
    if copies:
        return copies
    found = views.find(name)
    return [found.name] if found is not None else []


def run_parts(kind: RunKind, parts: Sequence[Part], call: Call, max_parallel: int) -> Iterator[OperationResult]:
    """``call`` on each part's database, the databases side by side (one thread each). A single
    database runs in the calling thread, exactly as ``MatViews`` alone (its results are only
    labelled: no call of this module stays on the stack). Views with tenant schemas whose
    database could not be read fail as one view each, named as the file names them."""
    parts = [part for part in parts if part.definitions or part.unexpanded]
    if len(parts) == 1 and not parts[0].unexpanded:
        part = parts[0]
        return map(part.labelled, call(part.member.matviews, part.definitions, part.member.parallel(max_parallel)))
    return _side_by_side(kind, parts, call, max_parallel)


def _side_by_side(kind: RunKind, parts: Sequence[Part], call: Call, max_parallel: int) -> Iterator[OperationResult]:
    results: queue.Queue[OperationResult | None] = queue.Queue()
    threads = [
        threading.Thread(target=_drain, args=(kind, part, call, max_parallel, results), daemon=True) for part in parts
    ]
    for thread in threads:
        thread.start()
    running = len(threads)
    while running:
        try:
            result = results.get(timeout=WAKE_S)
        except queue.Empty:
            continue
        if result is None:
            running -= 1
        else:
            yield result


def _drain(kind: RunKind, part: Part, call: Call, max_parallel: int, out: queue.Queue) -> None:
    """One database's results into ``out``, then ``None``; what stops it fails its unfinished views."""
    member, done = part.member, set()
    try:
        if part.unexpanded:
            names = [template.qualified.name for template in part.unexpanded]
            for result in part.failed(kind, member.unavailable or "tenants unknown", names):
                out.put(result)
        if part.definitions:
            for result in call(member.matviews, part.definitions, member.parallel(max_parallel)):
                done.add(result.view)
                out.put(part.labelled(result))
    except (DatabaseUnavailable, RuntimeError, ValueError) as exc:  # BatchStopped is a RuntimeError
        error = " ".join(str(exc).split()) or type(exc).__name__
        for result in part.failed(kind, error, [d.name for d in part.definitions if d.name not in done]):
            out.put(result)
    finally:
        out.put(None)
