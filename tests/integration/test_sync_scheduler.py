"""The scheduler over real Postgres and NATS (issue 6, tier 2): replicas claim due
connections with FOR UPDATE SKIP LOCKED — none claimed twice, no leader — skip the ones
synced recently, queue sync.requested with slot dedupe ids, and give the claim back when
the publish fails. Also the enrichment pass filling what a sync could not."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg
import pytest
from provider_sandbox.config import provider_urls
from pydantic import BaseModel
from sync_worker import strava_store, sync_state
from sync_worker.engine import Engine, Sources
from sync_worker.enrichment import CircuitBreaker, GeocodingClient, TtlCache, WeatherClient
from sync_worker.enrichment.activities import ActivityEnricher
from sync_worker.providers.strava import Activity
from sync_worker.scheduler import Scheduler
from sync_worker.strava_store import StoredActivity
from syncplane_common.clock import ManualClock, SystemClock
from syncplane_common.migrations import migrate_all
from syncplane_common.migrations_registry import service_migrations
from syncplane_common.tokens import MemoryTokenSource

from tests.integration.token_harness import role_dsn, sandbox_server

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
INTERVALS = {"strava": 3 * 3600}


@pytest.fixture(scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    await migrate_all(database_url, service_migrations())
    pool = await asyncpg.create_pool(role_dsn(database_url, "sync_worker"), min_size=1, max_size=6)
    yield pool
    await pool.close()


@pytest.fixture(autouse=True)
async def empty(pool: asyncpg.Pool) -> None:
    await pool.execute("TRUNCATE connections")


class Published:
    def __init__(self, fail: bool = False) -> None:
        self.ids: list[str] = []
        self.fail = fail

    async def __call__(self, subject: str, message: BaseModel, msg_id: str) -> None:
        if self.fail:
            raise ConnectionError("nats down")
        await asyncio.sleep(0.001)  # let other replicas interleave
        self.ids.append(msg_id)


def scheduler(pool: asyncpg.Pool, published: Published, batch: int = 50) -> Scheduler:
    engine = Engine(
        pool=pool,
        tokens=MemoryTokenSource({}),
        publish=published,
        clock=ManualClock(NOW),
        sources=Sources(),
    )
    return Scheduler(engine, INTERVALS, batch)


async def add(
    pool: asyncpg.Pool,
    n: int,
    *,
    due: datetime,
    synced: datetime | None = None,
    status: str = "active",
    prefix: str = "u",
) -> None:
    await pool.execute(
        """
        INSERT INTO connections (user_id, provider, status, next_sync_at, last_synced_at,
            status_at, created_at, updated_at)
        SELECT $1 || g, 'strava', $2, $3, $4, $3, $3, $3 FROM generate_series(1, $5) g
        """,
        prefix,
        status,
        due,
        synced,
        n,
    )


async def test_replicas_claim_every_due_connection_exactly_once(pool: asyncpg.Pool) -> None:
    await add(pool, 400, due=NOW - timedelta(minutes=5))
    await add(pool, 50, due=NOW + timedelta(hours=1), prefix="later")
    await add(pool, 50, due=NOW - timedelta(hours=1), status="revoked", prefix="gone")
    replicas = [Published() for _ in range(4)]
    await asyncio.gather(*(scheduler(pool, p).tick() for p in replicas))
    ids = [i for p in replicas for i in p.ids]
    assert len(ids) == len(set(ids)) == 400
    assert sum(1 for p in replicas if p.ids) >= 2, "the claim was shared, not serialized"
    slot = int((NOW - timedelta(minutes=5)).timestamp())
    assert all(i.startswith("scheduled:u") and i.endswith(f":strava:{slot}") for i in ids)
    nxt = await pool.fetch("SELECT DISTINCT next_sync_at FROM connections WHERE user_id LIKE 'u%'")
    assert [r["next_sync_at"] for r in nxt] == [NOW + timedelta(hours=3)]
    # Nothing is due any more: a second pass queues nothing.
    again = Published()
    assert await scheduler(pool, again).tick() == 0


async def test_recently_synced_connections_are_pushed_back_not_queued(pool: asyncpg.Pool) -> None:
    await add(pool, 3, due=NOW - timedelta(minutes=1), synced=NOW - timedelta(minutes=30))
    published = Published()
    assert await scheduler(pool, published).tick() == 0
    assert published.ids == []
    rows = await pool.fetch("SELECT next_sync_at FROM connections")
    assert {r["next_sync_at"] for r in rows} == {NOW - timedelta(minutes=30) + timedelta(hours=3)}


async def test_a_failed_publish_gives_the_claim_back(pool: asyncpg.Pool) -> None:
    due = NOW - timedelta(minutes=1)
    await add(pool, 5, due=due)
    with pytest.raises(ConnectionError):
        await scheduler(pool, Published(fail=True)).tick()
    rows = await pool.fetch("SELECT next_sync_at FROM connections")
    assert {r["next_sync_at"] for r in rows} == {due}
    published = Published()
    assert await scheduler(pool, published).tick() == 5


async def test_claim_uses_the_partial_due_index(pool: asyncpg.Pool) -> None:
    await add(pool, 5000, due=NOW - timedelta(minutes=1))
    await add(pool, 5000, due=NOW - timedelta(minutes=1), status="revoked", prefix="gone")
    await pool.execute("ANALYZE connections")
    plan = await pool.fetchval(
        "EXPLAIN (FORMAT JSON) " + sync_state.CLAIM, NOW, ["strava"], 100, [10800]
    )
    text = json.dumps(plan)
    assert "connections_due" in text
    assert '"Seq Scan"' not in text


async def test_the_enrichment_pass_fills_what_a_sync_left_missing(pool: asyncpg.Pool) -> None:
    """Activities stored while weather / geocoding were unavailable get them later."""
    await pool.execute("DELETE FROM strava_activities WHERE user_id = 'u-pass'")
    started = datetime.now(UTC) - timedelta(days=30)
    raw = {
        "id": 1,
        "sport_type": "Run",
        "start_date": started.isoformat(),
        "start_date_local": started.replace(tzinfo=None).isoformat(),
        "start_latlng": [51.5, -0.12],
    }
    activity = Activity.from_raw(raw)
    missing = {"weather": False, "geocoding": False}
    async with pool.acquire() as conn:
        await strava_store.upsert(
            conn, "u-pass", [StoredActivity(activity, enrichment=missing)], started
        )
    clock = SystemClock()
    async with sandbox_server() as (_, url), aiohttp.ClientSession() as http:
        urls = provider_urls(url)

        def breaker() -> CircuitBreaker:
            return CircuitBreaker(3, 60, clock)

        enricher = ActivityEnricher(
            WeatherClient(http, urls["WEATHER_API_BASE"], clock, breaker(), TtlCache(clock, 60)),
            GeocodingClient(
                http,
                urls["GEOCODING_API_BASE"],
                clock,
                breaker(),
                TtlCache(clock, 60),
                "syncplane-tests/1.0 (tests@syncplane.invalid)",
                0.0,
            ),
            inline_lookups=0,
        )
        s = scheduler(pool, Published())
        s.enricher = enricher
        assert await s.enrichment_pass() == 1
    row = await pool.fetchrow(
        "SELECT weather::text, city, enrichment_status::text FROM strava_activities "
        "WHERE user_id = 'u-pass'"
    )
    assert row is not None
    assert json.loads(row["enrichment_status"]) == {"weather": True, "geocoding": True}
    assert json.loads(row["weather"])["temperature_c"] is not None
    assert row["city"]
