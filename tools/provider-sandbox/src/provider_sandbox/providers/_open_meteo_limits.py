"""Open-Meteo's free-tier limits per client IP (PROVIDERS.md §8.2): weighted minute, hour and
day counters reset on clock boundaries (not sliding), and the optional one-at-a-time
concurrency gate with a short queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

MINUTELY = "Minutely API request limit exceeded. Please try again in one minute."
HOURLY = "Hourly API request limit exceeded. Please try again in the next hour."
DAILY = "Daily API request limit exceeded. Please try again tomorrow."
CONCURRENCY = "Too many concurrent requests"

# (window seconds, reason); checked in this order, like the server does.
WINDOWS = ((60, MINUTELY), (3600, HOURLY), (86400, DAILY))


@dataclass
class _Usage:
    windows: list[int]  # the window index each counter belongs to
    used: list[float]


class FreeTierCounters:
    def __init__(self) -> None:
        self._by_ip: dict[str, _Usage] = {}

    def clear(self) -> None:
        self._by_ip.clear()

    def _current(self, ip: str, now: float) -> _Usage:
        usage = self._by_ip.get(ip)
        if usage is None:
            usage = self._by_ip[ip] = _Usage([-1, -1, -1], [0.0, 0.0, 0.0])
        for slot, (seconds, _) in enumerate(WINDOWS):
            index = int(now // seconds)
            if usage.windows[slot] != index:
                usage.windows[slot] = index
                usage.used[slot] = 0.0
        return usage

    def exceeded(self, ip: str, now: float, limits: tuple[float | None, ...]) -> str | None:
        """The reason text of the first limit already used up, or None."""
        usage = self._current(ip, now)
        for slot, (_, reason) in enumerate(WINDOWS):
            limit = limits[slot]
            if limit is not None and usage.used[slot] >= limit:
                return reason
        return None

    def add(self, ip: str, now: float, weight: float) -> None:
        usage = self._current(ip, now)
        for slot in range(len(WINDOWS)):
            usage.used[slot] += weight

    def snapshot(self, now: float) -> dict[str, dict[str, float]]:
        return {
            ip: dict(zip(("minute", "hour", "day"), self._current(ip, now).used, strict=True))
            for ip in list(self._by_ip)
        }


class ConcurrencyGate:
    """At most ``active`` requests per IP run at once, ``queue`` more wait; beyond that
    the request is refused."""

    def __init__(self) -> None:
        self._in_flight: dict[str, int] = {}
        self._slots: dict[tuple[str, int], asyncio.Semaphore] = {}

    def clear(self) -> None:
        self._in_flight.clear()
        self._slots.clear()

    @asynccontextmanager
    async def enter(self, ip: str, active: int, queue: int) -> AsyncIterator[bool]:
        if self._in_flight.get(ip, 0) >= active + queue:
            yield False
            return
        self._in_flight[ip] = self._in_flight.get(ip, 0) + 1
        slot = self._slots.setdefault((ip, active), asyncio.Semaphore(active))
        try:
            async with slot:
                yield True
        finally:
            self._in_flight[ip] -= 1
