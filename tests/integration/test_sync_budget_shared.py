"""The rate budget shared through NATS KV (sync_worker.budget.KvRateBudget) on the embedded
server: the behaviour suite of the in-memory budget, replicas on separate connections
racing for one window, and issue 6's acceptance: three workers backfilling 50 athletes
against the sandbox's Strava limits get no 429 and keep the budget ≥ 95% used.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import aiohttp
import nats
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from provider_sandbox.app import PARTS_KEY, SANDBOX_KEY, create_app
from provider_sandbox.core import VirtualClock
from sync_worker.budget import (
    BUCKET,
    STRAVA_WINDOWS,
    CountingBudget,
    Counts,
    KvRateBudget,
    Priority,
    Slot,
    Window,
    slot_key,
    strava_observed,
)
from sync_worker.providers.strava import StravaClient
from syncplane_common.clock import Clock, ManualClock
from syncplane_common.provision import provision_js
from syncplane_devstack.embedded import EmbeddedNats

from tests.sandbox.conftest import CONFIG
from tests.unit.test_sync_budget import T0, BudgetBehaviour, MakeBudget

pytestmark = pytest.mark.integration

BG, FG = Priority.BACKGROUND, Priority.INTERACTIVE


@dataclass
class Replicas:
    """Budgets on their own NATS connections, as separate sync-worker processes have."""

    url: str
    connections: list[NatsClient] = field(default_factory=list)

    async def budget(
        self, limits: Mapping[str, Sequence[Window]], clock: Clock, share: float = 0.8
    ) -> KvRateBudget:
        nc = await nats.connect(self.url)
        self.connections.append(nc)
        return await KvRateBudget.bind(nc.jetstream(), limits, clock, share)

    async def close(self) -> None:
        for nc in self.connections:
            await nc.drain()


@pytest.fixture
async def replicas(nats_server: EmbeddedNats, js: JetStreamContext) -> AsyncIterator[Replicas]:
    await provision_js(js)  # the rate_budgets bucket, as `syncplane provision` makes it
    replicas = Replicas(nats_server.url)
    yield replicas
    await replicas.close()


class TestKvBudget(BudgetBehaviour):
    @pytest.fixture
    def make(self, replicas: Replicas) -> MakeBudget:
        async def make(
            limits: Mapping[str, Sequence[Window]], clock: Clock, share: float
        ) -> CountingBudget:
            return await replicas.budget(limits, clock, share)

        return make


async def stored(js: JetStreamContext, slot: Slot) -> Counts:
    kv = await js.key_value(BUCKET)
    data = json.loads((await kv.get(slot_key(slot))).value or b"")
    return Counts(data["reserved"], data["background"], data["limit"])


async def test_racing_replicas_never_reserve_more_than_the_limits(
    replicas: Replicas, js: JetStreamContext
) -> None:
    # The daily window binds before the quarter: reservations that got the quarter but
    # lose the day race must be released again, or the quarter would leak.
    limits = {"p": [Window("15min", 900, 40), Window("daily", 86_400, 36)]}
    clock = ManualClock(T0)
    budgets = [await replicas.budget(limits, clock, 0.8) for _ in range(4)]
    granted = {BG: 0, FG: 0}

    async def hammer(budget: KvRateBudget, priority: Priority) -> None:
        while await budget.acquire("p", priority) == 0.0:
            granted[priority] += 1

    await asyncio.gather(
        *(hammer(b, p) for b in budgets for p in (BG, BG, BG, FG, BG) for _ in range(2))
    )
    assert granted[BG] <= math.floor(36 * 0.8)
    assert granted[BG] + granted[FG] <= 36
    # Whatever was transiently held by a losing racer was released: draining the rest
    # with interactive calls fills the day exactly, and both windows agree.
    while await budgets[0].acquire("p", FG) == 0.0:
        granted[FG] += 1
    assert granted[BG] + granted[FG] == 36
    quarter = await stored(js, Slot("p", "15min", int(T0.timestamp()), 900))
    day = await stored(js, Slot("p", "daily", int(T0.timestamp()), 86_400))
    assert quarter == Counts(reserved=36, background=granted[BG], limit=40)
    assert day == Counts(reserved=36, background=granted[BG], limit=36)


# -- acceptance: three workers backfill 50 athletes against the sandbox ---------------------

ATHLETES = 50
ACTIVITIES = 15
PER_PAGE = 2  # 8 pages of activities and the empty one: 9 calls per athlete
WORKERS = 3
# Redelivery after a nak comes a little after the boundary, not on it; it also keeps
# observations out of the budget's clock-skew margin, so corrections are exercised.
REDELIVERY_LAG = 3.0


class SandboxTime:
    """The workers' Clock reads the sandbox's virtual time, so windows line up with its.

    ``probe``, when set, is read just before the clock leaves a window: what the sandbox
    counted in it, collected in ``counted``."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.probe: Callable[[], int] | None = None
        self.counted: list[int] = []

    def now(self) -> datetime:
        return self.clock.now()

    def monotonic(self) -> float:
        return self.clock.time()

    async def sleep(self, seconds: float) -> None:
        self.advance_to(self.clock.time() + seconds)
        await asyncio.sleep(0)

    def advance_to(self, target: float) -> None:
        # Several workers wait for the same boundary: only the first one moves the clock.
        behind = target - self.clock.time()
        if behind > 0:
            if self.probe is not None:
                self.counted.append(self.probe())
            self.clock.advance(behind)


@pytest.fixture
async def sandbox_client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(create_app(CONFIG))) as client:
        yield client


async def test_three_workers_backfill_without_429s_at_full_budget(
    replicas: Replicas,
    js: JetStreamContext,
    sandbox_client: TestClient[web.Request, web.Application],
) -> None:
    sandbox = sandbox_client.app[SANDBOX_KEY]
    time = SandboxTime(sandbox.clock)
    time.advance_to(math.ceil(sandbox.clock.time() / 900) * 900 + REDELIVERY_LAG)
    seeded = await sandbox_client.post(
        "/_sandbox/strava/seed",
        json={"athletes": ATHLETES, "activities_per_athlete": ACTIVITIES, "tokens": True},
    )
    assert seeded.status == 201
    todo = [athlete["access_token"] for athlete in (await seeded.json())["athletes"]]
    api_base = str(sandbox_client.make_url("/strava/api/v3"))
    limits = {"strava": STRAVA_WINDOWS}
    limiter = sandbox_client.app[PARTS_KEY]["strava"].limiter  # type: ignore[attr-defined]

    def read_quarter() -> int:
        usage = limiter.headers(sandbox.clock.time())["X-ReadRateLimit-Usage"]
        return int(usage.split(",")[0])

    time.probe = read_quarter
    first = int(sandbox.clock.time() // 900) * 900
    fetched: list[int] = []

    async def worker() -> None:
        budget = await replicas.budget(limits, time, 0.8)
        async with aiohttp.ClientSession() as session:
            client = StravaClient(session, api_base, time)
            while todo:
                token, page = todo.pop(), 1
                while True:
                    # The wait counts from when acquire read the clock; another worker
                    # may have moved it since, so aim at the boundary, not from "now".
                    asked = time.clock.time()
                    wait = await budget.acquire("strava", BG)
                    if wait > 0:
                        time.advance_to(asked + wait + REDELIVERY_LAG)
                        continue
                    sent = time.now()
                    got = await client.list_activities(
                        token, after=None, before=None, page=page, per_page=PER_PAGE
                    )
                    await budget.observe("strava", strava_observed(got.usage), at=sent)
                    fetched.append(len(got.activities))
                    if got.is_last:
                        break
                    page += 1

    await asyncio.gather(*(worker() for _ in range(WORKERS)))

    stats = await (await sandbox_client.get("/_sandbox/stats")).json()
    calls = ATHLETES * (math.ceil(ACTIVITIES / PER_PAGE) + 1)
    assert sum(fetched) == ATHLETES * ACTIVITIES
    assert stats["calls"]["strava GET /athlete/activities"] == calls
    assert sum(stats["rate_limited"].values()) == 0, stats["rate_limited"]

    # The read quarter binds: background may use 80 of its 100 calls per window.
    allowed = math.floor(100 * 0.8)
    last = int(sandbox.clock.time() // 900) * 900
    used = [
        (await stored(js, Slot("strava", "read_15min", start, 900))).background
        for start in range(first, last + 1, 900)
    ]
    assert sum(used) == calls
    assert len(used) == math.ceil(calls / allowed)
    full = used[:-1]  # the last window is where the work ran out
    utilisation = sum(full) / (allowed * len(full))
    # The provider's view: calls it served per window. A call reserved just before a
    # boundary may be served just after it, so these may differ from ours by a few.
    counted = [*time.counted, read_quarter()]
    served = sum(counted[:-1]) / (allowed * (len(counted) - 1))
    print(
        f"\nbackfill: {calls} calls in {len(used)} windows; reserved {used} "
        f"(utilisation {utilisation:.3f}); served {counted} (utilisation {served:.3f})"
    )
    assert min(full) >= 0.95 * allowed, used
    assert len(counted) == len(used)
    assert min(counted[:-1]) >= 0.95 * allowed, counted


async def test_interactive_calls_get_through_while_a_backfill_holds_its_share(
    replicas: Replicas, sandbox_client: TestClient[web.Request, web.Application]
) -> None:
    sandbox = sandbox_client.app[SANDBOX_KEY]
    time = SandboxTime(sandbox.clock)
    time.advance_to(math.ceil(sandbox.clock.time() / 900) * 900 + REDELIVERY_LAG)
    seeded = await sandbox_client.post(
        "/_sandbox/strava/seed",
        json={"athletes": 1, "activities_per_athlete": 3, "tokens": True},
    )
    token = (await seeded.json())["athletes"][0]["access_token"]
    limits = {"strava": STRAVA_WINDOWS}
    backfill = await replicas.budget(limits, time, 0.8)
    webhooks = await replicas.budget(limits, time, 0.8)

    async with aiohttp.ClientSession() as session:
        client = StravaClient(session, str(sandbox_client.make_url("/strava/api/v3")), time)

        async def call(budget: KvRateBudget, priority: Priority) -> float:
            sent = time.now()
            wait = await budget.acquire("strava", priority)
            if wait == 0.0:
                got = await client.list_activities(token, after=None, before=None, page=1)
                await budget.observe("strava", strava_observed(got.usage), at=sent)
            return wait

        backfilled = 0
        while await call(backfill, BG) == 0.0:
            backfilled += 1
        assert backfilled == 80
        # The backfill is held at its share; webhook work still has the rest, at once.
        assert [await call(webhooks, FG) for _ in range(20)] == [0.0] * 20
        wait = await call(webhooks, FG)
    quarter_left = 900 - sandbox.clock.time() % 900
    assert wait == pytest.approx(quarter_left, abs=1.0)
    stats = await (await sandbox_client.get("/_sandbox/stats")).json()
    assert stats["calls"]["strava GET /athlete/activities"] == 100
    assert sum(stats["rate_limited"].values()) == 0
