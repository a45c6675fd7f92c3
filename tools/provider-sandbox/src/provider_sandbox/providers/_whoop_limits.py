"""WHOOP's per-app request budget (PROVIDERS.md §7.2): a minute and a day counter in fixed
windows of the virtual clock, and the three ``X-RateLimit-*`` headers on every answer."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from provider_sandbox.providers._whoop_settings import WhoopSettings

MINUTE = 60
DAY = 86_400


@dataclass
class _Window:
    minute: int = -1
    minute_used: int = 0
    day: int = -1
    day_used: int = 0


class RateLimiter:
    def __init__(self, clock_time: Callable[[], float], settings: WhoopSettings) -> None:
        self.clock_time = clock_time
        self.settings = settings
        self.windows: dict[str, _Window] = {}

    def reset(self) -> None:
        self.windows.clear()

    def hit(self, app: str) -> tuple[bool, dict[str, str]]:
        """Count one request of ``app``; a refused request is not counted."""
        now = self.clock_time()
        window = self.windows.get(app)
        if window is None:
            window = self.windows[app] = _Window()
        minute, day = int(now // MINUTE), int(now // DAY)
        if window.minute != minute:
            window.minute, window.minute_used = minute, 0
        if window.day != day:
            window.day, window.day_used = day, 0
        per_minute = self.settings.rate_limit_per_minute
        per_day = self.settings.rate_limit_per_day
        allowed = window.minute_used < per_minute and window.day_used < per_day
        if allowed:
            window.minute_used += 1
            window.day_used += 1
        left_minute = max(0, per_minute - window.minute_used)
        left_day = max(0, per_day - window.day_used)
        reset_minute = math.ceil((minute + 1) * MINUTE - now)
        reset_day = math.ceil((day + 1) * DAY - now)
        # The leading value names the policy nearest to being used up; when both are, the
        # day is the one that decides when requests are accepted again.
        if left_day < left_minute or (left_day == left_minute == 0):
            lead, left, reset = per_day, left_day, reset_day
        else:
            lead, left, reset = per_minute, left_minute, reset_minute
        headers = {
            "X-RateLimit-Limit": f"{lead}, {per_minute};window={MINUTE}, {per_day};window={DAY}",
            "X-RateLimit-Remaining": str(left),
            "X-RateLimit-Reset": str(max(reset, 1)),
        }
        return allowed, headers
