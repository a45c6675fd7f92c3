"""The unified Google Fit run over real NATS, Postgres, token-service and the sandbox
(issue 7): one run over several users — one with a failing day, one whose grant is gone,
one in a 5xx storm, one whose token must be refreshed — with exact figures in its row and
on /metrics; unchanged days not rewritten; nothing done twice inside the interval or by
two workers at once; the reauth user skipped from then on; days in the user's zone
across a DST change."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sync_worker.app import SyncApp
from sync_worker.fit_run import FitRun
from syncplane_common import rpc, subjects
from syncplane_common.clock import ManualClock
from syncplane_common.contracts import (
    DataQuery,
    DataReply,
    FitRunsGet,
    FitRunsReply,
    FitRunSummary,
    TimeZoneReply,
    TimeZoneSet,
)
from syncplane_common.errors import PermanentError

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
AGGREGATE = "google_fit POST /users/me/dataset:aggregate"
SESSIONS = "google_fit GET /users/me/sessions"
DAYS_BACK = 7
# What the daily aggregate reads (steps, calories, distance, heart rate, active minutes)
# and sleep sessions, which Google lists only with the sleep scope.
SCOPES = tuple(
    f"https://www.googleapis.com/auth/fitness.{kind}.read"
    for kind in ("activity", "body", "heart_rate", "location", "sleep")
)
SESSIONS_SEEDED = 5  # one a day ending yesterday: all inside the run's 7 days


@pytest.fixture(scope="module")
async def env(nats_server: Any, database_url: str) -> AsyncIterator[tuple[Stack, SyncApp, Events]]:
    await migrated(database_url)
    async with stack(nats_server.url, database_url) as s:
        settings = settings_for(
            s,
            database_url,
            scheduler_tick_seconds=3600,
            token_cache_seconds=0,
            google_fit_run_pause_seconds=0,
        )
        app = build_app(settings, clock=s.clock, scheduler=False)
        async with (
            running(app),
            recorder(nats_server.url, "sync.>", "records.>", "connection.>") as seen,
        ):
            yield s, app, seen


def fit_run(app: SyncApp, **changes: Any) -> FitRun:
    assert app.fit_run is not None
    return dataclasses.replace(app.fit_run, **changes)


async def connected(s: Stack, seen: Events, user: str, *, sessions: int = SESSIONS_SEEDED) -> str:
    """A Fit user with 10 days and ``sessions`` sessions, connected and backfilled; the
    sandbox account id."""
    hint = f"{user}@example.com"
    account = s.sandbox.accounts.get_or_create(FIT, hint).id
    await s.control("POST", f"/_sandbox/google_fit/users/{account}/days", {"generate": 10})
    if sessions:
        await s.control(
            "POST", f"/_sandbox/google_fit/users/{account}/sessions", {"generate": sessions}
        )
    code = await s.consent(FIT, hint, scopes=SCOPES)
    await s.exchange(user, FIT, code, scopes=SCOPES)
    await eventually(lambda: seen.of(f"sync.completed.{FIT}", user))
    return account


async def make_due(s: Stack, *users: str) -> None:
    await s.admin.execute(
        "UPDATE sync.connections SET next_sync_at = $2 WHERE provider = $1 "
        "AND user_id = ANY($3::text[])",
        FIT,
        s.clock.now() - timedelta(seconds=1),
        list(users),
    )


async def calls(s: Stack) -> tuple[int, int]:
    stats = (await s.stats())["calls"]
    return stats.get(AGGREGATE, 0), stats.get(SESSIONS, 0)


async def daily_rows(s: Stack, user: str) -> dict[date, str]:
    """Each stored day's row version: a rewrite makes a new one even when the clock
    (frozen here) gives it the same updated_at."""
    records = await s.admin.fetch(
        "SELECT day, xmin::text AS version FROM sync.google_fit_daily WHERE user_id = $1", user
    )
    return {r["day"]: r["version"] for r in records}


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_one_run_over_every_kind_of_user_has_exact_figures(
    env: tuple[Stack, SyncApp, Events],
) -> None:
    s, app, seen = env
    users = ["fit-ok1", "fit-ok2", "fit-refresh", "fit-day", "fit-reauth", "fit-storm"]
    accounts = {u: await connected(s, seen, u) for u in users}
    # One failing day: the window call and then the first single day answer 500.
    await s.control(
        "POST",
        "/_sandbox/faults",
        {
            "provider": FIT,
            "endpoint": "POST /users/me/dataset:aggregate",
            "status": 500,
            "count": 2,
            "account_id": accounts["fit-day"],
        },
    )
    # A storm: every call of that user answers 503 for as long as it lasts.
    await s.control(
        "POST",
        "/_sandbox/faults",
        {"provider": FIT, "endpoint": "*", "status": 503, "account_id": accounts["fit-storm"]},
    )
    # The user withdrew our access at Google; our token expires, so the next token.get
    # must refresh and is refused for good.
    await s.control("POST", f"/_sandbox/google/accounts/{accounts['fit-reauth']}/revoke")
    await s.expire("fit-reauth", FIT)
    await s.expire("fit-refresh", FIT)
    # A day Google revised since the backfill: the one row the run may rewrite.
    yesterday = (s.clock.now() - timedelta(days=1)).date()
    await s.control(
        "POST",
        f"/_sandbox/google_fit/users/{accounts['fit-ok2']}/days",
        {"days": [{"date": yesterday.isoformat(), "steps": 12345}]},
    )
    before_rows = {u: await daily_rows(s, u) for u in users}
    changed_before = len(seen.of(f"records.changed.{FIT}.daily"))
    sessions_changed_before = len(seen.of(f"records.changed.{FIT}.sessions"))
    agg_before, list_before = await calls(s)
    failed_before = metric("syncplane_fit_run_users_total", outcome="failed")
    refreshed_before = metric("syncplane_fit_run_tokens_refreshed_total")
    days_before = metric("syncplane_fit_run_days_total", outcome="synced")
    await make_due(s, *users)

    run = await fit_run(app).run_once()

    assert run is not None
    assert run.users_processed == 6
    assert run.successful == 4
    assert run.failed == 2
    assert run.tokens_refreshed == 1
    # 7 days for three users, 6 for the one with a failing day.
    assert run.days_synced == 3 * DAYS_BACK + DAYS_BACK - 1
    # The failing day; the storm's 7 (two tried, the rest left for the next run).
    assert run.days_failed == 1 + DAYS_BACK
    assert run.sessions_synced == 4 * SESSIONS_SEEDED
    agg_after, list_after = await calls(s)
    # Healthy users: 1 + 1 each; failing day: window + 7 days + sessions; storm: window
    # + 2 days + sessions; reauth: none.
    assert (agg_after - agg_before, list_after - list_before) == (3 + 8 + 3, 3 + 1 + 1)
    assert run.provider_calls == 19
    errors = {e.user_id: e for e in run.errors}
    assert set(errors) == {"fit-day", "fit-storm", "fit-reauth"}
    first_day = (s.clock.now() - timedelta(days=DAYS_BACK - 1)).date().isoformat()
    assert errors["fit-day"].failed_days == (first_day,)
    assert not errors["fit-day"].user_failed
    assert errors["fit-storm"].user_failed
    assert errors["fit-storm"].code == "retryable"
    assert len(errors["fit-storm"].failed_days) == DAYS_BACK
    assert errors["fit-reauth"].code == "reauth_required"
    assert errors["fit-reauth"].user_failed

    # The row says the same; so do the metrics and sync.fit_runs.get.
    row = await s.admin.fetchrow(
        "SELECT * FROM sync.google_fit_runs WHERE run_id = $1::uuid", run.run_id
    )
    assert row is not None
    assert (row["users_processed"], row["successful"], row["failed"]) == (6, 4, 2)
    assert (row["tokens_refreshed"], row["days_synced"], row["sessions_synced"]) == (1, 27, 20)
    assert metric("syncplane_fit_run_users_total", outcome="failed") - failed_before == 2
    assert metric("syncplane_fit_run_tokens_refreshed_total") - refreshed_before == 1
    assert metric("syncplane_fit_run_days_total", outcome="synced") - days_before == 27
    reply = await rpc.request(s.broker, subjects.SYNC_FIT_RUNS_GET, FitRunsGet(), FitRunsReply)
    assert reply.runs[0] == run

    # Only the revised day was rewritten and reported; the rest were left alone.
    for user in ("fit-ok1", "fit-refresh", "fit-day"):
        after = await daily_rows(s, user)
        assert {d: after[d] for d in before_rows[user]} == before_rows[user], user
    ok2 = await daily_rows(s, "fit-ok2")
    rewritten = {d for d in before_rows["fit-ok2"] if ok2[d] != before_rows["fit-ok2"][d]}
    assert rewritten == {yesterday}
    changed = seen.of(f"records.changed.{FIT}.daily")[changed_before:]
    assert [(c["user_id"], c["updated"]) for c in changed] == [("fit-ok2", [yesterday.isoformat()])]
    assert seen.of(f"records.changed.{FIT}.sessions")[sessions_changed_before:] == []

    # token-service announced the refusal; sync-worker's view of the connection follows,
    # and from then on the run leaves the user out.
    async def reauth_status() -> Any:
        return await s.admin.fetchval(
            "SELECT status FROM sync.connections WHERE user_id = $1 AND provider = $2",
            "fit-reauth",
            FIT,
        )

    assert await eventually(lambda: _equals(reauth_status(), "reauth_required"))

    # Inside the interval a second run finds nobody due and calls nothing.
    assert await fit_run(app).run_once() is None
    assert await calls(s) == (agg_after, list_after)
    assert await s.admin.fetchval("SELECT count(*) FROM sync.google_fit_runs") == 1

    # The next run: the storm has passed, the failed days are read again, the reauth
    # user is not claimed.
    await s.control("DELETE", "/_sandbox/faults")
    await make_due(s, *users)
    again = await fit_run(app).run_once()
    assert again is not None
    assert again.users_processed == 5
    assert again.successful == 5
    assert again.days_synced == 5 * DAYS_BACK
    assert again.errors == ()
    stored = await daily_rows(s, "fit-day")
    assert date.fromisoformat(first_day) in stored

    # What the run stored is what a smart read answers, newest first, from the store.
    ask = DataQuery(user_id="fit-ok1", provider=FIT, data_type="daily", limit=3)
    read = await rpc.request(s.broker, subjects.DATA_QUERY, ask, DataReply)
    assert read.metadata["source"] == "cache"
    today = s.clock.now().date()
    assert [r["date"] for r in read.data] == [
        (today - timedelta(days=i)).isoformat() for i in range(3)
    ]
    assert read.data[1]["steps"] is not None
    ask = DataQuery(user_id="fit-ok1", provider=FIT, data_type="sessions")
    read = await rpc.request(s.broker, subjects.DATA_QUERY, ask, DataReply)
    assert len(read.data) == SESSIONS_SEEDED
    assert all(r["session_id"] and r["start_at"] for r in read.data)


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def test_two_workers_running_at_once_never_sync_a_user_twice(
    env: tuple[Stack, SyncApp, Events],
) -> None:
    s, app, seen = env
    users = [f"fit-pair-{i}" for i in range(8)]
    for user in users:
        await connected(s, seen, user, sessions=0)
    agg_before, list_before = await calls(s)
    await make_due(s, *users)
    # The generic scheduler leaves Fit connections to the run.
    assert app.scheduler is not None
    assert await app.scheduler.tick() == 0

    runs = await asyncio.gather(
        fit_run(app, worker="w1", batch_size=2, concurrency=1).run_once(),
        fit_run(app, worker="w2", batch_size=2, concurrency=1).run_once(),
    )

    done = [r for r in runs if r is not None]
    assert sum(r.users_processed for r in done) == len(users)
    assert all(r.failed == 0 for r in done)
    agg_after, list_after = await calls(s)
    assert (agg_after - agg_before, list_after - list_before) == (len(users), len(users))


async def test_days_are_local_days_of_the_users_zone_across_dst(
    env: tuple[Stack, SyncApp, Events],
) -> None:
    s, app, seen = env
    user = "fit-berlin"
    await connected(s, seen, user, sessions=0)
    with pytest.raises(PermanentError):
        await rpc.request(
            s.broker,
            subjects.SYNC_TIME_ZONE_SET,
            TimeZoneSet(user_id=user, time_zone="Mars/Olympus"),
            TimeZoneReply,
        )
    reply = await rpc.request(
        s.broker,
        subjects.SYNC_TIME_ZONE_SET,
        TimeZoneSet(user_id=user, time_zone="Europe/Berlin"),
        TimeZoneReply,
    )
    assert reply.time_zone == "Europe/Berlin"
    # A run as of three days after Berlin's clocks went back (2026-10-25, a 25-hour day).
    as_of = datetime(2026, 10, 28, 12, tzinfo=UTC)
    await s.admin.execute(
        "UPDATE sync.connections SET next_sync_at = $3 WHERE user_id = $1 AND provider = $2",
        user,
        FIT,
        as_of - timedelta(days=1),
    )
    run = await fit_run(app, clock=ManualClock(as_of)).run_once()
    assert isinstance(run, FitRunSummary)
    assert (run.users_processed, run.days_synced) == (1, DAYS_BACK)
    records = await s.admin.fetch(
        "SELECT day, time_zone, day_start, day_end FROM sync.google_fit_daily "
        "WHERE user_id = $1 AND time_zone = 'Europe/Berlin' ORDER BY day",
        user,
    )
    hours = {r["day"]: (r["day_end"] - r["day_start"]) / timedelta(hours=1) for r in records}
    assert sorted(hours) == [date(2026, 10, 22) + timedelta(days=i) for i in range(DAYS_BACK)]
    assert hours[date(2026, 10, 25)] == 25
    assert {h for d, h in hours.items() if d != date(2026, 10, 25)} == {24}
    # Local midnight in Berlin: 22:00 UTC in summer time, 23:00 after the change.
    starts = {r["day"]: r["day_start"].astimezone(UTC).hour for r in records}
    assert starts[date(2026, 10, 25)] == 22
    assert starts[date(2026, 10, 26)] == 23
