"""sync_worker.store_whoop over the embedded Postgres, as the sync_worker role after the
real migrations: batched upserts report exactly what they added and changed, an unchanged
record is not rewritten (same tuple, same updated_at), deletes by WHOOP id, newest-first
reads, and writes that commit or roll back with the caller's transaction."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
import pytest
from sync_worker import store_whoop as store
from sync_worker.providers.whoop import Kind, WhoopRecord, parse_record

from tests.integration.sync_harness import sync_pool
from tests.provider_payloads import PAYLOADS

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Tx: TypeAlias = PoolConnectionProxy[asyncpg.Record]

pytestmark = pytest.mark.integration

T0 = datetime(2026, 2, 1, 8, tzinfo=UTC)
FILES: dict[Kind, str] = {
    "cycle": "whoop_cycle.json",
    "recovery": "whoop_recovery.json",
    "sleep": "whoop_sleep.json",
    "workout": "whoop_workout.json",
}


@pytest.fixture(scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with sync_pool(database_url) as created:
        yield created


def user() -> str:
    return f"u-{uuid.uuid4().hex[:8]}"


def example(kind: Kind) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads((PAYLOADS / FILES[kind]).read_text())["records"][0]
    return raw


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def variant(kind: Kind, n: int, **changes: Any) -> WhoopRecord:
    """The documented example as the n-th record: its own id, a day later per n."""
    raw = copy.deepcopy(example(kind))
    start = datetime(2026, 1, 1, 22, tzinfo=UTC) + timedelta(days=n)
    if kind == "cycle":
        raw["id"] = 93845 + n
    elif kind == "recovery":
        raw["sleep_id"] = str(uuid.uuid5(uuid.NAMESPACE_OID, f"sleep-{n}"))
    else:
        raw["id"] = str(uuid.uuid5(uuid.NAMESPACE_OID, f"{kind}-{n}"))
    if "start" in raw:
        raw["start"], raw["end"] = iso(start), iso(start + timedelta(hours=8))
    raw["created_at"] = iso(start + timedelta(hours=9))
    raw.update(changes)
    return parse_record(kind, raw)


async def xmin(pool: asyncpg.Pool, table: str, key_column: str, key: Any) -> str:
    value: str = await pool.fetchval(
        f"SELECT xmin::text FROM {table} WHERE {key_column} = $1",  # noqa: S608
        key,
    )
    return value


@pytest.mark.parametrize("kind", ["cycle", "recovery", "sleep", "workout"])
async def test_upsert_is_idempotent_and_keeps_unchanged_rows(
    pool: asyncpg.Pool, kind: Kind
) -> None:
    owner = user()
    records = [variant(kind, n) for n in range(3)]

    first = await store.upsert(pool, owner, kind, records, T0)
    again = await store.upsert(pool, owner, kind, records, T0 + timedelta(hours=1))

    assert first.added == tuple(r.key for r in records)
    assert first.updated == ()
    assert (again.added, again.updated) == ((), ())
    rows = await store.recent(pool, owner, kind)
    assert sorted(r.key for r in rows) == sorted(r.key for r in records)
    for row in rows:
        # Not rewritten: updated_at still the first write's.
        assert (row.fetched_at, row.updated_at) == (T0, T0)
    by_key = {r.key: r for r in records}
    assert all(row.raw == by_key[row.key].raw for row in rows)
    assert all(row.content_hash == by_key[row.key].content_hash for row in rows)


async def test_an_unchanged_record_keeps_its_tuple(pool: asyncpg.Pool) -> None:
    owner = user()
    record = variant("workout", 1)
    await store.upsert(pool, owner, "workout", [record], T0)
    key = uuid.UUID(record.key)
    before = await xmin(pool, "whoop_workouts", "workout_id", key)
    await store.upsert(pool, owner, "workout", [record], T0 + timedelta(minutes=5))
    assert await xmin(pool, "whoop_workouts", "workout_id", key) == before


async def test_a_changed_record_is_updated_and_reported(pool: asyncpg.Pool) -> None:
    owner = user()
    pending = [variant("sleep", n, score_state="PENDING_SCORE", score=None) for n in range(2)]
    await store.upsert(pool, owner, "sleep", pending, T0)
    # WHOOP scores the first one later (same id, new content); the second is unchanged.
    scored = variant("sleep", 0, updated_at=iso(T0 + timedelta(hours=2)))
    later = T0 + timedelta(hours=3)

    changes = await store.upsert(pool, owner, "sleep", [scored, pending[1]], later)

    assert changes.added == ()
    assert changes.updated == (scored.key,)
    assert changes.changed == (scored.key,)
    rows = {r.key: r for r in await store.recent(pool, owner, "sleep")}
    assert (rows[scored.key].fetched_at, rows[scored.key].updated_at) == (T0, later)
    assert rows[scored.key].columns["score_state"] == "SCORED"
    assert rows[scored.key].columns["respiratory_rate"] == pytest.approx(16.11328125)
    assert rows[scored.key].columns["total_in_bed_time_milli"] == 30272735
    assert rows[scored.key].raw == scored.raw
    assert rows[pending[1].key].updated_at == T0
    assert rows[pending[1].key].columns["respiratory_rate"] is None


async def test_typed_columns_of_each_kind(pool: asyncpg.Pool) -> None:
    owner = user()
    cycle, recovery = variant("cycle", 0), variant("recovery", 0)
    workout = variant("workout", 0)
    for record in (cycle, recovery, workout):
        await store.upsert(pool, owner, record.kind, [record], T0)
    [c] = await store.recent(pool, owner, "cycle")
    assert c.key == "93845"
    assert c.columns["whoop_user_id"] == 10129
    assert c.columns["strain"] == pytest.approx(5.2951527)
    assert c.columns["average_heart_rate"] == 68
    assert c.at == c.columns["start_at"] == cycle.at
    [r] = await store.recent(pool, owner, "recovery")
    assert r.columns["cycle_id"] == 93845
    assert r.columns["recovery_score"] == 44.0
    assert r.columns["user_calibrating"] is False
    assert r.at == recovery.created_at
    [w] = await store.recent(pool, owner, "workout")
    assert (w.columns["sport_name"], w.columns["sport_id"], w.columns["v1_id"]) == (
        "running",
        1,
        1043,
    )
    assert w.columns["distance_meter"] == pytest.approx(1772.77035916)


async def test_a_batch_with_one_id_twice_keeps_the_last(pool: asyncpg.Pool) -> None:
    owner = user()
    older = variant("cycle", 5, score_state="PENDING_SCORE", score=None)
    newer = variant("cycle", 5)
    changes = await store.upsert(pool, owner, "cycle", [older, newer], T0)
    assert changes.added == (newer.key,)
    [row] = await store.recent(pool, owner, "cycle")
    assert row.columns["score_state"] == "SCORED"


async def test_an_open_cycle_then_its_end(pool: asyncpg.Pool) -> None:
    owner = user()
    raw = copy.deepcopy(variant("cycle", 9).raw)
    del raw["end"]
    open_cycle = parse_record("cycle", raw)
    await store.upsert(pool, owner, "cycle", [open_cycle], T0)
    [row] = await store.recent(pool, owner, "cycle")
    assert row.columns["end_at"] is None
    closed = variant("cycle", 9)
    changes = await store.upsert(pool, owner, "cycle", [closed], T0 + timedelta(hours=1))
    assert changes.updated == (closed.key,)


async def test_users_do_not_see_each_others_rows_or_share_keys(pool: asyncpg.Pool) -> None:
    one, two = user(), user()
    record = variant("workout", 3)
    assert (await store.upsert(pool, one, "workout", [record], T0)).added == (record.key,)
    # The same WHOOP id under another user is that user's own row.
    assert (await store.upsert(pool, two, "workout", [record], T0)).added == (record.key,)
    assert await store.delete(pool, one, "workout", [record.key]) == [record.key]
    assert [r.key for r in await store.recent(pool, two, "workout")] == [record.key]
    assert await store.recent(pool, one, "workout") == []


async def test_delete_by_id(pool: asyncpg.Pool) -> None:
    owner = user()
    sleeps = [variant("sleep", n) for n in range(3)]
    await store.upsert(pool, owner, "sleep", sleeps, T0)
    gone = await store.delete(
        pool, owner, "sleep", [sleeps[0].key.upper(), str(uuid.uuid4()), "not-a-uuid"]
    )
    assert gone == [sleeps[0].key]
    assert await store.delete(pool, owner, "sleep", [sleeps[0].key]) == []
    assert sorted(r.key for r in await store.recent(pool, owner, "sleep")) == sorted(
        s.key for s in sleeps[1:]
    )
    # Deleted, then seen again: a new row, reported as added.
    again = await store.upsert(pool, owner, "sleep", sleeps, T0 + timedelta(days=1))
    assert again.added == (sleeps[0].key,)
    assert await store.delete(pool, owner, "cycle", []) == []


async def test_recent_is_newest_first_within_bounds(pool: asyncpg.Pool) -> None:
    owner = user()
    workouts = [variant("workout", n) for n in range(6)]
    await store.upsert(pool, owner, "workout", workouts, T0)
    starts = [w.at for w in workouts]

    newest = await store.recent(pool, owner, "workout", limit=2)
    assert [r.key for r in newest] == [workouts[5].key, workouts[4].key]
    bounded = await store.recent(pool, owner, "workout", since=starts[1], until=starts[4])
    assert [r.at for r in bounded] == [starts[3], starts[2], starts[1]]
    with pytest.raises(ValueError, match="limit"):
        await store.recent(pool, owner, "workout", limit=0)


async def test_writes_follow_the_callers_transaction(pool: asyncpg.Pool) -> None:
    owner = user()
    record = variant("recovery", 7)

    async def page_then_failed_checkpoint(conn: Tx) -> None:
        async with conn.transaction():
            await store.upsert(conn, owner, "recovery", [record], T0)
            raise RuntimeError("the checkpoint save failed")

    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError):
            await page_then_failed_checkpoint(conn)
    assert await store.recent(pool, owner, "recovery") == []
    async with pool.acquire() as conn, conn.transaction():
        changes = await store.upsert(conn, owner, "recovery", [record], T0)
    assert changes.added == (record.key,)
    assert len(await store.recent(pool, owner, "recovery")) == 1


async def test_raw_keeps_exact_int64s(pool: asyncpg.Pool) -> None:
    owner = user()
    big = 2**62 + 1  # past a float's exact range
    record = variant("cycle", 11, id=big, user_id=big - 2)
    await store.upsert(pool, owner, "cycle", [record], T0)
    [row] = await store.recent(pool, owner, "cycle")
    assert row.key == str(big)
    assert row.raw["id"] == big
    assert row.columns["whoop_user_id"] == big - 2


async def test_a_record_of_another_kind_is_refused(pool: asyncpg.Pool) -> None:
    with pytest.raises(ValueError, match="batch of sleep"):
        await store.upsert(pool, user(), "sleep", [variant("workout", 0)], T0)
