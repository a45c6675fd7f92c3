"""Strava's per-app rate limits (PROVIDERS.md §3.2): fixed 15-minute windows on the
quarter hours and a daily window from 00:00 UTC, for the overall and the read bucket."""

from __future__ import annotations

QUARTER = 900
DAY = 86_400


class Bucket:
    __slots__ = ("daily", "fifteen", "used_daily", "used_fifteen")

    def __init__(self, limits: tuple[int, int]) -> None:
        self.fifteen, self.daily = limits
        self.used_fifteen = 0
        self.used_daily = 0

    def exceeded(self) -> bool:
        return self.used_fifteen > self.fifteen or self.used_daily > self.daily

    def limit_header(self) -> str:
        return f"{self.fifteen},{self.daily}"

    def usage_header(self) -> str:
        return f"{self.used_fifteen},{self.used_daily}"


class RateLimiter:
    """Every request counts, refused ones included: Strava keeps counting a limited app,
    so a client that probes while limited only digs deeper."""

    def __init__(self, overall: tuple[int, int], read: tuple[int, int]) -> None:
        self.overall = Bucket(overall)
        self.read = Bucket(read)
        self.quarter = -1
        self.day = -1

    def configure(self, overall: tuple[int, int], read: tuple[int, int]) -> None:
        self.overall.fifteen, self.overall.daily = overall
        self.read.fifteen, self.read.daily = read

    def reset(self) -> None:
        for bucket in (self.overall, self.read):
            bucket.used_fifteen = bucket.used_daily = 0
        self.quarter = self.day = -1

    def _roll(self, now: float) -> None:
        # Epoch-aligned windows: 900 s divides the hour, so these are :00/:15/:30/:45 UTC.
        quarter = int(now // QUARTER)
        if quarter != self.quarter:
            self.quarter = quarter
            self.overall.used_fifteen = self.read.used_fifteen = 0
        day = int(now // DAY)
        if day != self.day:
            self.day = day
            self.overall.used_daily = self.read.used_daily = 0

    def hit(self, now: float, *, read: bool = True) -> bool:
        """Count one request; False when it is over a limit (and must get a 429)."""
        self._roll(now)
        self.overall.used_fifteen += 1
        self.overall.used_daily += 1
        if read:
            self.read.used_fifteen += 1
            self.read.used_daily += 1
        return not (self.overall.exceeded() or (read and self.read.exceeded()))

    def headers(self, now: float) -> dict[str, str]:
        self._roll(now)
        return {
            "X-RateLimit-Limit": self.overall.limit_header(),
            "X-RateLimit-Usage": self.overall.usage_header(),
            "X-ReadRateLimit-Limit": self.read.limit_header(),
            "X-ReadRateLimit-Usage": self.read.usage_header(),
        }
