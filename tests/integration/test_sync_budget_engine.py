"""The engine under a spent rate budget (issue 6): a backfill that needs more calls than a
window allows is not retried into 429s. Its message is acknowledged and a continuation is
queued for the window boundary (``not_before``), which resumes the same session from its
checkpoint. Windows here are 2 s long so the test runs in real time; the budget itself is
the shared KV one every replica uses."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sync_worker.budget import KvRateBudget, Window
from syncplane_common.clock import SystemClock

from tests.integration.sync_harness import (
    activity_count,
    build_app,
    eventually,
    migrated,
    recorder,
    running,
    seed_strava,
    sessions_of,
    settings_for,
)
from tests.integration.token_harness import stack

pytestmark = pytest.mark.integration

WINDOW_SECONDS = 2
LIMIT = 10  # per window; a backfill may use 80% of it
ACTIVITIES = 60
PER_PAGE = 2


async def test_a_spent_budget_defers_the_session_to_the_window_boundary(
    nats_server: Any, database_url: str
) -> None:
    await migrated(database_url)
    user = "u-budget"
    async with stack(nats_server.url, database_url) as s:
        budget = await KvRateBudget.bind(
            s.nc.jetstream(),
            {"strava": (Window("burst", WINDOW_SECONDS, LIMIT),)},
            SystemClock(),
            0.8,
        )
        settings = settings_for(
            s,
            database_url,
            weather_enabled=False,
            geocoding_enabled=False,
            strava_per_page=PER_PAGE,
            rate_inline_wait_seconds=0.05,
            scheduler_tick_seconds=3600,
        )
        async with (
            recorder(nats_server.url, "sync.requested.>") as commands,
            running(build_app(settings, budget=budget, scheduler=False)),
        ):
            hint = f"{user}-athlete"
            await seed_strava(s, hint, ACTIVITIES)
            started = time.monotonic()
            await s.connect(user, "strava", hint)

            async def completed() -> bool:
                rows = await sessions_of(s, user)
                return bool(rows) and rows[0]["state"] == "completed"

            await eventually(completed, within=60)
            elapsed = time.monotonic() - started

        assert await activity_count(s, user) == ACTIVITIES
        (session,) = await sessions_of(s, user)
        assert session["stored"] == ACTIVITIES
        calls = ACTIVITIES // PER_PAGE + 1
        background = int(LIMIT * 0.8)
        continuations = [c for c in commands.of("sync.requested.strava", user) if c["session_id"]]
        # Each continuation carries the session and the boundary it waits for.
        assert len(continuations) >= calls // background - 1
        assert all(c["session_id"] == str(session["id"]) for c in continuations)
        assert all(c["not_before"] for c in continuations)
        # Never faster than the budget allows: whole windows had to pass.
        assert elapsed >= (calls // background - 1) * WINDOW_SECONDS
        listed = (await s.stats())["calls"]["strava GET /athlete/activities"]
        assert listed == calls
        assert sum((await s.stats())["rate_limited"].values()) == 0
