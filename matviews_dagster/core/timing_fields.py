"""The time fields of a definition: ``automation: {on_cron}`` and ``freshness``, durations
(``30m``, ``1h``, ``2d``) and cron expressions, checked before any SQL runs."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from .messages import shown

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(value: object, field: str) -> float:
    """A duration as seconds: a number of seconds, or text like ``30m``, ``1h``, ``2d``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    match = _DURATION.fullmatch(value) if isinstance(value, str) else None
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"{field} {shown(value)} must be a positive duration: seconds, or e.g. 30m, 1h, 2d")
    return float(match.group(1)) * _SECONDS[match.group(2)]


def check_cron_expression(value: str, field: str) -> str:
    if len(value.split()) not in (5, 6):
        raise ValueError(f"{field} {shown(value)} must be a cron expression like '0 3 * * *'")
    return value


class OnCron(BaseModel):
    """``automation: {on_cron: "0 3 * * *"}``: refresh on a cron schedule once the upstream
    views and sources have updated since the last tick (Dagster's ``AutomationCondition.on_cron``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    on_cron: str

    @field_validator("on_cron")
    @classmethod
    def _check(cls, value: str) -> str:
        return check_cron_expression(value, "automation on_cron")


class Freshness(BaseModel):
    """``freshness: {warn_after: 1h, fail_after: 6h}``: how long after its last refresh a view
    is late (Dagster's time-window freshness policy). Durations are seconds or ``30m``/``1h``/``2d``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    fail_after: str | float
    warn_after: str | float | None = None

    @model_validator(mode="after")
    def _check(self) -> Freshness:
        fail = duration_seconds(self.fail_after, "freshness fail_after")
        if fail < 60:
            raise ValueError("freshness fail_after must be at least 1m (Dagster's shortest freshness window)")
        if self.warn_after is not None and duration_seconds(self.warn_after, "freshness warn_after") >= fail:
            raise ValueError("freshness warn_after must be shorter than fail_after")
        return self

    @property
    def fail_after_seconds(self) -> float:
        return duration_seconds(self.fail_after, "freshness fail_after")

    @property
    def warn_after_seconds(self) -> float | None:
        return None if self.warn_after is None else duration_seconds(self.warn_after, "freshness warn_after")
