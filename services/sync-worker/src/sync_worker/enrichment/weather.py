"""Hourly weather for activity start points from the Open-Meteo archive (PROVIDERS.md §8).

Batched: the points missing from the cache are grouped into date windows, and each window
asks for all its locations in one call (comma-separated coordinates, §8.3). A failure
never reaches the caller: those points come back None and feed the circuit breaker.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
from syncplane_common.clock import Clock
from syncplane_common.errors import PermanentError, RetryableError, SyncplaneError
from syncplane_common.http import call as http_call

from sync_worker.enrichment.breaker import CircuitBreaker
from sync_worker.enrichment.cache import Cache

log = logging.getLogger(__name__)

HOURLY_VARIABLES = (
    "temperature_2m",
    "relative_humidity_2m",
    "precipitation",
    "wind_speed_10m",
    "weather_code",
    "cloud_cover",
)
# 2 decimals is ~1 km: finer than any reanalysis grid (ERA5-Land ~9 km), so rounding
# never changes the answer but lets nearby activities share a cache entry.
LOCATION_DECIMALS = 2

WeatherKey = tuple[float, float, datetime]  # (rounded lat, rounded lon, UTC hour)


@dataclass(frozen=True)
class Weather:
    temperature_c: float | None
    relative_humidity_pct: float | None
    precipitation_mm: float | None
    wind_speed_kmh: float | None
    weather_code: int | None
    cloud_cover_pct: float | None


def weather_key(lat: float, lon: float, at: datetime) -> WeatherKey:
    """The cache key of a point: location rounded, time floored to its UTC hour."""
    if at.tzinfo is None:
        raise ValueError("weather_key needs a timezone-aware datetime")
    hour = at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return round(lat, LOCATION_DECIMALS), round(lon, LOCATION_DECIMALS), hour


@dataclass(frozen=True)
class _Call:
    start: date
    end: date
    locations: tuple[tuple[float, float], ...]


def plan_calls(keys: Iterable[WeatherKey], max_span_days: int, max_locations: int) -> list[_Call]:
    """Group missing keys into calls: date windows of at most ``max_span_days`` days, each
    asking for every location that needs a day in it, ``max_locations`` per call."""
    days_by_location: dict[tuple[float, float], set[date]] = defaultdict(set)
    for lat, lon, hour in keys:
        days_by_location[(lat, lon)].add(hour.date())
    all_days = sorted({d for days in days_by_location.values() for d in days})
    windows: list[date] = []
    for day in all_days:
        if not windows or (day - windows[-1]).days >= max_span_days:
            windows.append(day)
    calls: list[_Call] = []
    for start in windows:
        window_end = start + timedelta(days=max_span_days - 1)
        needing = sorted(
            (loc, [d for d in days if start <= d <= window_end])
            for loc, days in days_by_location.items()
        )
        needing = [(loc, days) for loc, days in needing if days]
        for i in range(0, len(needing), max_locations):
            chunk = needing[i : i + max_locations]
            end = max(max(days) for _, days in chunk)
            calls.append(_Call(start, end, tuple(loc for loc, _ in chunk)))
    return calls


def parse_hours(body: dict[str, Any]) -> dict[datetime, Weather]:
    """One location's ``hourly`` block (unixtime, GMT) as weather per UTC hour; hours with
    no value at all (past the archive's end, §8.3) are left out so a later pass fills them."""
    hourly = body["hourly"]
    columns = [hourly.get(name) or [] for name in HOURLY_VARIABLES]
    out: dict[datetime, Weather] = {}
    for i, instant in enumerate(hourly["time"]):
        values = [col[i] if i < len(col) else None for col in columns]
        if all(v is None for v in values):
            continue
        temp, rh, precip, wind, code, cloud = values
        out[datetime.fromtimestamp(int(instant), UTC)] = Weather(
            temperature_c=temp,
            relative_humidity_pct=rh,
            precipitation_mm=precip,
            wind_speed_kmh=wind,
            weather_code=None if code is None else int(code),
            cloud_cover_pct=cloud,
        )
    return out


def classify(status: int, body: object, now: datetime) -> SyncplaneError:
    """Open-Meteo's answers into the error tree: 400 is a bug in our request (never
    retried); 429 waits for the window its ``reason`` names (§8.2); 5xx is transient."""
    reason = body.get("reason") if isinstance(body, dict) else None
    message = f"open-meteo {status}: {reason or 'no reason'}"
    if status == 429:
        return RetryableError(message, retry_after=_retry_after_429(str(reason or ""), now))
    if status >= 500 or status == 408:
        return RetryableError(message)
    return PermanentError(message, details={"status": status})


def _retry_after_429(reason: str, now: datetime) -> float:
    # No Retry-After header exists; the windows are clock-aligned (minute, hour, UTC day).
    text = reason.lower()
    if "daily" in text:
        boundary = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    elif "hourly" in text:
        boundary = (now + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    elif "concurrent" in text:
        return 1.0
    else:
        boundary = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
    return max((boundary - now).total_seconds(), 1.0)


class WeatherClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        clock: Clock,
        breaker: CircuitBreaker,
        cache: Cache[WeatherKey, Weather],
        *,
        max_span_days: int = 14,
        max_locations: int = 50,
    ) -> None:
        self._session = session
        self._url = base_url.rstrip("/") + "/archive"
        self._clock = clock
        self.breaker = breaker
        self._cache = cache
        self._max_span_days = max_span_days
        self._max_locations = max_locations
        # The free tier serves one request per IP at a time (§8.2): never run two.
        self._lock = asyncio.Lock()
        self._quiet_until = 0.0  # monotonic; set by a 429 to its window boundary

    def cached_for(
        self, points: Sequence[tuple[float, float, datetime]]
    ) -> dict[WeatherKey, Weather | None]:
        """What earlier calls already found for these points; never calls the provider."""
        keys = {weather_key(lat, lon, at) for lat, lon, at in points}
        return {key: self._cache.get(key) for key in keys}

    async def weather_for(
        self, points: Sequence[tuple[float, float, datetime]]
    ) -> dict[WeatherKey, Weather | None]:
        """Weather per point's key (:func:`weather_key`); None where unknown or failed."""
        keys = {weather_key(lat, lon, at) for lat, lon, at in points}
        result: dict[WeatherKey, Weather | None] = {}
        missing: list[WeatherKey] = []
        for key in keys:
            cached = self._cache.get(key)
            result[key] = cached
            if cached is None:
                missing.append(key)
        calls = plan_calls(missing, self._max_span_days, self._max_locations)
        wanted = set(missing)
        for call in calls:
            hours = await self._fetch(call)
            for key, weather in hours.items():
                self._cache.put(key, weather)
                if key in wanted:
                    result[key] = weather
        return result

    async def _fetch(self, call: _Call) -> dict[WeatherKey, Weather]:
        async with self._lock:
            if self._clock.monotonic() < self._quiet_until or not self.breaker.allow():
                return {}
            try:
                bodies = await self._request(call)
            except RetryableError as err:
                self.breaker.record_failure()
                if err.retry_after:
                    self._quiet_until = self._clock.monotonic() + err.retry_after
                log.warning("weather unavailable: %s", err.message)
                return {}
            except PermanentError as err:
                # The provider answered, so it is up; our request was wrong. Closing the
                # breaker also releases a half-open trial slot.
                self.breaker.record_success()
                log.error("weather request rejected: %s", err.message)
                return {}
            self.breaker.record_success()
        out: dict[WeatherKey, Weather] = {}
        try:
            for (lat, lon), body in zip(call.locations, bodies, strict=True):
                for hour, weather in parse_hours(body).items():
                    out[(lat, lon, hour)] = weather
        except (KeyError, TypeError, ValueError) as err:
            log.error("weather answer unreadable: %r", err)
            return {}
        return out

    async def _request(self, call: _Call) -> list[dict[str, Any]]:
        params = {
            "latitude": ",".join(f"{lat:.{LOCATION_DECIMALS}f}" for lat, _ in call.locations),
            "longitude": ",".join(f"{lon:.{LOCATION_DECIMALS}f}" for _, lon in call.locations),
            "start_date": call.start.isoformat(),
            "end_date": call.end.isoformat(),
            "hourly": ",".join(HOURLY_VARIABLES),
            # GMT + unixtime: every instant is UTC with no local-time parsing (§8.5).
            "timezone": "GMT",
            "timeformat": "unixtime",
        }
        answer = await http_call(
            self._session,
            "GET",
            self._url,
            provider="open_meteo",
            operation="archive",
            params=params,
        )
        if answer.status != 200:
            raise classify(answer.status, answer.body, self._clock.now())
        # Several locations come back as an array, one as a bare object (§8.3); a body
        # that is not JSON is neither.
        body = answer.body
        bodies = body if isinstance(body, list) else [body]
        if len(bodies) != len(call.locations) or not all(
            isinstance(b, dict) and isinstance(b.get("hourly"), dict) for b in bodies
        ):
            raise PermanentError("open-meteo answered an unexpected shape")
        return bodies
