"""calendar-sync's sender against the sandbox and Postgres, on the virtual clock: per-user
pacing decides when a user's next push may go out, never which users wait. A burst of one
user's changes does not hold back another user's change behind it in the outbox, and the
burst itself still goes out at the configured rate (issue 8's outbound pacing)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from calendar_sync.domain import Policy
from calendar_sync.ports import RandomIds
from calendar_sync.providers.google_calendar import GoogleCalendarClient
from calendar_sync.sync import Engine, EngineConfig
from syncplane_common.clock import ManualClock
from syncplane_common.contracts import CalendarEventBody

from tests.integration.calendar_harness import SandboxTokens, calendar_api
from tests.integration.test_calendar_convergence import World, world

pytestmark = pytest.mark.integration

RATE = 10.0  # pushes a second per user: 0.1 s apart
BURST = 20
START = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)


@pytest.fixture(scope="module")
async def w(database_url: str) -> AsyncIterator[World]:
    async with world(database_url) as made:
        yield made


def engine(w: World, clock: ManualClock) -> Engine:
    tokens = SandboxTokens(w.google, w.users)
    client = GoogleCalendarClient(w.session, calendar_api(w.google.url))
    config = EngineConfig(policy=Policy.LAST_WRITE_WINS, rate_per_user=RATE)
    return Engine(w.pool, client, tokens, clock, RandomIds(), config)


def body(n: int) -> CalendarEventBody:
    at = START + timedelta(hours=n)
    return CalendarEventBody(
        calendar_id="primary",
        title=f"change {n}",
        start=at.isoformat(),
        end=(at + timedelta(minutes=30)).isoformat(),
    )


async def test_a_burst_of_one_user_does_not_hold_back_another_users_change(w: World) -> None:
    await w.reset()
    for user in ("burst", "calm"):
        w.users[user] = f"{user}@example.com"
        await w.google.account(w.users[user])
    clock = ManualClock(w.sandbox.clock.now())
    sender = engine(w, clock)
    for n in range(BURST):
        await sender.create("burst", body(n))
    await sender.create("calm", body(0))  # behind the whole burst in the outbox
    began = clock.monotonic()

    # One worker: the order of its pushes is the sender's choice alone.
    assert await sender.flush_outbox() == BURST + 1

    written = await w.pool.fetch(
        "SELECT user_id, at FROM calendar.audit WHERE action = 'push' AND outcome = 'written' "
        "ORDER BY id"
    )
    order = [r["user_id"] for r in written]
    # calm goes out while burst waits for its second slot, not after the whole burst.
    assert order == ["burst", "calm"] + ["burst"] * (BURST - 1)
    assert w.counter.writes == BURST + 1
    # The burst still keeps its pace: 0.1 s between its pushes, and no more waiting than
    # that (the clock only moves when the sender waits for a slot).
    stamps = [r["at"] for r in written if r["user_id"] == "burst"]
    gaps = {round((b - a).total_seconds(), 3) for a, b in itertools.pairwise(stamps)}
    assert gaps == {1 / RATE}
    assert clock.monotonic() - began == pytest.approx((BURST - 1) / RATE)
