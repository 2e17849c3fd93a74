"""Argument normalization for operations: what a job's config, an enqueued request's
``args`` or a CLI option may hold, turned into one value.

``force``/``cascade``: ``bool``, ``{"force": bool}``, ``None`` (false), or from the CLI
``true/false/yes/no/1/0``. Row counts: ``"estimated"|"exact"|"none"|None`` or
``{"row_count_strategy": ...}``. Anything else raises ``ValueError`` listing what is accepted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .messages import shown
from .vocabulary import REFRESH_STRATEGIES, ROW_COUNT_STRATEGIES

_ASCII_DIGITS = re.compile(r"[0-9]{1,19}")
MAX_DEFINITION_ID = 2**63 - 1
"""Definition ids are ``bigserial``: Postgres' ``bigint`` holds at most this."""


def definition_id(value: object) -> int | None:
    """The definition id ``value`` names (an ``int``, or a string of ASCII digits ``0-9``),
    ``None`` when it is not an id (a view name). Other Unicode digits (``"\\u0663"``,
    ``"\\u00b2"``) are not ids; an id beyond ``bigint`` raises ``ValueError``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if not value.isascii() or not value.isdigit():
            return None
        if not _ASCII_DIGITS.fullmatch(value):
            raise ValueError(f"definition id {shown(value)} is out of range (at most {MAX_DEFINITION_ID})")
        value = int(value)
    if isinstance(value, int):
        if not 0 < value <= MAX_DEFINITION_ID:
            raise ValueError(f"definition id {shown(value)} is out of range (1 to {MAX_DEFINITION_ID})")
        return value
    return None


_TRUE = {"true", "yes", "1"}
_FALSE = {"false", "no", "0"}


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


def normalize_flag(value: object, key: str) -> bool:
    """``force``/``cascade`` in any accepted form -> ``bool``."""
    accepted = f"True/False, {{{key!r}: bool}}, None, or 'true'/'false'/'yes'/'no'/'1'/'0'"
    if isinstance(value, Mapping):
        if set(value) != {key}:
            raise ValueError(f"{key} option {shown(dict(value))} is invalid; accepted: {accepted}")
        value = value[key]
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"{key} option {shown(value)} is invalid; accepted: {accepted}")


def normalize_row_count(value: object, default: str) -> str:
    """Row-count option -> ``estimated``/``exact``/``none``; ``UNSET`` -> ``default``."""
    accepted = "'estimated', 'exact', 'none', None, or {'row_count_strategy': ...}"
    if value is UNSET:
        return default
    if isinstance(value, Mapping):
        if set(value) != {"row_count_strategy"}:
            raise ValueError(f"row count option {shown(dict(value))} is invalid; accepted: {accepted}")
        value = value["row_count_strategy"]
    if value is None:
        return "none"
    if isinstance(value, str) and value.strip().lower() in ROW_COUNT_STRATEGIES:
        return value.strip().lower()
    raise ValueError(f"row count option {shown(value)} is invalid; accepted: {accepted}")


def normalize_strategy(value: object) -> str | None:
    """A one-off refresh strategy override, or ``None`` for the definition's."""
    if value is None:
        return None
    if isinstance(value, str) and value in REFRESH_STRATEGIES:
        return value
    raise ValueError(f"strategy {shown(value)} is invalid; accepted: None, {', '.join(REFRESH_STRATEGIES)}")


def positive_integer(value: object, name: str) -> int:
    """``value`` if it is a positive ``int`` (not a ``bool``), else ``ValueError`` naming ``name``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {shown(value)}")
    return value
