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
}
"""The Python terms core messages use, by name; ``strategy`` captures the strategy's name."""


def in_words(text: str, words: Mapping[str, str]) -> str:
    """``text`` with each of ``TERMS`` replaced by the interface's ``words`` for it (``\\1``
    stands for a captured name); terms without words stay as they are."""
    for term, pattern in TERMS.items():
        if term in words:
            text = pattern.sub(words[term], text)
    return text
