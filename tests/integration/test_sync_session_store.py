"""sync_worker.session_store over the embedded Postgres, as the sync_worker role after the
real migrations: round trips, optimistic saves (a stale save is refused, of two
concurrent saves exactly one wins), saving inside the caller's transaction, and the
"running" and "latest" queries."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sync_worker import session_store as store
from sync_worker import sessions as ss
from sync_worker.sessions import Counts, Phase, SessionError, SessionKind, SessionState
from syncplane_common.errors import ConflictError, RetryableError

from tests.integration.sync_harness import sync_pool

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture(scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with sync_pool(database_url, min_size=2, max_size=4) as created:
        yield created


def user() -> str:
    return f"u-{uuid.uuid4().hex[:8]}"


async def test_create_page_done_save_load_round_trip(pool: asyncpg.Pool) -> None:
    session = ss.new(
        user_id=user(),
        provider="strava",
        kind=SessionKind.BACKFILL,
        now=T0,
        checkpoint={"after": 0},
        pages_expected=50,
    )
    created = await store.create(pool, session)
    assert created == session

    moved = ss.start(created, at(1))
    # An id past 2**53 in the cursor must come back exactly (no float on the way).
    cursor = {"after": 0, "page": 2, "last_id": 18446744073709551557}
    moved = ss.page_done(moved, cursor, at(2), fetched=200, enriched=198, stored=190, skipped=8)
    moved = ss.advance(moved, Phase.ENRICHING, at(3))
    moved = ss.fail(moved, RetryableError("open-meteo 503"), at(4))
    saved = await store.save(pool, moved)

    loaded = await store.load(pool, session.id)
    assert loaded is not None
    assert loaded == saved
    assert saved.version == moved.version + 1
    assert loaded.checkpoint == cursor
    assert loaded.counts == Counts(fetched=200, enriched=198, stored=190, skipped=8)
    assert loaded.error == SessionError("RetryableError", "open-meteo 503", retryable=True)
    assert (loaded.state, loaded.failed_phase) == (SessionState.FAILED, Phase.ENRICHING)
    assert (loaded.started_at, loaded.updated_at, loaded.finished_at) == (at(1), at(4), None)

    # The resumed session continues from the stored checkpoint.
    resumed = ss.resume(ss.retry(loaded, at(5)), at(5))
    resumed = await store.save(pool, resumed)
    reloaded = await store.load(pool, session.id)
    assert reloaded is not None
    assert (reloaded.state, reloaded.retry_count, reloaded.checkpoint) == (
        SessionState.ENRICHING,
        1,
        cursor,
    )


async def test_load_of_an_unknown_id_is_none(pool: asyncpg.Pool) -> None:
    assert await store.load(pool, uuid.uuid4()) is None


async def test_creating_an_existing_id_is_a_conflict(pool: asyncpg.Pool) -> None:
    session = ss.new(user_id=user(), provider="strava", kind=SessionKind.WEBHOOK, now=T0)
    await store.create(pool, session)
    with pytest.raises(ConflictError):
        await store.create(pool, session)


async def test_a_stale_save_is_refused(pool: asyncpg.Pool) -> None:
    session = await store.create(
        pool, ss.new(user_id=user(), provider="strava", kind=SessionKind.BACKFILL, now=T0)
    )
    first = await store.save(pool, ss.start(session, at(1)))
    # Still holding the version loaded before the first save: refused, row untouched.
    stale = ss.cancel(session, at(2))

    with pytest.raises(ConflictError) as caught:
        await store.save(pool, stale)

    assert isinstance(caught.value, RetryableError)
    assert await store.load(pool, session.id) == first


async def test_two_concurrent_saves_of_one_loaded_session_exactly_one_wins(
    pool: asyncpg.Pool,
) -> None:
    created = await store.create(
        pool, ss.new(user_id=user(), provider="strava", kind=SessionKind.BACKFILL, now=T0)
    )
    loaded = await store.load(pool, created.id)
    assert loaded is not None
    running = ss.start(loaded, at(1))
    rivals = [ss.page_done(running, {"page": n}, at(2), fetched=n, stored=n) for n in range(1, 9)]

    results = await asyncio.gather(
        *(store.save(pool, rival) for rival in rivals), return_exceptions=True
    )

    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(e, ConflictError) for e in losers)
    assert await store.load(pool, created.id) == winners[0]


async def test_save_inside_the_callers_transaction_rolls_back_with_it(
    pool: asyncpg.Pool,
) -> None:
    session = await store.create(
        pool, ss.new(user_id=user(), provider="strava", kind=SessionKind.INCREMENTAL, now=T0)
    )
    moved = ss.page_done(ss.start(session, at(1)), {"page": 1}, at(2), fetched=3, stored=3)

    class Abort(Exception):
        pass

    async def save_then_abort() -> None:
        async with pool.acquire() as conn, conn.transaction():
            await store.save(pool, moved, conn=conn)
            raise Abort

    with pytest.raises(Abort):
        await save_then_abort()
    assert await store.load(pool, session.id) == session
    async with pool.acquire() as conn, conn.transaction():
        saved = await store.save(pool, moved, conn=conn)
    assert await store.load(pool, session.id) == saved


async def test_running_for_and_latest(pool: asyncpg.Pool) -> None:
    uid = user()

    def new(kind: SessionKind, seconds: float) -> ss.Session:
        return ss.new(user_id=uid, provider="strava", kind=kind, now=at(seconds))

    backfill = await store.create(pool, new(SessionKind.BACKFILL, 1))
    older = await store.create(pool, new(SessionKind.INCREMENTAL, 2))
    newer = await store.create(pool, new(SessionKind.INCREMENTAL, 3))
    await store.create(
        pool, ss.new(user_id=uid, provider="whoop", kind=SessionKind.INCREMENTAL, now=at(4))
    )
    done = await store.save(pool, ss.complete(ss.start(older, at(5)), at(6)))
    failed = ss.fail(ss.start(newer, at(5)), RetryableError("429"), at(6))
    failed = await store.save(pool, failed)

    # A retryable failure still counts as running (it will be retried); completed does not.
    running = await store.running_for(pool, uid, "strava")
    assert [s.id for s in running] == [backfill.id, newer.id]
    assert await store.latest(pool, uid, "strava", SessionKind.INCREMENTAL) == failed
    assert await store.latest(pool, uid, "strava", SessionKind.WEBHOOK) is None
    assert done.finished_at == at(6)

    await store.save(pool, ss.give_up(failed, at(7)))
    assert [s.id for s in await store.running_for(pool, uid, "strava")] == [backfill.id]


async def test_the_table_refuses_what_the_machine_cannot_produce(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO sessions (id, user_id, provider, kind, state, created_at,"
                " updated_at) VALUES ($1, 'u', 'strava', 'backfill', 'completed', now(), now())",
                uuid.uuid4(),
            )


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (
            "SELECT id FROM sessions WHERE user_id = 'u' AND provider = 'strava'"
            " AND finished_at IS NULL",
            "sessions_running",
        ),
        (
            "SELECT id FROM sessions WHERE user_id = 'u' AND provider = 'strava'"
            " AND kind = 'backfill' ORDER BY created_at DESC LIMIT 1",
            "sessions_latest",
        ),
    ],
)
async def test_the_two_lookups_have_an_index(pool: asyncpg.Pool, query: str, index: str) -> None:
    # A near-empty table would be scanned anyway; with scans off, the plan shows whether
    # an index can answer the query at all.
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {query}"))
    assert index in plan, plan
