"""sync_worker.providers.google_fit against the in-process sandbox: one-day buckets in the
user's zone (DST days included) parsed into exact FitDay values, windows and resuming,
sessions in both list modes with deletions and the next run's token, and Google's errors
mapped to the tree (401, 429 / 403 usageLimits, 5xx, scopes, turndown, bad tokens)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from provider_sandbox.core import Sandbox
from sync_worker.providers import token_fingerprint
from sync_worker.providers._google_fit_model import Bucket, fit_day
from sync_worker.providers.google_fit import (
    MAX_DAYS_PER_REQUEST,
    FitDaysPage,
    FitSessionsPage,
    GoogleFitClient,
    ProviderDiscontinuedError,
    raise_for_answer,
)
from syncplane_common.clock import ManualClock
from syncplane_common.errors import (
    CursorInvalidError,
    NotFoundError,
    PermanentError,
    ReauthRequiredError,
    RetryableError,
    TokenRejectedError,
)

from tests.provider_payloads import PAYLOADS
from tests.sandbox.conftest import Client
from tests.sandbox.test_google_fit import (
    AUTH,
    FitUser,
    add_sessions,
    make_user,
    put_days,
    session,
)

pytestmark = pytest.mark.service

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
BERLIN = "Europe/Berlin"
HOUR_MS = 3_600_000


@pytest.fixture
async def fit(client: Client) -> AsyncIterator[GoogleFitClient]:
    async with aiohttp.ClientSession() as http:
        yield GoogleFitClient(http, str(client.make_url("/google/fitness/v1")), ManualClock(NOW))


@pytest.fixture
async def user(client: Client) -> FitUser:
    return await make_user(client)


def token_of(user: FitUser) -> str:
    return user.headers["Authorization"].removeprefix("Bearer ")


async def settings(client: Client, **values: Any) -> None:
    resp = await client.post("/_sandbox/google_fit/settings", json=values)
    assert resp.status == 200, await resp.text()


async def fault(client: Client, endpoint: str, status: int, **extra: Any) -> None:
    rule = {"provider": "google_fit", "endpoint": endpoint, "status": status, **extra}
    assert (await client.post("/_sandbox/faults", json=rule)).status in (200, 201)


async def calls(client: Client, key: str) -> int:
    stats = await (await client.get("/_sandbox/stats")).json()
    count: int = stats["calls"].get(key, 0)
    return count


AGGREGATE = "google_fit POST /users/me/dataset:aggregate"
SESSIONS = "google_fit GET /users/me/sessions"


def day_values(day: date, n: int) -> dict[str, Any]:
    return {
        "date": day.isoformat(),
        "steps": 8000 + n,
        "calories": 2100.5 + n,
        "distance": 6000.25 + n,
        "heart_rate": {"avg": 70 + n, "min": 52, "max": 150 + n},
        "active_minutes": 45 + n,
    }


# -- daily aggregates ------------------------------------------------------------------


async def test_days_in_the_users_zone_with_exact_values(
    client: Client, user: FitUser, fit: GoogleFitClient
) -> None:
    await settings(client, time_zone=BERLIN)
    first = date(2026, 1, 10)
    await put_days(client, user, [day_values(first + timedelta(days=n), n) for n in range(3)])

    days, invalid = await fit.aggregate_days(
        token_of(user), first, first + timedelta(days=3), BERLIN
    )

    assert invalid == []
    assert [d.day for d in days] == [first + timedelta(days=n) for n in range(4)]
    zone = ZoneInfo(BERLIN)
    for n, day in enumerate(days[:3]):
        assert day.time_zone == BERLIN
        assert day.start == datetime(2026, 1, 10 + n, tzinfo=zone)
        assert day.end - day.start == timedelta(days=1)
        assert day.steps == 8000 + n
        assert day.active_minutes == 45 + n
        assert day.calories_kcal == pytest.approx(2100.5 + n)
        assert day.distance_m == pytest.approx(6000.25 + n)
        assert day.heart_rate_avg == pytest.approx(70 + n)
        assert (day.heart_rate_min, day.heart_rate_max) == (52, 150 + n)
        assert not day.is_empty
        assert day.raw["startTimeMillis"] == str(int(day.start.timestamp() * 1000))
    # No data on the fourth day: Google still answers the bucket, with empty datasets.
    assert days[3].is_empty
    assert days[3].steps is None
    assert days[0].content_hash != days[1].content_hash
    assert await calls(client, AGGREGATE) == 1


async def test_a_dst_day_is_one_bucket_of_25_hours(
    client: Client, user: FitUser, fit: GoogleFitClient
) -> None:
    await settings(client, time_zone=BERLIN)
    fall_back = date(2025, 10, 26)
    await put_days(client, user, [day_values(fall_back + timedelta(days=n), n) for n in (-1, 0, 1)])
    days, _ = await fit.aggregate_days(
        token_of(user), fall_back - timedelta(days=1), fall_back + timedelta(days=1), BERLIN
    )
    assert [d.day for d in days] == [fall_back + timedelta(days=n) for n in (-1, 0, 1)]
    assert [d.end - d.start for d in days] == [
        timedelta(hours=24),
        timedelta(hours=25),
        timedelta(hours=24),
    ]
    assert [d.steps for d in days] == [7999, 8000, 8001]


async def test_a_revised_day_changes_its_hash_an_unchanged_one_does_not(
    client: Client, user: FitUser, fit: GoogleFitClient
) -> None:
    day = date(2026, 2, 2)
    await put_days(client, user, [day_values(day, 0), day_values(day + timedelta(days=1), 1)])
    before, _ = await fit.aggregate_days(token_of(user), day, day + timedelta(days=1), "UTC")
    await put_days(client, user, [{"date": day.isoformat(), "steps": 9100}])
    after, _ = await fit.aggregate_days(token_of(user), day, day + timedelta(days=1), "UTC")
    assert after[0].steps == 9100
    assert after[0].content_hash != before[0].content_hash
    assert after[1].content_hash == before[1].content_hash


async def test_daily_pages_split_into_windows_and_resume(
    client: Client, user: FitUser, fit: GoogleFitClient
) -> None:
    first = date(2026, 1, 1)
    await put_days(client, user, [day_values(first + timedelta(days=n), n) for n in range(10)])
    last = first + timedelta(days=9)

    pages = [
        p async for p in fit.daily_pages(token_of(user), first, last, "UTC", days_per_request=4)
    ]

    assert [len(p.items) for p in pages] == [4, 4, 2]
    assert [p.is_last for p in pages] == [False, False, True]
    assert [d.steps for p in pages for d in p.items] == [8000 + n for n in range(10)]
    cursor = pages[0].next_cursor
    assert cursor == {
        "stream": "daily",
        "next_day": "2026-01-05",
        "last_day": "2026-01-10",
        "time_zone": "UTC",
        "days_per_request": 4,
    }
    assert json.loads(json.dumps(cursor)) == cursor
    assert pages[-1].next_cursor is None
    rest: list[FitDaysPage] = [p async for p in fit.resume_daily(token_of(user), cursor)]
    assert [[d.day for d in p.items] for p in rest] == [[d.day for d in p.items] for p in pages[1:]]
    assert await calls(client, AGGREGATE) == 5
    with pytest.raises(CursorInvalidError):
        fit.resume_daily(token_of(user), {"stream": "daily", "next_day": "soon"})


async def test_the_longest_window_fits_googles_span_limit_across_dst(
    client: Client, user: FitUser, fit: GoogleFitClient
) -> None:
    first = date(2025, 9, 1)
    last = first + timedelta(days=MAX_DAYS_PER_REQUEST - 1)  # spans the end of DST
    days, _ = await fit.aggregate_days(token_of(user), first, last, BERLIN)
    assert len(days) == MAX_DAYS_PER_REQUEST
    with pytest.raises(ValueError, match="at most"):
        await fit.aggregate_days(token_of(user), first, last + timedelta(days=1), BERLIN)


def test_the_documented_response_parses() -> None:
    body = json.loads((PAYLOADS / "gfit_aggregate_response.json").read_text())
    raw = body["bucket"][0]
    day = fit_day(Bucket.model_validate(raw), raw, ZoneInfo("UTC"))
    assert day.day == date(2019, 11, 19)
    assert day.steps == 736
    assert day.distance_m == pytest.approx(575.2878494262695)
    assert (day.calories_kcal, day.heart_rate_avg, day.active_minutes) == (None, None, None)
    assert day.raw is raw


# -- sessions --------------------------------------------------------------------------


async def test_sessions_sync_mode_pages_and_hands_on_its_token(
    client: Client, sandbox: Sandbox, user: FitUser, fit: GoogleFitClient
) -> None:
    await settings(client, sessions_page_size=2)
    base = int(sandbox.clock.time() * 1000) - 3 * 86_400_000
    made = await add_sessions(
        client, user, *(session(f"s{n}", base + n * HOUR_MS, 30) for n in range(5))
    )
    token = token_of(user)

    pages: list[FitSessionsPage] = [p async for p in fit.session_pages(token)]

    assert [[s.id for s in p.items] for p in pages] == [["s0", "s1"], ["s2", "s3"], ["s4"]]
    assert [p.is_last for p in pages] == [False, False, True]
    first = pages[0].items[0]
    assert first.raw == made[0]
    assert first.start == datetime.fromtimestamp(base / 1000, UTC)
    assert first.end - first.start == timedelta(minutes=30)
    assert first.activity_type == 8
    assert first.package_name == "com.google.android.apps.fitness"
    assert first.modified_at is not None
    # The last page's token is the next run's start: later changes and deletions only.
    checkpoint = pages[-1].next_cursor
    assert checkpoint is not None
    assert checkpoint["stream"] == "sessions"
    resp = await client.delete(f"/_sandbox/google_fit/users/{user.id}/sessions/s1")
    assert resp.status == 200
    await add_sessions(client, user, {"id": "s3", "name": "renamed"})
    later = [p async for p in fit.resume_sessions(token, checkpoint)]
    assert [s.id for p in later for s in p.items] == ["s3"]
    assert later[0].items[0].name == "renamed"
    assert [d for p in later for d in p.deleted] == ["s1"]
    with pytest.raises(CursorInvalidError):
        fit.resume_sessions(token, {"stream": "daily"})


async def test_sessions_in_a_time_range_are_one_page_without_cursor(
    client: Client, sandbox: Sandbox, user: FitUser, fit: GoogleFitClient
) -> None:
    base = int(sandbox.clock.time() * 1000) - 3 * 86_400_000
    await add_sessions(
        client,
        user,
        session("early", base, 30),
        session("late", base + 10 * HOUR_MS, 30),
        session("night", base + 20 * HOUR_MS, 480, activity=72),
    )
    start = datetime.fromtimestamp((base + 5 * HOUR_MS) / 1000, UTC)
    page = await fit.list_sessions(token_of(user), start=start, end=start + timedelta(days=2))
    assert sorted(s.id for s in page.items) == ["late", "night"]
    assert (page.next_cursor, page.is_last) == (None, True)
    sleep_only = await fit.list_sessions(
        token_of(user), start=start, end=start + timedelta(days=2), activity_types=(72,)
    )
    assert [s.id for s in sleep_only.items] == ["night"]


# -- errors ----------------------------------------------------------------------------


async def test_401_is_token_rejected_with_its_fingerprint(fit: GoogleFitClient) -> None:
    with pytest.raises(TokenRejectedError) as caught:
        await fit.list_sessions("ya29.not-a-token")
    assert caught.value.fingerprint == token_fingerprint("ya29.not-a-token")
    assert caught.value.details["errors"] == [
        {"domain": "global", "reason": "authError", "message": "Invalid Credentials"}
    ]


@pytest.mark.parametrize("status", [429, 403])
async def test_rate_limits_are_retryable_after_a_minute(
    client: Client, user: FitUser, fit: GoogleFitClient, status: int
) -> None:
    await fault(client, "POST /users/me/dataset:aggregate", status, count=1)
    with pytest.raises(RetryableError) as caught:
        await fit.aggregate_days(token_of(user), date(2026, 1, 1), date(2026, 1, 7), "UTC")
    assert type(caught.value) is RetryableError
    assert caught.value.retry_after == 60.0


async def test_the_per_user_limit_is_retryable(
    client: Client, user: FitUser, fit: GoogleFitClient
) -> None:
    await settings(client, user_rate_limit_per_minute=1)
    await fit.list_sessions(token_of(user))
    with pytest.raises(RetryableError):
        await fit.list_sessions(token_of(user))


async def test_5xx_is_retryable(client: Client, user: FitUser, fit: GoogleFitClient) -> None:
    await fault(client, "GET /users/me/sessions", 503, count=1)
    with pytest.raises(RetryableError) as caught:
        await fit.list_sessions(token_of(user))
    assert type(caught.value) is RetryableError
    assert (await fit.list_sessions(token_of(user))).is_last


async def test_a_missing_scope_needs_a_new_consent(client: Client, fit: GoogleFitClient) -> None:
    steps_only = await make_user(client, [AUTH + "activity.read"])
    with pytest.raises(ReauthRequiredError):
        await fit.aggregate_days(token_of(steps_only), date(2026, 1, 1), date(2026, 1, 2), "UTC")


@pytest.mark.parametrize("status", [410, 404, 403])
async def test_the_turndown_is_discontinued_not_retried(
    client: Client, user: FitUser, fit: GoogleFitClient, status: int
) -> None:
    await settings(client, turndown_status=status)
    with pytest.raises(ProviderDiscontinuedError) as caught:
        await fit.list_sessions(token_of(user))
    assert isinstance(caught.value, NotFoundError)
    assert not isinstance(caught.value, RetryableError)


async def test_a_refused_page_token_restarts_the_sync(user: FitUser, fit: GoogleFitClient) -> None:
    with pytest.raises(CursorInvalidError):
        await fit.list_sessions(token_of(user), page_token="not-a-google-token")


async def test_other_400s_and_bad_zones_are_permanent(
    client: Client, user: FitUser, fit: GoogleFitClient
) -> None:
    await fault(client, "POST /users/me/dataset:aggregate", 400, count=1)
    with pytest.raises(PermanentError) as caught:
        await fit.aggregate_days(token_of(user), date(2026, 1, 1), date(2026, 1, 1), "UTC")
    assert type(caught.value) is PermanentError
    with pytest.raises(PermanentError):
        await fit.aggregate_days(token_of(user), date(2026, 1, 1), date(2026, 1, 1), "Mars/Base")


def test_retry_after_header_wins_over_the_default() -> None:
    body = {"error": {"code": 429, "message": "Rate Limit Exceeded", "errors": []}}
    with pytest.raises(RetryableError) as caught:
        raise_for_answer(429, body, {"Retry-After": "17"}, operation="sessions", token="t", now=NOW)
    assert caught.value.retry_after == 17.0
    with pytest.raises(PermanentError):
        raise_for_answer(409, "not json", {}, operation="sessions", token="t", now=NOW)
