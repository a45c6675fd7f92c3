"""Strava rate limits (PROVIDERS.md §3.2, §3.5): overall and read buckets, quarter-hour
and 00:00 UTC windows on the virtual clock, the four headers on every API response, the
429 body, and refused calls that still count."""

from __future__ import annotations

import pytest
from provider_sandbox.core import Sandbox
from provider_sandbox.providers._strava_common import Settings
from provider_sandbox.providers._strava_limits import RateLimiter

from tests.sandbox.conftest import Client
from tests.sandbox.test_strava_oauth import (
    ACTIVITIES,
    athlete_id,
    bearer,
    configure,
    issue_token,
    strava_error,
)

pytestmark = pytest.mark.service

HEADERS = (
    "X-RateLimit-Limit",
    "X-RateLimit-Usage",
    "X-ReadRateLimit-Limit",
    "X-ReadRateLimit-Usage",
)
LIMITED = strava_error("Application", "rate limit", "exceeded", "Rate Limit Exceeded")


def align(sandbox: Sandbox, period: int, plus: float = 1.0) -> None:
    """Move the virtual clock just past the next window boundary, so that real time
    passing during the test cannot cross one."""
    sandbox.clock.advance(period - sandbox.clock.time() % period + plus)


async def token(client: Client, sandbox: Sandbox) -> str:
    issued = await issue_token(client, athlete_id(sandbox, "limited"))
    access: str = issued["access_token"]
    return access


def test_limiter_windows_are_epoch_aligned() -> None:
    limiter = RateLimiter((2, 3), (10, 10))
    day = 20_000 * 86_400
    assert limiter.hit(day + 10)
    assert limiter.hit(day + 899)
    assert not limiter.hit(day + 899.5)  # third in the quarter
    assert limiter.headers(day + 899.9)["X-RateLimit-Usage"] == "3,3"
    assert not limiter.hit(day + 900)  # new quarter, but the day is spent (4 > 3)
    assert limiter.headers(day + 900)["X-RateLimit-Usage"] == "1,4"
    assert limiter.hit(day + 86_400)  # 00:00 UTC: both windows restart
    assert limiter.headers(day + 86_400)["X-RateLimit-Usage"] == "1,1"


def test_rate_limit_settings_come_from_the_environment_too() -> None:
    settings = Settings.from_env(
        {"SANDBOX_STRAVA_RATE_LIMIT": "7,70", "SANDBOX_STRAVA_READ_RATE_LIMIT": "5,50"}
    )
    assert settings.rate_limit == (7, 70)
    assert settings.read_rate_limit == (5, 50)
    with pytest.raises(ValueError, match="rate_limit"):
        Settings.from_env({"SANDBOX_STRAVA_RATE_LIMIT": "7"})


async def test_the_four_headers_are_on_every_api_response(client: Client, sandbox: Sandbox) -> None:
    align(sandbox, 900)
    access = await token(client, sandbox)
    responses = [
        await client.get(ACTIVITIES, headers=bearer(access)),
        await client.get(ACTIVITIES, headers=bearer("nope")),
        await client.get(ACTIVITIES, headers=bearer(access), params={"per_page": "0"}),
        await client.get("/strava/api/v3/activities/1", headers=bearer(access)),
        await client.get("/strava/api/v3/push_subscriptions"),
    ]
    await client.post(
        "/_sandbox/faults",
        json={"provider": "strava", "endpoint": "GET /athlete/activities", "status": 503},
    )
    responses.append(await client.get(ACTIVITIES, headers=bearer(access)))
    assert [r.status for r in responses] == [200, 401, 400, 404, 400, 503]
    for resp in responses:
        for name in HEADERS:
            assert name in resp.headers, (resp.status, name)
        assert resp.headers["x-ratelimit-limit"] == "200,2000"  # case-insensitive
        assert resp.headers["X-ReadRateLimit-Limit"] == "100,1000"
    assert responses[0].headers["X-RateLimit-Usage"] == "1,1"
    assert responses[4].headers["X-ReadRateLimit-Usage"] == "5,5"


async def test_429_has_strava_body_and_headers_and_refused_calls_still_count(
    client: Client, sandbox: Sandbox
) -> None:
    align(sandbox, 900)
    await configure(client, rate_limit=[10, 100], read_rate_limit=[3, 50])
    access = await token(client, sandbox)
    statuses = []
    for _ in range(5):
        resp = await client.get(ACTIVITIES, headers=bearer(access))
        statuses.append(resp.status)
    assert statuses == [200, 200, 200, 429, 429]
    assert await resp.json() == LIMITED
    assert resp.headers["X-RateLimit-Limit"] == "10,100"
    assert resp.headers["X-RateLimit-Usage"] == "5,5"
    assert resp.headers["X-ReadRateLimit-Limit"] == "3,50"
    assert resp.headers["X-ReadRateLimit-Usage"] == "5,5"
    assert "Retry-After" not in resp.headers
    assert sandbox.stats.rate_limited["strava GET /athlete/activities"] == 2
    detail = await client.get("/strava/api/v3/activities/1", headers=bearer(access))
    assert detail.status == 429  # one app-wide budget across endpoints
    assert sandbox.stats.rate_limited["strava GET /activities/{id}"] == 1


async def test_the_fifteen_minute_window_resets_on_the_quarter_hour(
    client: Client, sandbox: Sandbox
) -> None:
    align(sandbox, 900)
    await configure(client, read_rate_limit=[2, 1000])
    access = await token(client, sandbox)
    for expected in (200, 200, 429):
        assert (await client.get(ACTIVITIES, headers=bearer(access))).status == expected
    sandbox.clock.advance(900 - 1 - 30)  # 30 s before the boundary: still the same window
    resp = await client.get(ACTIVITIES, headers=bearer(access))
    assert resp.status == 429
    assert resp.headers["X-ReadRateLimit-Usage"] == "4,4"
    align(sandbox, 900, plus=0.5)  # :00, :15, :30 or :45 exactly passed
    resp = await client.get(ACTIVITIES, headers=bearer(access))
    assert resp.status == 200
    assert resp.headers["X-ReadRateLimit-Usage"] == "1,5"  # the 429s counted for the day
    assert resp.headers["X-RateLimit-Usage"] == "1,5"


async def test_the_daily_window_resets_at_midnight_utc(client: Client, sandbox: Sandbox) -> None:
    align(sandbox, 86_400, plus=3600)  # 01:00 UTC, well inside one day
    await configure(client, rate_limit=[100, 3])
    access = await token(client, sandbox)
    for expected in (200, 200, 200, 429):
        assert (await client.get(ACTIVITIES, headers=bearer(access))).status == expected
    align(sandbox, 900)  # next quarter hour: the daily limit still holds
    resp = await client.get(ACTIVITIES, headers=bearer(access))
    assert resp.status == 429
    assert resp.headers["X-RateLimit-Usage"] == "1,5"
    align(sandbox, 86_400)
    access = await token(client, sandbox)  # the old one expired in the 23 hours
    resp = await client.get(ACTIVITIES, headers=bearer(access))
    assert resp.status == 200
    assert resp.headers["X-RateLimit-Usage"] == "1,1"
    assert sandbox.clock.now().strftime("%H:%M") == "00:00"


async def test_rate_limit_config_is_validated(client: Client) -> None:
    for bad in ({"rate_limit": [0, 10]}, {"read_rate_limit": "abc"}, {"rate_limit": [1]}):
        resp = await client.post("/_sandbox/strava/config", json=bad)
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "bad_request"
    current = await (await client.get("/_sandbox/strava/config")).json()
    assert current["rate_limit"] == [200, 2000]
    assert current["read_rate_limit"] == [100, 1000]
