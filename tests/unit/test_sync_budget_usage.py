"""Usage headers as budget corrections (sync_worker.budget.strava_observed / whoop_observed):
the header formats of PROVIDERS.md §3.2 and §7.2, as the sandbox's limiters write them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from provider_sandbox.providers._strava_limits import RateLimiter as StravaLimiter
from provider_sandbox.providers._whoop_limits import RateLimiter as WhoopLimiter
from provider_sandbox.providers._whoop_settings import WhoopSettings
from sync_worker.budget import (
    MemoryRateBudget,
    Observed,
    Priority,
    parse_whoop_usage,
    strava_observed,
    whoop_observed,
    whoop_windows,
)
from sync_worker.providers.strava import parse_usage
from syncplane_common.clock import ManualClock

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_strava_headers_give_all_four_windows_any_case() -> None:
    headers = {
        "x-ratelimit-limit": "200,2000",
        "x-ratelimit-usage": "31,412",
        "X-ReadRateLimit-Limit": "100,1000",
        "X-ReadRateLimit-Usage": "30,400",
    }
    assert strava_observed(parse_usage(headers)) == [
        Observed("15min", 200, 31),
        Observed("daily", 2000, 412),
        Observed("read_15min", 100, 30),
        Observed("read_daily", 1000, 400),
    ]
    assert strava_observed(parse_usage({})) == []
    only_overall = {"X-RateLimit-Limit": "200,2000", "X-RateLimit-Usage": "1,1"}
    assert [o.window for o in strava_observed(parse_usage(only_overall))] == ["15min", "daily"]


def test_strava_headers_from_the_sandbox_limiter() -> None:
    limiter = StravaLimiter((200, 2000), (100, 1000))
    now = T0.timestamp()
    for _ in range(3):
        limiter.hit(now)
    usage = parse_usage(limiter.headers(now))
    observed = {o.window: (o.limit, o.used) for o in strava_observed(usage)}
    assert observed == {
        "15min": (200, 3),
        "daily": (2000, 3),
        "read_15min": (100, 3),
        "read_daily": (1000, 3),
    }


def test_whoop_example_from_the_docs() -> None:
    headers = {
        "X-RateLimit-Limit": "100, 100;window=60, 10000;window=86400",
        "X-RateLimit-Remaining": "98",
        "X-RateLimit-Reset": "3",
    }
    usage = parse_whoop_usage(headers)
    assert usage is not None
    assert usage.lead_seconds == 60
    assert dict(usage.policies) == {60: 100, 86_400: 10_000}
    # The day contains the current minute: its count is at least the minute's.
    assert whoop_observed(headers) == [Observed("minute", 100, 2), Observed("day", 10_000, 2)]


def test_whoop_day_leading_tells_nothing_of_the_minute_count() -> None:
    headers = {
        "x-ratelimit-limit": "10000, 100;window=60, 10000;window=86400",
        "x-ratelimit-remaining": "40",
        "x-ratelimit-reset": "5000",
    }
    assert whoop_observed(headers) == [Observed("minute", 100, 0), Observed("day", 10_000, 9960)]


def test_whoop_equal_limits_are_told_apart_by_the_reset() -> None:
    limit = "50, 50;window=60, 50;window=86400"
    minute = parse_whoop_usage(
        {"X-RateLimit-Limit": limit, "X-RateLimit-Remaining": "1", "X-RateLimit-Reset": "30"}
    )
    day = parse_whoop_usage(
        {"X-RateLimit-Limit": limit, "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "600"}
    )
    assert minute is not None
    assert minute.lead_seconds == 60
    assert day is not None
    assert day.lead_seconds == 86_400


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-RateLimit-Limit": "100, 100;window=60", "X-RateLimit-Remaining": "1"},
        {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "1", "X-RateLimit-Reset": "3"},
        {
            "X-RateLimit-Limit": "100, 100;window=sixty",
            "X-RateLimit-Remaining": "1",
            "X-RateLimit-Reset": "3",
        },
        {
            "X-RateLimit-Limit": "7, 100;window=60",
            "X-RateLimit-Remaining": "1",
            "X-RateLimit-Reset": "3",
        },
        {
            "X-RateLimit-Limit": "100, 100;window=60",
            "X-RateLimit-Remaining": "-1",
            "X-RateLimit-Reset": "3",
        },
    ],
)
def test_whoop_headers_that_do_not_parse_correct_nothing(headers: dict[str, str]) -> None:
    assert whoop_observed(headers) == []


async def test_a_whoop_budget_follows_the_sandbox_counters() -> None:
    """Calls the budget did not reserve (another process of the app) show up through the
    headers, so the budget refuses exactly when the sandbox would."""
    clock = ManualClock(T0 + timedelta(seconds=10))
    sandbox = WhoopLimiter(
        lambda: clock.now().timestamp(),
        WhoopSettings(rate_limit_per_minute=6, rate_limit_per_day=100),
    )
    budget = MemoryRateBudget({"whoop": whoop_windows(6, 100)}, clock, 1.0)
    for _ in range(2):
        sandbox.hit("app")  # made by someone else
    served = 0
    while (await budget.acquire("whoop", Priority.BACKGROUND)) == 0.0:
        sent = clock.now()
        allowed, headers = sandbox.hit("app")
        assert allowed
        served += 1
        await budget.observe("whoop", whoop_observed(headers), at=sent)
    assert served == 4
    assert not sandbox.hit("app")[0]
