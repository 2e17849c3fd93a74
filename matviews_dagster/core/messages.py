"""Hints in the words of the interface the user is in. The core writes them in Python's
(``cascade=True``, ``strategy='regular'``); each interface names its own words for the same
terms (the CLI's flags, Dagster's run config) and ``in_words`` swaps them in."""

from __future__ import annotations

import re
from collections.abc import Mapping

TERMS = {
    "create_missing": re.compile(r", or refresh with create_if_missing=True"),
    "create_all": re.compile(r"\(create_many\)"),
    "cascade": re.compile(r"\bcascade=True\b"),
    "force": re.compile(r"\bforce=True\b"),
    "strategy": re.compile(r"\bstrategy='(\w+)'"),
    "apply": re.compile(r"\bapply_many\(\)"),
}
"""The Python terms core messages use, by name; ``strategy`` captures the strategy's name."""


def in_words(text: str, words: Mapping[str, str]) -> str:
    """``text`` with each of ``TERMS`` replaced by the interface's ``words`` for it (``\\1``
    stands for a captured name); terms without words stay as they are."""
    for term, pattern in TERMS.items():
        if term in words:
            text = pattern.sub(words[term], text)
    return text


SHOWN_CHARACTERS = 60
"""At most this many characters of a value from outside are quoted in a message."""


def shown(value: object, limit: int = SHOWN_CHARACTERS) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters with its full length
    said: a bad input of 10 MB is named by its first characters, never echoed whole."""
    if isinstance(value, (str, bytes)) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value):,} characters)"
    if isinstance(value, int) and value.bit_length() > 4 * limit:  # repr() of a huge int is slow, or refused
        return f"an integer of about {int(value.bit_length() * 0.30103):,} digits"
    text = repr(value)
    if len(text) > limit:
        return f"{text[:limit]}... ({type(value).__name__}, {len(text):,} characters as text)"
    return text


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``1 view``, ``2 views``, ``0 views``: a count and its noun, in the right number."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"


def happened(kind: str, outcome: str, reason: str | None = None, populated_by_run: int | None = None) -> str:
    """A run's outcome in words for people, one vocabulary for results and run rows:
    ``refreshed``, ``created``, ``deleted``, ``rebuilt (definition changed)`` (a create run
    that applied a changed definition: ``reason`` ``definition_change`` or ``apply``),
    ``created (the view was missing)`` (``reason`` ``create_if_missing``), ``populated by
    create run #N`` (a refresh whose view the create run just before it built, so it ran
    nothing), ``skipped (<reason>)``; otherwise ``outcome`` itself (``error``, ``skipped (...)``)."""
    if outcome == "skipped":
        return f"skipped ({reason})" if reason else outcome
    if outcome == "error" or outcome.startswith("skipped"):
        return outcome
    if kind == "create" and reason in ("definition_change", "apply") and outcome == "updated":
        return "rebuilt (definition changed)"
    if kind == "create" and reason == "create_if_missing":
        return "created (the view was missing)"
    if kind == "refresh" and populated_by_run is not None:
        return f"populated by create run #{populated_by_run}"
    return "refreshed" if kind == "refresh" and outcome == "updated" else outcome
