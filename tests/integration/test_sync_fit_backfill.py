"""Google Fit backfills on connect are paced by the shared rate budget at background
priority, and never starve the scheduled run (issue 7): with the background share of
the minute spent by a big backfill still in flight, a run over every user goes through
at once, without waiting for the window to turn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sync_worker.app import SyncApp
from sync_worker.budget import Priority

from tests.integration.sync_harness import (
    Events,
    build_app,
    eventually,
    migrated,
    recorder,
    running,
    settings_for,
)
from tests.integration.token_harness import Stack, stack

pytestmark = pytest.mark.integration

FIT = "google_fit"
SCOPES = tuple(
    f"https://www.googleapis.com/auth/fitness.{kind}.read"
    for kind in ("activity", "body", "heart_rate", "location", "sleep")
)
LIMIT = 30  # Fit calls a minute, for the whole app
BACKGROUND = 15  # half of it for backfills and other background work
USERS = 6  # a backfill is 3 calls (89 days, 1 day, sessions): 18 wanted, 15 allowed


@pytest.fixture(scope="module")
async def env(nats_server: Any, database_url: str) -> AsyncIterator[tuple[Stack, SyncApp, Events]]:
    await migrated(database_url)
    async with stack(nats_server.url, database_url) as s:
        settings = settings_for(
            s,
            database_url,
            scheduler_tick_seconds=3600,
            google_fit_run_pause_seconds=0,
            google_fit_rate_limit_per_minute=LIMIT,
            rate_background_share=BACKGROUND / LIMIT,
            # Never sleep through a wait: the clock is frozen, the window must not turn.
            rate_inline_wait_seconds=0,
        )
        app = build_app(settings, clock=s.clock, scheduler=False)
        async with running(app), recorder(nats_server.url, "sync.>") as seen:
            yield s, app, seen


async def fit_calls(s: Stack) -> int:
    stats = (await s.stats())["calls"]
    return sum(n for key, n in stats.items() if key.startswith("google_fit "))


async def test_a_run_proceeds_while_a_big_backfill_waits_for_the_budget(
    env: tuple[Stack, SyncApp, Events],
) -> None:
    s, app, seen = env
    users = [f"bf-{i}" for i in range(USERS)]
    for user in users:
        hint = f"{user}@example.com"
        account = s.sandbox.accounts.get_or_create(FIT, hint).id
        await s.control("POST", f"/_sandbox/google_fit/users/{account}/days", {"generate": 10})
        await s.exchange(user, FIT, await s.consent(FIT, hint, scopes=SCOPES), scopes=SCOPES)
    # The backfills spend the background share of the minute, and no more.
    await eventually(lambda: _at(fit_calls(s), BACKGROUND))
    completed = {e["user_id"] for e in seen.of(f"sync.completed.{FIT}")}
    assert len(completed) < USERS, "some backfill must still be waiting for the budget"
    assert app.fit_run is not None
    assert app.fit_run.budget is not None
    assert await app.fit_run.budget.acquire(FIT, Priority.BACKGROUND) > 0

    await s.admin.execute(
        "UPDATE sync.connections SET next_sync_at = $2 WHERE provider = $1",
        FIT,
        s.clock.now() - timedelta(seconds=1),
    )
    started = s.clock.now()
    run = await app.fit_run.run_once()

    assert run is not None
    assert (run.users_processed, run.successful) == (USERS, USERS)
    assert await fit_calls(s) == BACKGROUND + 2 * USERS
    # It never waited for the window to turn: the (frozen) clock did not move.
    assert run.duration_ms == 0
    assert s.clock.now() == started
    # And the waiting backfills are still waiting, not pushed aside for good.
    still = {e["user_id"] for e in seen.of(f"sync.completed.{FIT}")}
    assert len(still) < USERS


async def _at(value: Any, expected: int) -> bool:
    return bool(await value == expected)
