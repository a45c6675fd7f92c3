"""City, state and country of a start point from a Nominatim-compatible ``/reverse``,
kept within the OSMF usage policy: an identifying User-Agent and at most one request per
``min_interval_seconds`` (operations.osmfoundation.org/policies/nominatim/; issue 6).
A failure never reaches the caller: it returns None and feeds the circuit breaker."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from syncplane_common.clock import Clock
from syncplane_common.errors import PermanentError, RetryableError, SyncplaneError
from syncplane_common.http import call as http_call

from sync_worker.enrichment.breaker import CircuitBreaker
from sync_worker.enrichment.cache import Cache

log = logging.getLogger(__name__)

# ~1 km: a city does not change within it, and nearby activities share one lookup.
LOCATION_DECIMALS = 2
# Nominatim's address keys for a settlement, most to least specific kind of place.
CITY_KEYS = ("city", "town", "village", "municipality")
# Library defaults the policy refuses ("will not do"): a deployment must name itself.
_STOCK_AGENTS = ("python-requests/", "python-urllib/", "python-httpx/", "aiohttp/")

PlaceKey = tuple[float, float]


@dataclass(frozen=True)
class Place:
    city: str | None
    state: str | None
    country: str | None
    country_code: str | None


def place_key(lat: float, lon: float) -> PlaceKey:
    return round(lat, LOCATION_DECIMALS), round(lon, LOCATION_DECIMALS)


def parse_place(body: object) -> Place:
    """A ``format=jsonv2`` answer as a Place; ``{"error": "Unable to geocode"}`` (open sea,
    nothing near) is a real answer with nothing in it, not a failure."""
    if not isinstance(body, dict):
        raise PermanentError("nominatim answered an unexpected shape")
    address: dict[str, Any] = body.get("address") or {}
    city = next((address[k] for k in CITY_KEYS if address.get(k)), None)
    code = address.get("country_code")
    return Place(
        city=city,
        state=address.get("state"),
        country=address.get("country"),
        country_code=code.upper() if isinstance(code, str) else None,
    )


def classify(status: int, text: str) -> SyncplaneError:
    """Nominatim's answers into the error tree. 403 is the usage-policy block (an HTML
    page from the front server): retrying cannot help until the deployment is fixed."""
    message = f"nominatim {status}: {text[:200]!r}"
    if status == 429 or status >= 500 or status == 408:
        return RetryableError(message)
    return PermanentError(message, details={"status": status})


class GeocodingClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        clock: Clock,
        breaker: CircuitBreaker,
        cache: Cache[PlaceKey, Place],
        user_agent: str,
        min_interval_seconds: float = 1.0,
        *,
        language: str = "en",
    ) -> None:
        agent = user_agent.strip()
        if not agent or any(stock in agent.lower() for stock in _STOCK_AGENTS):
            raise ValueError("Nominatim needs a User-Agent that identifies this application")
        self._session = session
        self._url = base_url.rstrip("/") + "/reverse"
        self._clock = clock
        self.breaker = breaker
        self._cache = cache
        self._headers = {"User-Agent": agent, "Accept-Language": language}
        self._min_interval = min_interval_seconds
        self._lock = asyncio.Lock()
        self._last_call: float | None = None  # monotonic start of the previous request

    def cached(self, lat: float, lon: float) -> Place | None:
        """The place if a lookup already found it; never calls the provider."""
        return self._cache.get(place_key(lat, lon))

    async def place_for(self, lat: float, lon: float) -> Place | None:
        key = place_key(lat, lon)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        async with self._lock:
            # Another caller may have fetched it while we waited for the lock.
            cached = self._cache.get(key)
            if cached is not None:
                return cached
            if not self.breaker.allow():
                return None
            await self._throttle()
            try:
                place = await self._request(key)
            except RetryableError as err:
                self.breaker.record_failure()
                log.warning("geocoding unavailable: %s", err.message)
                return None
            except PermanentError as err:
                status = err.details.get("status")
                if status == 403:
                    # Blocked by policy: the provider must not be hammered; let it open.
                    self.breaker.record_failure()
                else:
                    self.breaker.record_success()
                log.error("geocoding request rejected: %s", err.message)
                return None
            self.breaker.record_success()
            self._cache.put(key, place)
            return place

    async def _throttle(self) -> None:
        if self._last_call is not None:
            wait = self._last_call + self._min_interval - self._clock.monotonic()
            if wait > 0:
                await self._clock.sleep(wait)
        self._last_call = self._clock.monotonic()

    async def _request(self, key: PlaceKey) -> Place:
        params = {
            "lat": f"{key[0]:.{LOCATION_DECIMALS}f}",
            "lon": f"{key[1]:.{LOCATION_DECIMALS}f}",
            "format": "jsonv2",
            "zoom": "10",  # city level: nothing finer is stored
            "addressdetails": "1",
        }
        answer = await http_call(
            self._session,
            "GET",
            self._url,
            provider="nominatim",
            operation="reverse",
            headers=self._headers,
            params=params,
        )
        if answer.status != 200:
            raise classify(answer.status, answer.text)
        if answer.decode_error is not None:
            raise PermanentError("nominatim answered something not JSON") from answer.decode_error
        return parse_place(answer.body)
