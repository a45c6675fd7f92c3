"""Google Fit through the gateway, token-service, sync-worker and the sandbox (gaps left by
issue 7): the scopes the gateway's connect flow asks for are enough for every read the
sync makes (the sandbox refuses an aggregate whose data type no granted scope covers,
and hides sleep sessions without the sleep scope), and the app sets the zone a user's
days are counted in over ``/api/v1/users/{id}/time_zone``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sync_worker.app import SyncApp

from tests.integration.gateway_harness import Harness, running_gateway
from tests.integration.sync_harness import (
    Events,
    build_app,
    eventually,
    migrated,
    recorder,
    running,
    settings_for,
)
from tests.integration.test_gateway_connect_token_service import _through_provider
from tests.integration.token_harness import CONFIG, Stack, stack

pytestmark = pytest.mark.integration

FIT = "google_fit"
DAYS = 10
DAYS_BACK = 7
SLEEP = 72
RUNNING = 8
HOUR_MS = 3_600_000


@dataclass
class Env:
    stack: Stack
    worker: SyncApp
    gateway: Harness
    seen: Events


@pytest.fixture(scope="module")
async def env(nats_server: Any, database_url: str) -> AsyncIterator[Env]:
    await migrated(database_url)
    async with stack(nats_server.url, database_url) as s:
        settings = settings_for(
            s,
            database_url,
            scheduler_tick_seconds=3600,
            google_fit_run_pause_seconds=0,
            google_fit_days_back=DAYS_BACK,
            google_fit_backfill_days=30,
        )
        async with (
            running(build_app(settings, clock=s.clock, scheduler=False)) as worker,
            recorder(nats_server.url, "sync.>", "connection.>") as seen,
            running_gateway(
                nats_server.url,
                sandbox_url=s.sandbox_url,
                google_client_id=CONFIG.google.client_id,
                request_timeout_seconds=20.0,
            ) as gateway,
        ):
            yield Env(s, worker, gateway, seen)


async def connect_through_the_gateway(env: Env, user: str) -> str:
    """A Fit account with days, a run and a night, connected by the gateway's own connect
    flow (its scopes, not the test's) and backfilled; the sandbox account id."""
    s, hint = env.stack, f"{user}@example.com"
    account = s.sandbox.accounts.get_or_create(FIT, hint).id
    await s.control("POST", f"/_sandbox/google_fit/users/{account}/days", {"generate": DAYS})
    yesterday = int((s.sandbox.clock.time() - 86_400) * 1000)
    night = {"activityType": SLEEP, "name": "Night", "startTimeMillis": str(yesterday)}
    night["endTimeMillis"] = str(yesterday + 8 * HOUR_MS)
    run = {"activityType": RUNNING, "name": "Run", "startTimeMillis": str(yesterday + 9 * HOUR_MS)}
    run["endTimeMillis"] = str(yesterday + 10 * HOUR_MS)
    await s.control(
        "POST", f"/_sandbox/google_fit/users/{account}/sessions", {"sessions": [night, run]}
    )
    _, outcome = await _through_provider(env.gateway, FIT, user, hint)
    assert outcome == {"connect": ["success"], "provider": [FIT]}
    await eventually(
        lambda: (
            env.seen.of(f"sync.completed.{FIT}", user)
            or env.seen.of(f"sync.failed.{FIT}", user)
            or env.seen.of(f"connection.reauth_required.{FIT}", user)
        )
    )
    return account


async def call(env: Env, method: str, user: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    async with env.gateway.client.request(
        method, f"/api/v1/users/{user}/time_zone", json=body, headers=env.gateway.auth(user)
    ) as resp:
        return resp.status, await resp.json()


async def test_the_connect_scopes_cover_daily_rows_and_sessions(env: Env) -> None:
    s, user = env.stack, "gf-scopes"
    await connect_through_the_gateway(env, user)

    assert env.seen.of(f"sync.failed.{FIT}", user) == []
    assert env.seen.of(f"connection.reauth_required.{FIT}", user) == []
    row = await s.row(user, FIT)
    assert row["status"] == "active"
    daily = await s.admin.fetch(
        "SELECT steps, calories_kcal, distance_m, heart_rate_avg, active_minutes "
        "FROM sync.google_fit_daily WHERE user_id = $1",
        user,
    )
    # Each generated day has every metric; distance is the one the location scope reads.
    walked = [r for r in daily if r["steps"]]
    assert len(walked) == DAYS
    for record in walked:
        assert None not in (
            record["distance_m"],
            record["calories_kcal"],
            record["active_minutes"],
            record["heart_rate_avg"],
        )
    sessions = await s.admin.fetch(
        "SELECT activity_type FROM sync.google_fit_sessions WHERE user_id = $1", user
    )
    assert sorted(r["activity_type"] for r in sessions) == [RUNNING, SLEEP]


async def test_the_app_sets_the_zone_the_next_sync_counts_days_in(env: Env) -> None:
    s, user = env.stack, "gf-zone"
    await connect_through_the_gateway(env, user)
    assert await call(env, "GET", user) == (200, {"user_id": user, "time_zone": "UTC"})

    status, body = await call(env, "PUT", user, {"time_zone": "Mars/Olympus"})
    assert status == 400
    assert body["error"] == {
        "code": "bad_request",
        "message": "'Mars/Olympus' is not an IANA time zone",
    }
    status, body = await call(env, "PUT", user, {"time_zone": ""})
    assert status == 400
    assert body["error"]["code"] == "bad_request"
    assert (await call(env, "GET", user))[1]["time_zone"] == "UTC"

    # Another user's zone is out of reach.
    async with env.gateway.client.put(
        f"/api/v1/users/{user}/time_zone",
        json={"time_zone": "Asia/Tokyo"},
        headers=env.gateway.auth("someone-else"),
    ) as resp:
        assert resp.status == 403

    ok = (200, {"user_id": user, "time_zone": "Asia/Tokyo"})
    assert await call(env, "PUT", user, {"time_zone": "Asia/Tokyo"}) == ok
    assert await call(env, "GET", user) == ok

    await s.admin.execute(
        "UPDATE sync.connections SET next_sync_at = $3 WHERE user_id = $1 AND provider = $2",
        user,
        FIT,
        s.clock.now() - timedelta(seconds=1),
    )
    assert env.worker.fit_run is not None
    run = await env.worker.fit_run.run_once()
    assert run is not None
    assert (run.users_processed, run.successful, run.days_synced) == (1, 1, DAYS_BACK)

    records = await s.admin.fetch(
        "SELECT day, day_start, day_end, steps FROM sync.google_fit_daily "
        "WHERE user_id = $1 AND time_zone = 'Asia/Tokyo' ORDER BY day",
        user,
    )
    tokyo = ZoneInfo("Asia/Tokyo")
    today = s.clock.now().astimezone(tokyo).date()
    assert [r["day"] for r in records] == [today - timedelta(days=i) for i in range(6, -1, -1)]
    for r in records:
        # Local midnight in Tokyo is 15:00 UTC the day before.
        assert r["day_start"].astimezone(tokyo).replace(tzinfo=None).isoformat() == (
            f"{r['day'].isoformat()}T00:00:00"
        )
        assert r["day_start"].astimezone(UTC).hour == 15
        assert r["day_end"] - r["day_start"] == timedelta(days=1)
    assert sum(1 for r in records if r["steps"]) >= DAYS_BACK - 1
    # The backfill's days stay keyed in the zone they were counted in.
    before = await s.admin.fetchval(
        "SELECT count(*) FROM sync.google_fit_daily WHERE user_id = $1 AND time_zone = 'UTC'",
        user,
    )
    assert before >= DAYS
