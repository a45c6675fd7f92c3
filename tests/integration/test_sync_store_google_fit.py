"""sync_worker.store_google_fit over the embedded Postgres, as the sync_worker role after
the real migrations: re-syncing the last days rewrites and reports only the days whose
values moved (a re-derived bucket with the same numbers is not a change), sessions are
upserted, changed and deleted by id, and reads come newest first within bounds."""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from sync_worker import store_google_fit as store
from sync_worker.providers.google_fit import FitDay, FitSession

from tests.integration.sync_harness import sync_pool

pytestmark = pytest.mark.integration

T0 = datetime(2026, 2, 1, 8, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")
FIRST = date(2026, 1, 20)


@pytest.fixture(scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with sync_pool(database_url) as created:
        yield created


def user() -> str:
    return f"u-{uuid.uuid4().hex[:8]}"


def fit_day(day: date, steps: int | None = 8000, zone: ZoneInfo = BERLIN) -> FitDay:
    start = datetime.combine(day, datetime.min.time(), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    start_ms = int(start.timestamp() * 1000)
    raw = {
        "startTimeMillis": str(start_ms),
        "endTimeMillis": str(int(end.timestamp() * 1000)),
        "dataset": [
            {
                "dataSourceId": "derived:com.google.step_count.delta:com.google.android.gms:"
                "estimated_steps",
                "point": []
                if steps is None
                else [
                    {
                        "startTimeNanos": str(start_ms * 10**6 + 1),
                        "endTimeNanos": str(start_ms * 10**6 + 2),
                        "dataTypeName": "com.google.step_count.delta",
                        "value": [{"intVal": steps, "mapVal": []}],
                    }
                ],
            }
        ],
    }
    return FitDay(
        day=day,
        time_zone=zone.key,
        start=start.astimezone(UTC),
        end=end.astimezone(UTC),
        steps=steps,
        calories_kcal=None if steps is None else 2000.5,
        distance_m=None if steps is None else steps * 0.75,
        heart_rate_avg=None if steps is None else 71.5,
        heart_rate_min=None if steps is None else 50.0,
        heart_rate_max=None if steps is None else 160.0,
        active_minutes=None if steps is None else 42,
        raw=raw,
    )


def week(steps: int = 8000) -> list[FitDay]:
    return [fit_day(FIRST + timedelta(days=n), steps + n) for n in range(7)]


def fit_session(sid: str, start: datetime, minutes: int = 30, **extra: Any) -> FitSession:
    raw = {
        "id": sid,
        "name": extra.pop("name", "Morning run"),
        "description": "",
        "startTimeMillis": str(int(start.timestamp() * 1000)),
        "endTimeMillis": str(int((start + timedelta(minutes=minutes)).timestamp() * 1000)),
        "modifiedTimeMillis": str(int(T0.timestamp() * 1000)),
        "application": {"packageName": "com.google.android.apps.fitness"},
        "activityType": 8,
        "activeTimeMillis": str((minutes - 2) * 60_000),
        **extra,
    }
    return FitSession.model_validate({**raw, "raw": raw})


async def test_days_upsert_once_then_nothing_changes(pool: asyncpg.Pool) -> None:
    owner = user()
    first = await store.upsert_days(pool, owner, week(), T0)
    again = await store.upsert_days(pool, owner, week(), T0 + timedelta(minutes=10))

    assert first.added == tuple(FIRST + timedelta(days=n) for n in range(7))
    assert (again.added, again.updated) == ((), ())
    rows = await store.recent_days(pool, owner)
    assert [r.key for r in rows] == [FIRST + timedelta(days=n) for n in reversed(range(7))]
    assert all((r.fetched_at, r.updated_at) == (T0, T0) for r in rows)
    newest = rows[0]
    assert newest.at == FIRST + timedelta(days=6)
    assert newest.columns["steps"] == 8006
    assert newest.columns["time_zone"] == "Europe/Berlin"
    assert newest.columns["heart_rate_avg"] == 71.5
    assert newest.columns["distance_m"] == pytest.approx(8006 * 0.75)
    assert newest.columns["day_start"] == datetime(2026, 1, 26, tzinfo=BERLIN)
    assert newest.raw == week()[6].raw


async def test_resync_reports_only_the_revised_day(pool: asyncpg.Pool) -> None:
    owner = user()
    await store.upsert_days(pool, owner, week(), T0)
    ctid_before = await pool.fetchval(
        "SELECT ctid::text FROM google_fit_daily WHERE user_id = $1 AND day = $2",
        owner,
        FIRST,
    )
    resynced = week()
    # Google revised one day's steps; another came back re-derived with the same numbers.
    resynced[3] = replace(resynced[3], steps=9999)
    rederived = copy.deepcopy(resynced[0].raw)
    rederived["dataset"][0]["point"][0]["startTimeNanos"] = "1"
    resynced[0] = replace(resynced[0], raw=rederived)
    later = T0 + timedelta(minutes=10)

    changes = await store.upsert_days(pool, owner, resynced, later)

    assert changes.added == ()
    assert changes.updated == (FIRST + timedelta(days=3),)
    rows = {r.key: r for r in await store.recent_days(pool, owner)}
    assert rows[FIRST + timedelta(days=3)].columns["steps"] == 9999
    assert rows[FIRST + timedelta(days=3)].updated_at == later
    assert rows[FIRST + timedelta(days=3)].fetched_at == T0
    assert rows[FIRST].updated_at == T0
    # Not rewritten at all: the tuple did not move.
    ctid_after = await pool.fetchval(
        "SELECT ctid::text FROM google_fit_daily WHERE user_id = $1 AND day = $2",
        owner,
        FIRST,
    )
    assert ctid_after == ctid_before


async def test_an_empty_day_is_stored_and_its_data_arriving_is_a_change(
    pool: asyncpg.Pool,
) -> None:
    owner = user()
    empty = fit_day(FIRST, steps=None)
    assert empty.is_empty
    assert (await store.upsert_days(pool, owner, [empty], T0)).added == (FIRST,)
    [row] = await store.recent_days(pool, owner)
    assert row.columns["steps"] is None
    assert row.columns["heart_rate_max"] is None
    filled = await store.upsert_days(pool, owner, [fit_day(FIRST, 1234)], T0)
    assert filled.updated == (FIRST,)


async def test_a_new_time_zone_changes_the_day(pool: asyncpg.Pool) -> None:
    owner = user()
    await store.upsert_days(pool, owner, [fit_day(FIRST)], T0)
    moved = await store.upsert_days(pool, owner, [fit_day(FIRST, zone=ZoneInfo("UTC"))], T0)
    assert moved.updated == (FIRST,)


async def test_days_read_within_bounds_and_delete(pool: asyncpg.Pool) -> None:
    owner = user()
    await store.upsert_days(pool, owner, week(), T0)
    bounded = await store.recent_days(
        pool, owner, since=FIRST + timedelta(days=2), until=FIRST + timedelta(days=5), limit=2
    )
    assert [r.key for r in bounded] == [FIRST + timedelta(days=4), FIRST + timedelta(days=3)]
    gone = await store.delete_days(pool, owner, [FIRST, FIRST - timedelta(days=1)])
    assert gone == [FIRST]
    assert len(await store.recent_days(pool, owner, limit=100)) == 6
    assert await store.recent_days(pool, user()) == []


async def test_sessions_upsert_change_and_delete(pool: asyncpg.Pool) -> None:
    owner = user()
    starts = [T0 - timedelta(days=n) for n in range(4)]
    sessions = [fit_session(f"s{n}", start) for n, start in enumerate(starts)]

    first = await store.upsert_sessions(pool, owner, sessions, T0)
    same = await store.upsert_sessions(pool, owner, sessions, T0 + timedelta(minutes=1))
    renamed = fit_session("s2", starts[2], name="Evening run")
    later = T0 + timedelta(minutes=2)
    changed = await store.upsert_sessions(pool, owner, [renamed, sessions[1]], later)

    assert first.added == ("s0", "s1", "s2", "s3")
    assert (same.added, same.updated) == ((), ())
    assert (changed.added, changed.updated) == ((), ("s2",))
    rows = await store.recent_sessions(pool, owner)
    assert [r.key for r in rows] == ["s0", "s1", "s2", "s3"]
    by_id = {r.key: r for r in rows}
    assert by_id["s2"].columns["name"] == "Evening run"
    assert by_id["s2"].updated_at == later
    assert by_id["s1"].updated_at == T0
    assert by_id["s0"].columns["activity_type"] == 8
    assert by_id["s0"].columns["active_time_ms"] == 28 * 60_000
    assert by_id["s0"].columns["package_name"] == "com.google.android.apps.fitness"
    assert by_id["s0"].columns["end_at"] - by_id["s0"].columns["start_at"] == timedelta(minutes=30)
    assert by_id["s0"].raw == sessions[0].raw

    window = await store.recent_sessions(pool, owner, since=starts[2], until=starts[0])
    assert [r.key for r in window] == ["s1", "s2"]
    assert await store.delete_sessions(pool, owner, ["s1", "never-seen"]) == ["s1"]
    assert [r.key for r in await store.recent_sessions(pool, owner, limit=2)] == ["s0", "s2"]
