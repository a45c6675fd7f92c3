"""The sync-worker's Strava client against the provider sandbox served in-process: paging
(short pages included), get by id with exact big ids, 401 after deauthorization, and 429s
whose wait lands on the sandbox's next quarter hour or 00:00 UTC (virtual clock)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from provider_sandbox.app import create_app
from provider_sandbox.config import AppCredentials, SandboxConfig
from sync_worker.providers import TokenRejectedError, token_fingerprint
from sync_worker.providers.strava import Page, StravaClient
from syncplane_common.clock import ManualClock
from syncplane_common.errors import NotFoundError, RetryableError
from syncplane_common.http import create_client_session

pytestmark = pytest.mark.service

CONFIG = SandboxConfig(
    strava=AppCredentials("12345", "strava-secret"),
    whoop=AppCredentials("whoop-client", "whoop-secret"),
    google=AppCredentials("g-client.apps.googleusercontent.com", "google-secret"),
    seed=11,
)


@dataclass
class Sandbox:
    """The sandbox's control API, and a Strava client pointed at its API."""

    control: aiohttp.ClientSession
    base: str
    clock: ManualClock
    client: StravaClient

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self.control.request(method, self.base + path, json=body) as response:
            assert response.status < 300, await response.text()
            return await response.json()

    async def seed(self, activities: int, **config: Any) -> tuple[int, str]:
        if config:
            await self.call("POST", "/_sandbox/strava/config", config)
        seeded = await self.call(
            "POST",
            "/_sandbox/strava/seed",
            {"athletes": 1, "activities_per_athlete": activities, "tokens": True},
        )
        athlete = seeded["athletes"][0]
        return int(athlete["id"]), str(athlete["access_token"])

    async def sync_clock(self) -> datetime:
        """Set the client's ManualClock to the sandbox's virtual now."""
        now = datetime.fromisoformat((await self.call("GET", "/_sandbox/clock"))["now"])
        self.clock = self.client.clock = ManualClock(now)
        return now

    async def to_quarter_start(self, seconds_in: float = 5.0) -> None:
        """Move the virtual clock just past a quarter boundary, so no window rolls over
        in real time while a test fills one."""
        now = await self.sync_clock()
        start = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
        target = start + timedelta(minutes=15, seconds=seconds_in)
        await self.call(
            "POST", "/_sandbox/clock/advance", {"seconds": (target - now).total_seconds()}
        )
        await self.sync_clock()


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with TestServer(create_app(CONFIG)) as server:
        base = str(server.make_url("")).rstrip("/")
        async with aiohttp.ClientSession() as control:
            http = create_client_session(total_timeout=10, trace=False)
            try:
                clock = ManualClock()
                client = StravaClient(http, f"{base}/strava/api/v3", clock)
                yield Sandbox(control, base, clock, client)
            finally:
                await http.close()


async def _all_pages(client: StravaClient, token: str, per_page: int) -> list[Page]:
    return [page async for page in client.pages(token, per_page=per_page)]


@pytest.mark.parametrize("short_pages", [0, 3])
async def test_paging_returns_each_activity_exactly_once(
    sandbox: Sandbox, short_pages: int
) -> None:
    _, token = await sandbox.seed(450, short_pages=short_pages)
    pages = await _all_pages(sandbox.client, token, per_page=50)
    ids = [a.id for page in pages for a in page.activities]
    assert len(ids) == 450
    assert len(set(ids)) == 450
    assert pages[-1].is_last
    assert all(not page.is_last for page in pages[:-1])
    assert [p.number for p in pages] == list(range(1, len(pages) + 1))
    if short_pages:
        # Pages ran short mid-stream and the client kept going past them.
        assert any(len(p.activities) < 50 for p in pages[:-2])
    # Newest first, as Strava lists them.
    starts = [a.start_date for page in pages for a in page.activities]
    assert starts == sorted(starts, reverse=True)
    # Every answer carried the app's usage; the last one counts every call made.
    assert all(page.usage is not None for page in pages)
    last = pages[-1].usage
    assert last is not None
    assert last.read is not None
    assert last.read.used_15min == len(pages)
    assert (last.read.limit_15min, last.read.limit_daily) == (100, 1000)


async def test_after_and_before_bound_the_listing(sandbox: Sandbox) -> None:
    _, token = await sandbox.seed(120)
    everything = [a async for p in sandbox.client.pages(token) for a in p.activities]
    assert len(everything) == 120
    middle = sorted(everything, key=lambda a: a.start_date)[40:80]
    after = int(middle[0].start_date.timestamp()) - 1
    before = int(middle[-1].start_date.timestamp()) + 1
    inside = [
        a.id
        async for p in sandbox.client.pages(token, after=after, before=before, per_page=7)
        for a in p.activities
    ]
    assert sorted(inside) == sorted(a.id for a in middle)


async def test_get_by_id_keeps_big_ids_exact(sandbox: Sandbox) -> None:
    _, token = await sandbox.seed(5, big_ids=True)
    page = await sandbox.client.list_activities(token, after=None, before=None, page=1)
    listed = page.activities[0]
    assert listed.id > 2**53  # past double precision: a float would have changed it
    fetched = await sandbox.client.get_activity(token, listed.id)
    activity = fetched.activity
    assert activity.id == listed.id
    assert activity.raw["resource_state"] == 3
    assert fetched.usage is not None
    if activity.upload_id is not None:
        assert activity.upload_id > 2**63
        assert activity.upload_id == listed.raw["upload_id"]
    assert activity.start_date.tzinfo is UTC
    assert activity.start_date_local.tzinfo is None
    offset = timedelta(seconds=activity.utc_offset or 0)
    assert activity.start_date_local == activity.start_date.replace(tzinfo=None) + offset
    assert activity.timezone is not None
    assert not activity.timezone.startswith("(")
    for key in ("name", "sport_type", "distance", "moving_time", "start_latlng"):
        assert getattr(activity, key) == getattr(listed, key)


async def test_get_unknown_activity_is_not_found(sandbox: Sandbox) -> None:
    _, token = await sandbox.seed(1)
    with pytest.raises(NotFoundError):
        await sandbox.client.get_activity(token, 999_999_999_999)


async def test_deauthorized_token_is_rejected_with_its_fingerprint(sandbox: Sandbox) -> None:
    athlete_id, token = await sandbox.seed(3)
    await sandbox.client.list_activities(token, after=None, before=None, page=1)
    await sandbox.call("POST", f"/_sandbox/strava/athletes/{athlete_id}/deauthorize")
    with pytest.raises(TokenRejectedError) as caught:
        await sandbox.client.list_activities(token, after=None, before=None, page=1)
    assert caught.value.fingerprint == token_fingerprint(token)
    assert caught.value.retry_after == 0.0
    assert token not in str(caught.value)
    # A token minted afterwards (what token.get would hand out after reconnect) works.
    fresh = await sandbox.call("POST", f"/_sandbox/strava/athletes/{athlete_id}/tokens", {})
    page = await sandbox.client.list_activities(
        str(fresh["access_token"]), after=None, before=None, page=1
    )
    assert len(page.activities) == 3


async def test_429_waits_for_the_sandboxs_next_quarter_hour(sandbox: Sandbox) -> None:
    _, token = await sandbox.seed(10, read_rate_limit=[3, 1000])
    await sandbox.to_quarter_start()
    for number in (1, 2, 3):
        await sandbox.client.list_activities(token, after=None, before=None, page=number)
    with pytest.raises(RetryableError) as caught:
        await sandbox.client.list_activities(token, after=None, before=None, page=4)
    wait = caught.value.retry_after
    assert wait is not None
    resume = sandbox.clock.now() + timedelta(seconds=wait)
    assert (resume.minute % 15, resume.second, resume.microsecond) == (0, 0, 0)
    assert 880 < wait <= 900 - 5
    # After that wait, and not before, the sandbox serves again.
    await sandbox.call("POST", "/_sandbox/clock/advance", {"seconds": wait})
    page = await sandbox.client.list_activities(token, after=None, before=None, page=1)
    assert page.usage is not None
    assert page.usage.read is not None
    assert page.usage.read.used_15min == 1
    stats = await sandbox.call("GET", "/_sandbox/stats")
    assert stats["rate_limited"] == {"strava GET /athlete/activities": 1}


async def test_429_waits_until_midnight_when_the_daily_limit_is_spent(sandbox: Sandbox) -> None:
    athlete_id, token = await sandbox.seed(10, read_rate_limit=[100, 2])
    await sandbox.to_quarter_start()
    page = await sandbox.client.list_activities(token, after=None, before=None, page=1)
    fetched = await sandbox.client.get_activity(token, page.activities[0].id)
    assert fetched.usage is not None
    assert fetched.usage.daily_spent
    with pytest.raises(RetryableError) as caught:
        await sandbox.client.list_activities(token, after=None, before=None, page=1)
    wait = caught.value.retry_after
    assert wait is not None
    resume = sandbox.clock.now() + timedelta(seconds=wait)
    assert resume == (sandbox.clock.now() + timedelta(days=1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    await sandbox.call("POST", "/_sandbox/clock/advance", {"seconds": wait})
    # Hours passed: the 6-hour access token is gone, as token.get would have refreshed it.
    fresh = await sandbox.call("POST", f"/_sandbox/strava/athletes/{athlete_id}/tokens", {})
    page = await sandbox.client.list_activities(
        str(fresh["access_token"]), after=None, before=None, page=1
    )
    assert len(page.activities) == 10
    assert page.usage is not None
    assert page.usage.read is not None
    assert page.usage.read.used_daily == 1


async def test_server_errors_and_refused_connections_are_retryable(sandbox: Sandbox) -> None:
    _, token = await sandbox.seed(3)
    fault = {"provider": "strava", "endpoint": "GET /athlete/activities", "status": 503}
    await sandbox.call("POST", "/_sandbox/faults", {**fault, "count": 1})
    with pytest.raises(RetryableError) as caught:
        await sandbox.client.list_activities(token, after=None, before=None, page=1)
    assert caught.value.details["status"] == 503
    # The fault is spent: the same call now succeeds.
    page = await sandbox.client.list_activities(token, after=None, before=None, page=1)
    assert len(page.activities) == 3
    # Nothing listening: a transport failure, retryable and never a verdict on the token.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    nowhere = StravaClient(sandbox.client.session, f"http://127.0.0.1:{closed_port}", sandbox.clock)
    with pytest.raises(RetryableError) as refused:
        await nowhere.list_activities(token, after=None, before=None, page=1)
    assert type(refused.value) is RetryableError
    assert token not in str(refused.value)
