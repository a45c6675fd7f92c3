"""Crash safety (issue 6): sync-worker runs as a real process and is killed with SIGKILL
several times during a 10,000-activity backfill. The session resumes from its checkpoint
after JetStream redelivers the command, the table ends with every activity exactly once,
and each kill costs at most one page fetched again."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.integration.sync_harness import (
    activity_count,
    eventually,
    migrated,
    seed_strava,
    settings_for,
    start_process,
)
from tests.integration.token_harness import Stack, stack

pytestmark = pytest.mark.integration

ACTIVITIES = 10_000
PER_PAGE = 200
KILL_AT_PAGES = (8, 20, 33)
ACK_WAIT = 3.0  # seconds: how soon a killed worker's message comes back


@contextlib.asynccontextmanager
async def worker_processes() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    started: list[asyncio.subprocess.Process] = []
    try:
        yield started
    finally:
        for process in started:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def short_ack_wait(s: Stack) -> None:
    """The provisioned consumer waits 60 s for a dead worker; the test cannot."""
    js = s.nc.jetstream()
    info = await js.consumer_info("SYNC", "sync-worker-requests")
    config = info.config
    config.ack_wait = ACK_WAIT
    await js.add_consumer("SYNC", config)


async def session_row(s: Stack, user: str) -> dict[str, Any] | None:
    record = await s.admin.fetchrow(
        "SELECT state, pages_done, checkpoint::text AS checkpoint, stored "
        "FROM sync.sessions WHERE user_id = $1 AND kind = 'backfill'",
        user,
    )
    return None if record is None else dict(record)


async def test_sigkill_during_a_backfill_resumes_from_the_checkpoint(
    nats_server: Any, database_url: str
) -> None:
    await migrated(database_url)
    user = "u-crash"
    async with stack(nats_server.url, database_url) as s, worker_processes() as workers:
        await short_ack_wait(s)
        hint = f"{user}-athlete"
        await seed_strava(s, hint, ACTIVITIES)
        # Slow pages a little, so the kills land in the middle of the run.
        await s.control(
            "POST",
            "/_sandbox/faults",
            {"provider": "strava", "endpoint": "GET /athlete/activities", "latency_ms": 60},
        )
        settings = settings_for(
            s,
            database_url,
            weather_enabled=False,
            geocoding_enabled=False,
            strava_per_page=PER_PAGE,
            sync_heartbeat_seconds=0.5,
            scheduler_tick_seconds=3600,
        )
        workers.append(await start_process(settings))
        await s.connect(user, "strava", hint)

        for kill_at in KILL_AT_PAGES:

            async def reached(target: int = kill_at) -> bool:
                row = await session_row(s, user)
                return row is not None and row["pages_done"] >= target

            await eventually(reached, within=90, every=0.02)
            workers[-1].send_signal(signal.SIGKILL)
            await workers[-1].wait()
            workers.append(await start_process(settings))

        async def finished() -> dict[str, Any] | None:
            row = await session_row(s, user)
            return row if row is not None and row["state"] == "completed" else None

        row = await eventually(finished, within=120, every=0.1)
        assert await activity_count(s, user) == ACTIVITIES
        distinct = await s.admin.fetchval(
            "SELECT count(DISTINCT strava_id) FROM sync.strava_activities WHERE user_id = $1", user
        )
        assert distinct == ACTIVITIES
        pages = ACTIVITIES // PER_PAGE
        assert row["stored"] == ACTIVITIES
        assert json.loads(row["checkpoint"])["page"] == pages + 2
        # Every page once, the empty last page once, and at most one page again per kill.
        calls = (await s.stats())["calls"]["strava GET /athlete/activities"]
        assert pages + 1 <= calls <= pages + 1 + len(KILL_AT_PAGES)
