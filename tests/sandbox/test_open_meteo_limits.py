"""Open-Meteo's free-tier limits in the sandbox (PROVIDERS.md §8.2, §8.4): per-IP minute,
hour and day counters on clock boundaries of the virtual clock, call weights, the
concurrency gate, and the ``customer-`` host with ``apikey``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from provider_sandbox.core import Sandbox

from tests.sandbox.conftest import Client

pytestmark = pytest.mark.service

ARCHIVE = "/open-meteo/v1/archive"
CUSTOMER = "/open-meteo/customer/v1/archive"
CONFIG = "/_sandbox/open_meteo/config"
PARAMS = {
    "latitude": "52.52",
    "longitude": "13.41",
    "start_date": "2022-07-01",
    "end_date": "2022-07-01",
    "hourly": "temperature_2m",
}
MINUTELY = "Minutely API request limit exceeded. Please try again in one minute."
HOURLY = "Hourly API request limit exceeded. Please try again in the next hour."
DAILY = "Daily API request limit exceeded. Please try again tomorrow."


def align(sandbox: Sandbox, seconds: int) -> None:
    """Move the virtual clock just past the next multiple of ``seconds``."""
    now = sandbox.clock.time()
    sandbox.clock.advance(seconds - now % seconds + 0.5)


async def configure(client: Client, **settings: Any) -> dict[str, Any]:
    resp = await client.post(CONFIG, json=settings)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def call(client: Client, ip: str | None = None, **extra: str) -> tuple[int, Any]:
    headers = {"X-Forwarded-For": ip} if ip else {}
    resp = await client.get(ARCHIVE, params={**PARAMS, **extra}, headers=headers)
    assert not [h for h in resp.headers if h.lower().startswith("x-ratelimit")]
    assert "Retry-After" not in resp.headers
    return resp.status, await resp.json()


async def test_minute_limit_resets_on_the_next_clock_minute(
    client: Client, sandbox: Sandbox
) -> None:
    await configure(client, minutely_limit=3, hourly_limit=None, daily_limit=None)
    align(sandbox, 60)
    for _ in range(3):
        assert (await call(client))[0] == 200
    status, body = await call(client)
    assert status == 429
    assert body == {"error": True, "reason": MINUTELY}
    sandbox.clock.advance(30)  # same clock minute: still blocked
    assert (await call(client))[0] == 429
    sandbox.clock.advance(30)  # the next minute starts: counters cleared
    assert (await call(client))[0] == 200
    stats = await (await client.get("/_sandbox/stats")).json()
    assert stats["rate_limited"]["open_meteo GET /archive"] == 2


async def test_hour_and_day_limits_reset_on_their_boundaries(
    client: Client, sandbox: Sandbox
) -> None:
    await configure(client, minutely_limit=None, hourly_limit=3, daily_limit=4)
    align(sandbox, 86400)
    assert [(await call(client))[0] for _ in range(3)] == [200, 200, 200]
    status, body = await call(client)
    assert (status, body["reason"]) == (429, HOURLY)
    sandbox.clock.advance(1800)
    assert (await call(client))[0] == 429
    align(sandbox, 3600)
    assert (await call(client))[0] == 200
    status, body = await call(client)
    assert (status, body["reason"]) == (429, DAILY)
    align(sandbox, 3600)
    assert (await call(client))[1]["reason"] == DAILY
    align(sandbox, 86400)  # 00:00 UTC
    assert (await call(client))[0] == 200


async def test_counters_are_per_ip(client: Client, sandbox: Sandbox) -> None:
    await configure(client, minutely_limit=1)
    align(sandbox, 60)
    assert (await call(client, ip="203.0.113.1"))[0] == 200
    assert (await call(client, ip="203.0.113.1"))[0] == 429
    assert (await call(client, ip="203.0.113.2"))[0] == 200
    usage = await (await client.get("/_sandbox/open_meteo/usage")).json()
    assert usage["ips"]["203.0.113.1"]["minute"] == 1
    assert usage["ips"]["203.0.113.2"]["day"] == 1


async def test_heavy_requests_weigh_more(client: Client, sandbox: Sandbox) -> None:
    align(sandbox, 60)
    variables = ",".join(
        [
            "temperature_2m",
            "relative_humidity_2m",
            "dew_point_2m",
            "apparent_temperature",
            "precipitation",
            "rain",
            "snowfall",
            "weather_code",
            "cloud_cover",
            "wind_speed_10m",
        ]
    )
    heavy = {"hourly": variables, "start_date": "2022-07-01", "end_date": "2022-07-28"}
    assert (await call(client, ip="198.51.100.7", **heavy))[0] == 200  # 10 variables x 28 days
    usage = await (await client.get("/_sandbox/open_meteo/usage")).json()
    assert usage["ips"]["198.51.100.7"]["minute"] == pytest.approx(2.0)
    two_places = {"latitude": "52.52,48.14", "longitude": "13.41,11.58"}
    assert (await call(client, ip="198.51.100.8", **two_places))[0] == 200
    usage = await (await client.get("/_sandbox/open_meteo/usage")).json()
    assert usage["ips"]["198.51.100.8"]["minute"] == pytest.approx(2.0)
    # A rejected request still costs one call.
    assert (await call(client, ip="198.51.100.9", latitude="95"))[0] == 400
    usage = await (await client.get("/_sandbox/open_meteo/usage")).json()
    assert usage["ips"]["198.51.100.9"]["minute"] == 1
    await configure(client, weighting=False)
    assert (await call(client, ip="198.51.100.10", **heavy))[0] == 200
    usage = await (await client.get("/_sandbox/open_meteo/usage")).json()
    assert usage["ips"]["198.51.100.10"]["minute"] == 1


async def test_weighted_calls_exhaust_the_limit_sooner(client: Client, sandbox: Sandbox) -> None:
    await configure(client, minutely_limit=3)
    align(sandbox, 60)
    month = {"hourly": "temperature_2m," * 9 + "cloud_cover", "end_date": "2022-07-28"}
    assert (await call(client, **month))[0] == 200  # weight 2
    assert (await call(client))[0] == 200  # weight 1: now at 3
    assert (await call(client))[1]["reason"] == MINUTELY


async def test_concurrency_gate_one_active_and_a_short_queue(client: Client) -> None:
    await configure(client, max_concurrent=1, max_queue=1, latency_ms=150)
    results = await asyncio.gather(*(call(client) for _ in range(3)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200, 200, 429]
    refused = next(body for status, body in results if status == 429)
    assert refused == {"error": True, "reason": "Too many concurrent requests"}
    await configure(client, max_concurrent=None)
    results = await asyncio.gather(*(call(client) for _ in range(3)))
    assert [status for status, _ in results] == [200, 200, 200]


async def test_customer_host_needs_an_api_key_and_skips_free_limits(
    client: Client, sandbox: Sandbox
) -> None:
    await configure(client, minutely_limit=0, api_keys=["k-123"])
    assert (await call(client))[0] == 429
    missing = await client.get(CUSTOMER, params=PARAMS)
    assert missing.status == 401
    assert await missing.json() == {
        "error": True,
        "reason": "API key required. Please add &apikey= to the URL.",
    }
    wrong = await client.get(CUSTOMER, params={**PARAMS, "apikey": "nope"})
    assert wrong.status == 400
    assert (await wrong.json())["reason"] == "The supplied API key is invalid."
    ok = await client.get(CUSTOMER, params={**PARAMS, "apikey": "k-123"})
    assert ok.status == 200
    assert len((await ok.json())["hourly"]["temperature_2m"]) == 24
    by_host = await client.get(
        ARCHIVE, params=PARAMS, headers={"Host": "customer-archive-api.open-meteo.com"}
    )
    assert by_host.status == 401
    stats = await (await client.get("/_sandbox/stats")).json()
    assert stats["calls"]["open_meteo GET /archive"] == 5


async def test_config_is_validated_and_reset(client: Client) -> None:
    assert (await client.post(CONFIG, json={"colour": 1})).status == 400
    assert (await client.post(CONFIG, json={"minutely_limit": "many"})).status == 400
    assert (await client.post(CONFIG, json={"max_concurrent": 0})).status == 400
    assert (await client.post(CONFIG, json={"grid_degrees": 0})).status == 400
    assert (await client.post(CONFIG, data=b"{nope")).status == 400
    changed = await configure(client, minutely_limit=5, grid_degrees=0.25)
    assert changed["minutely_limit"] == 5
    _, body = await call(client)
    assert (body["latitude"], body["longitude"]) == (52.5, 13.5)
    assert (await client.post("/_sandbox/reset")).status == 200
    settings = await (await client.get(CONFIG)).json()
    assert settings["minutely_limit"] == 600
    assert settings["hourly_limit"] == 5000
    assert settings["daily_limit"] == 10000
    assert settings["grid_degrees"] == 0.1


async def test_injected_429_reads_like_the_minute_limit(client: Client) -> None:
    await client.post(
        "/_sandbox/faults",
        json={"provider": "open_meteo", "endpoint": "GET /archive", "status": 429, "count": 1},
    )
    status, body = await call(client)
    assert (status, body) == (429, {"error": True, "reason": MINUTELY})
