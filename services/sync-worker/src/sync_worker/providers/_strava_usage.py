"""Strava's rate-limit headers and the wait they imply (PROVIDERS.md §3.2).

``X-RateLimit-*`` (overall) and ``X-ReadRateLimit-*`` (non-upload) each hold
``<15-min>,<daily>``; names are matched case-insensitively because Strava has sent both
``X-Ratelimit-Limit`` and ``x-ratelimit-limit``. Windows are fixed: quarter hours and
00:00 UTC, so after a 429 the wait is computed, never probed (refused calls still count).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["StravaUsage", "UsageWindow", "parse_usage", "retry_after_seconds"]

QUARTER = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class UsageWindow:
    """One bucket's limits and what is used of them in the current windows."""

    limit_15min: int
    limit_daily: int
    used_15min: int
    used_daily: int

    @property
    def quarter_spent(self) -> bool:
        return self.used_15min >= self.limit_15min

    @property
    def daily_spent(self) -> bool:
        return self.used_daily >= self.limit_daily


@dataclass(frozen=True, slots=True)
class StravaUsage:
    """The app's usage as of one answer; ``None`` for a bucket whose headers were absent."""

    overall: UsageWindow | None
    read: UsageWindow | None

    @property
    def daily_spent(self) -> bool:
        return any(w is not None and w.daily_spent for w in (self.overall, self.read))

    @property
    def quarter_spent(self) -> bool:
        return any(w is not None and w.quarter_spent for w in (self.overall, self.read))


def _pair(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) != 2:
        return None
    try:
        first, second = (int(p.strip()) for p in parts)
    except ValueError:
        return None
    return (first, second) if first >= 0 and second >= 0 else None


def _window(headers: Mapping[str, str], prefix: str) -> UsageWindow | None:
    limit = _pair(headers.get(f"{prefix}-limit"))
    usage = _pair(headers.get(f"{prefix}-usage"))
    if limit is None or usage is None:
        return None
    return UsageWindow(limit[0], limit[1], usage[0], usage[1])


def parse_usage(headers: Mapping[str, str]) -> StravaUsage | None:
    """The four headers, any case; ``None`` when neither bucket is readable."""
    lowered = {key.lower(): value for key, value in headers.items()}
    usage = StravaUsage(
        overall=_window(lowered, "x-ratelimit"),
        read=_window(lowered, "x-readratelimit"),
    )
    return None if usage.overall is None and usage.read is None else usage


def retry_after_seconds(usage: StravaUsage | None, now: datetime) -> float:
    """Seconds until the limit that refused us resets: 00:00 UTC when a daily count is
    spent (midnight is also a quarter boundary, so it covers both), else the next
    quarter hour. Without headers we assume the 15-minute window, the common case."""
    now = now.astimezone(UTC)
    if usage is not None and usage.daily_spent:
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        return (midnight - now).total_seconds()
    start = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    return (start + QUARTER - now).total_seconds()
