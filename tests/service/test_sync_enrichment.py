"""Weather and geocoding clients against the provider sandbox served in-process: values
as served, batching counted in ``/_sandbox/stats``, faults driving the circuit breaker,
Nominatim's User-Agent and one-request-per-second policy (ManualClock, nothing sleeps)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from provider_sandbox.app import SANDBOX_KEY, create_app
from provider_sandbox.config import PREFIXES, SandboxConfig
from provider_sandbox.core import Sandbox
from sync_worker.enrichment import (
    HOURLY_VARIABLES,
    BreakerState,
    CircuitBreaker,
    GeocodingClient,
    Place,
    TtlCache,
    Weather,
    WeatherClient,
    WeatherKey,
    weather_key,
)
from sync_worker.enrichment.geocoding import PlaceKey
from syncplane_common.clock import ManualClock

pytestmark = pytest.mark.service

Client = TestClient[web.Request, web.Application]
ARCHIVE = "open_meteo GET /archive"
REVERSE = "nominatim GET /reverse"
AGENT = "syncplane-tests/1.0 (+https://example.org/syncplane)"
DAY = datetime(2025, 6, 1, tzinfo=UTC)  # well inside the sandbox archive
BERLIN = (52.52, 13.405)


class LinkedClock(ManualClock):
    """The client's ManualClock moving the sandbox's virtual clock with it, so the
    sandbox's per-second limits see the time our throttle waits."""

    def __init__(self, sandbox: Sandbox) -> None:
        super().__init__(datetime(2026, 1, 1, tzinfo=UTC))
        self.sandbox = sandbox

    def advance(self, seconds: float) -> None:
        super().advance(seconds)
        self.sandbox.clock.advance(seconds)


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async with TestClient(TestServer(create_app(SandboxConfig(seed=7)))) as test_client:
        yield test_client


@pytest.fixture
def sandbox(client: Client) -> Sandbox:
    return client.app[SANDBOX_KEY]


@pytest.fixture
def clock(sandbox: Sandbox) -> LinkedClock:
    return LinkedClock(sandbox)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # aiohttp's own default User-Agent: the geocoding client must bring its own.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        yield s


def base(client: Client, name: str) -> str:
    return str(client.make_url(PREFIXES[name]))


def weather_client(
    client: Client, session: aiohttp.ClientSession, clock: ManualClock, threshold: int = 3
) -> WeatherClient:
    cache: TtlCache[WeatherKey, Weather] = TtlCache(clock, ttl_seconds=86_400)
    breaker = CircuitBreaker(threshold, cooldown_seconds=60, clock=clock)
    return WeatherClient(session, base(client, "WEATHER_API_BASE"), clock, breaker, cache)


def geocoding_client(
    client: Client, session: aiohttp.ClientSession, clock: ManualClock
) -> GeocodingClient:
    cache: TtlCache[PlaceKey, Place] = TtlCache(clock, ttl_seconds=86_400)
    breaker = CircuitBreaker(3, cooldown_seconds=60, clock=clock)
    url = base(client, "GEOCODING_API_BASE")
    return GeocodingClient(session, url, clock, breaker, cache, user_agent=AGENT)


def state(breaker: CircuitBreaker) -> BreakerState:
    # A call, not the attribute: mypy would narrow the property across clock moves.
    return breaker.state


async def calls(client: Client, key: str) -> int:
    stats = await (await client.get("/_sandbox/stats")).json()
    return int(stats["calls"].get(key, 0))


async def fault(client: Client, **rule: Any) -> None:
    response = await client.post("/_sandbox/faults", json=rule)
    assert response.status == 201


# -- weather ---------------------------------------------------------------------------------


async def test_weather_equals_what_the_sandbox_serves_for_that_hour(
    client: Client, session: aiohttp.ClientSession, clock: LinkedClock
) -> None:
    at = DAY + timedelta(hours=14, minutes=37)
    result = await weather_client(client, session, clock).weather_for([(*BERLIN, at)])
    key = weather_key(*BERLIN, at)
    weather = result[key]
    assert weather is not None

    direct = await client.get(
        PREFIXES["WEATHER_API_BASE"] + "/archive",
        params={
            "latitude": str(key[0]),
            "longitude": str(key[1]),
            "start_date": "2025-06-01",
            "end_date": "2025-06-01",
            "hourly": ",".join(HOURLY_VARIABLES),
        },
    )
    hourly = (await direct.json())["hourly"]
    i = hourly["time"].index("2025-06-01T14:00")  # GMT by default
    assert weather == Weather(
        temperature_c=hourly["temperature_2m"][i],
        relative_humidity_pct=hourly["relative_humidity_2m"][i],
        precipitation_mm=hourly["precipitation"][i],
        wind_speed_kmh=hourly["wind_speed_10m"][i],
        weather_code=hourly["weather_code"][i],
        cloud_cover_pct=hourly["cloud_cover"][i],
    )
    assert weather.temperature_c is not None


async def test_fifty_points_around_one_city_cost_one_call_then_none(
    client: Client, session: aiohttp.ClientSession, clock: LinkedClock
) -> None:
    weather = weather_client(client, session, clock)
    points = [
        (BERLIN[0] + (i % 7 - 3) * 0.01, BERLIN[1] + (i % 5 - 2) * 0.01, DAY + timedelta(hours=i))
        for i in range(50)
    ]
    result = await weather.weather_for(points)
    assert await calls(client, ARCHIVE) == 1
    assert all(result[weather_key(*p)] is not None for p in points)
    again = await weather.weather_for(points)  # all cached
    assert again == result
    assert await calls(client, ARCHIVE) == 1


async def test_server_errors_open_the_breaker_which_half_opens_and_closes(
    client: Client, session: aiohttp.ClientSession, clock: LinkedClock
) -> None:
    weather = weather_client(client, session, clock, threshold=3)
    await fault(client, provider="open_meteo", endpoint="GET /archive", status=500)
    for n in range(3):  # a different day each time: every call misses the cache
        point = (*BERLIN, DAY + timedelta(days=30 * n))
        assert await weather.weather_for([point]) == {weather_key(*point): None}
    assert await calls(client, ARCHIVE) == 3
    assert state(weather.breaker) is BreakerState.OPEN

    point = (*BERLIN, DAY + timedelta(days=200))
    assert await weather.weather_for([point]) == {weather_key(*point): None}
    assert await calls(client, ARCHIVE) == 3  # open: nothing went out

    clock.advance(60)
    assert state(weather.breaker) is BreakerState.HALF_OPEN
    assert (await client.delete("/_sandbox/faults")).status == 200
    result = await weather.weather_for([point])
    assert result[weather_key(*point)] is not None
    assert await calls(client, ARCHIVE) == 4
    assert state(weather.breaker) is BreakerState.CLOSED


async def test_failed_half_open_trial_reopens(
    client: Client, session: aiohttp.ClientSession, clock: LinkedClock
) -> None:
    weather = weather_client(client, session, clock, threshold=1)
    await fault(client, provider="open_meteo", endpoint="GET /archive", status=503)
    await weather.weather_for([(*BERLIN, DAY)])
    clock.advance(60)
    await weather.weather_for([(*BERLIN, DAY)])
    assert await calls(client, ARCHIVE) == 2
    assert state(weather.breaker) is BreakerState.OPEN


async def test_a_400_is_permanent_not_retried_and_does_not_open_the_breaker(
    client: Client, session: aiohttp.ClientSession, clock: LinkedClock
) -> None:
    weather = weather_client(client, session, clock, threshold=1)
    await fault(client, provider="open_meteo", endpoint="GET /archive", status=400)
    assert await weather.weather_for([(*BERLIN, DAY)]) == {weather_key(*BERLIN, DAY): None}
    assert await calls(client, ARCHIVE) == 1
    assert state(weather.breaker) is BreakerState.CLOSED


async def test_a_429_keeps_the_client_quiet_until_the_next_minute(
    client: Client, session: aiohttp.ClientSession, clock: LinkedClock
) -> None:
    weather = weather_client(client, session, clock, threshold=5)
    await fault(client, provider="open_meteo", endpoint="GET /archive", status=429, count=1)
    await weather.weather_for([(*BERLIN, DAY)])
    await weather.weather_for([(*BERLIN, DAY)])
    assert await calls(client, ARCHIVE) == 1  # the second waited for the window
    clock.advance(60)
    assert (await weather.weather_for([(*BERLIN, DAY)]))[weather_key(*BERLIN, DAY)] is not None
    assert await calls(client, ARCHIVE) == 2


async def test_a_timeout_is_a_failure_not_an_exception(client: Client, clock: LinkedClock) -> None:
    await fault(client, provider="open_meteo", endpoint="GET /archive", latency_ms=500)
    timeout = aiohttp.ClientTimeout(total=0.1)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        weather = weather_client(client, session, clock, threshold=1)
        assert await weather.weather_for([(*BERLIN, DAY)]) == {weather_key(*BERLIN, DAY): None}
    assert state(weather.breaker) is BreakerState.OPEN


# -- geocoding -------------------------------------------------------------------------------


async def test_geocoding_a_sandbox_city(
    client: Client, session: aiohttp.ClientSession, clock: LinkedClock
) -> None:
    geo = geocoding_client(client, session, clock)
    assert await geo.place_for(48.8566, 2.3522) == Place(
        city="Paris", state="Ile-de-France", country="France", country_code="FR"
    )
    berlin = await geo.place_for(*BERLIN)
    assert berlin is not None
    assert (berlin.city, berlin.country_code) == ("Berlin", "DE")
    await geo.place_for(48.8566, 2.3522)  # cached
    assert await calls(client, REVERSE) == 2


async def test_throttle_keeps_calls_a_second_apart_on_the_clock(
    client: Client, clock: LinkedClock
) -> None:
    sent: list[float] = []

    async def on_start(_: aiohttp.ClientSession, __: SimpleNamespace, ___: Any) -> None:
        sent.append(clock.monotonic())

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        geo = geocoding_client(client, session, clock)
        places = [await geo.place_for(48.0 + i * 0.5, 2.0) for i in range(5)]
    assert all(p is not None for p in places)
    assert len(sent) == 5
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(sent))
    # The sandbox enforces one request per second per User-Agent on its clock: none refused.
    stats = await (await client.get("/_sandbox/stats")).json()
    assert stats["rate_limited"].get(REVERSE, 0) == 0


async def test_the_client_identifies_itself_where_a_bare_request_is_refused(
    client: Client, session: aiohttp.ClientSession, clock: LinkedClock
) -> None:
    url = base(client, "GEOCODING_API_BASE") + "/reverse"
    params = {"lat": "52.52", "lon": "13.40", "format": "jsonv2"}
    async with session.get(url, params=params) as bare:  # aiohttp's default User-Agent
        assert bare.status == 403
    geo = geocoding_client(client, session, clock)
    assert await geo.place_for(*BERLIN) is not None  # same session, its own User-Agent
    with pytest.raises(ValueError, match="User-Agent"):
        GeocodingClient(
            session, url, clock, geo.breaker, TtlCache(clock, 1.0), user_agent="aiohttp/3.9"
        )


async def test_geocoding_failures_return_none_and_open_the_breaker(
    client: Client, session: aiohttp.ClientSession, clock: LinkedClock
) -> None:
    geo = geocoding_client(client, session, clock)
    await fault(client, provider="nominatim", endpoint="GET /reverse", status=502)
    for i in range(4):
        assert await geo.place_for(40.0 + i, 3.0) is None
    assert state(geo.breaker) is BreakerState.OPEN
    assert await calls(client, REVERSE) == 3


async def test_hours_past_the_archive_end_are_none_uncached_and_no_failure(
    client: Client, session: aiohttp.ClientSession, clock: LinkedClock
) -> None:
    # The archive lags ~5 days (§8.3): the sandbox serves nulls there; a later pass fills.
    recent = sandbox_now(client) - timedelta(days=1)
    weather = weather_client(client, session, clock, threshold=1)
    assert await weather.weather_for([(*BERLIN, recent)]) == {weather_key(*BERLIN, recent): None}
    assert state(weather.breaker) is BreakerState.CLOSED
    await weather.weather_for([(*BERLIN, recent)])
    assert await calls(client, ARCHIVE) == 2  # not cached as "no weather"


def sandbox_now(client: Client) -> datetime:
    return client.app[SANDBOX_KEY].clock.now()
