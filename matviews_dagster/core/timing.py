"""Durations as the run rows keep them: whole milliseconds on the monotonic clock."""

from __future__ import annotations

import time


def elapsed_ms(started: float) -> int:
    """Milliseconds since ``started`` (a ``time.monotonic()`` reading)."""
    return int((time.monotonic() - started) * 1000)


def seconds_to_ms(seconds: float) -> int:
    """Seconds (a setting) as whole milliseconds (what ``lock_timeout`` and friends take)."""
    return int(seconds * 1000)
