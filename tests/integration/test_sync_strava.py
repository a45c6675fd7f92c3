"""sync-worker end to end over real NATS, Postgres, token-service and the sandbox:
connect → backfill with enrichment, incremental syncs, webhooks, app_focus freshness,
401 → one forced refresh, the sport filter, revocation, and the smart read."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from syncplane_common import bus, rpc, subjects
from syncplane_common.contracts import (
    DataQuery,
    DataReply,
    SyncRequested,
    SyncSessionGet,
    SyncSessionReply,
    SyncStatusGet,
    SyncStatusReply,
    TokenRevoke,
    TokenRevokeReply,
    WebhookReceived,
)
from syncplane_common.errors import NotFoundError

from tests.integration.sync_harness import (
    Events,
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
from tests.integration.token_harness import Stack, stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def env(nats_server: Any, database_url: str) -> AsyncIterator[tuple[Stack, Events]]:
    await migrated(database_url)
    async with stack(nats_server.url, database_url) as s:
        settings = settings_for(s, database_url, scheduler_tick_seconds=3600)
        async with (
            running(build_app(settings, scheduler=False)),
            recorder(nats_server.url, "sync.>", "records.>") as seen,
        ):
            yield s, seen


async def connect(s: Stack, user: str, count: int) -> int:
    hint = f"{user}-athlete"
    athlete = await seed_strava(s, hint, count)
    reply = await s.connect(user, "strava", hint)
    assert reply.provider_account_id == str(athlete)
    return athlete


def completed(seen: Events, user: str) -> list[dict[str, Any]]:
    return seen.of("sync.completed.strava", user)


async def request(s: Stack, user: str, kind: str = "incremental", **extra: Any) -> str:
    request_id = f"test-{uuid.uuid4().hex}"
    command = SyncRequested(
        request_id=request_id,
        user_id=user,
        provider="strava",
        kind=kind,
        requested_at=datetime.now(UTC),
        priority="interactive",
        **extra,
    )
    await bus.publish(s.broker, command.subject, command, msg_id=request_id)
    return request_id


async def test_connect_backfills_every_activity_once_with_enrichment(
    env: tuple[Stack, Events],
) -> None:
    s, seen = env
    user = "u-backfill"
    await connect(s, user, 450)
    done = await eventually(lambda: completed(seen, user))
    assert done[0]["kind"] == "backfill"
    assert done[0]["fetched"] == 450
    assert done[0]["stored"] == 450
    assert await activity_count(s, user) == 450
    # Pages of 200: 200, 200, 50, then the empty page that ends the list.
    progress = seen.of("sync.progress.strava", user)
    assert [p["stored"] for p in progress] == [200, 400, 450]
    added = [int(i) for e in seen.of("records.changed.strava.activities", user) for i in e["added"]]
    assert len(added) == len(set(added)) == 450
    records = await s.admin.fetch(
        "SELECT raw::text, weather::text, enrichment_status::text FROM sync.strava_activities "
        "WHERE user_id = $1",
        user,
    )
    rows: list[dict[str, Any]] = [
        {k: json.loads(v) if v else None for k, v in r.items()} for r in records
    ]
    located = [r for r in rows if r["raw"]["start_latlng"]]
    assert located, "the sandbox generates activities with GPS"
    # The archive lags a few days behind (PROVIDERS.md §8): newer activities wait for the
    # enrichment pass, marked so; everything older has its weather.
    settled = datetime.now(UTC) - timedelta(days=7)
    old = [r for r in located if datetime.fromisoformat(r["raw"]["start_date"]) < settled]
    assert old
    assert all(r["enrichment_status"]["weather"] for r in old)
    assert all(r["weather"] is not None for r in old)
    for r in located:
        assert r["enrichment_status"]["weather"] is (r["weather"] is not None)
    (session,) = await sessions_of(s, user)
    assert session["state"] == "completed"
    assert session["pages_done"] == 4
    assert json.loads(session["checkpoint"])["page"] == 5


async def test_raw_payload_and_ids_survive_exactly(env: tuple[Stack, Events]) -> None:
    s, seen = env
    user = "u-exact"
    athlete = await seed_strava(s, f"{user}-athlete", 0)
    big = 9_007_199_254_740_993  # 2^53 + 1: a float would round it
    await s.control(
        "POST",
        f"/_sandbox/strava/athletes/{athlete}/activities",
        {"activities": [{"id": big, "upload_id": 987654321234567891234, "name": "exact"}]},
    )
    await s.connect(user, "strava", f"{user}-athlete")
    await eventually(lambda: completed(seen, user))
    row = await s.admin.fetchrow(
        "SELECT strava_id, raw::text AS raw, start_date_local FROM sync.strava_activities "
        "WHERE user_id = $1",
        user,
    )
    assert row is not None
    assert row["strava_id"] == big
    assert '"upload_id": 987654321234567891234' in row["raw"]


async def test_incremental_sync_fetches_only_new_activities(env: tuple[Stack, Events]) -> None:
    s, seen = env
    user = "u-incremental"
    athlete = await connect(s, user, 30)
    await eventually(lambda: completed(seen, user))
    before = (await s.stats())["calls"].get("strava GET /athlete/activities", 0)
    await s.control(
        "POST",
        f"/_sandbox/strava/athletes/{athlete}/activities",
        {"activities": [{"name": "fresh run", "start_date": datetime.now(UTC).isoformat()}]},
    )
    await request(s, user)
    done = await eventually(lambda: completed(seen, user)[1:])
    assert done[0]["kind"] == "incremental"
    assert await activity_count(s, user) == 31
    # One page holding the new activity (and whatever the overlap re-reads), one empty.
    after = (await s.stats())["calls"]["strava GET /athlete/activities"]
    assert after - before == 2
    assert done[0]["stored"] == 1


async def test_app_focus_skips_a_recent_sync_and_manual_does_not(env: tuple[Stack, Events]) -> None:
    s, seen = env
    user = "u-focus"
    await connect(s, user, 5)
    await eventually(lambda: completed(seen, user))
    await request(s, user, kind="on_demand", mode="app_focus")
    await request(s, user, kind="on_demand", mode="manual")
    done = await eventually(lambda: completed(seen, user)[1:])
    assert [d["kind"] for d in done] == ["on_demand"]
    assert len(await sessions_of(s, user)) == 2  # the backfill and the manual one


async def test_webhooks_refetch_update_and_delete(env: tuple[Stack, Events]) -> None:
    s, seen = env
    user = "u-webhook"
    athlete = await connect(s, user, 3)
    await eventually(lambda: completed(seen, user))
    made = await s.control(
        "POST",
        f"/_sandbox/strava/athletes/{athlete}/activities",
        {"activities": [{"name": "via webhook"}]},
    )
    activity_id = made["activities"][0]["id"]

    async def hook(action: str, n: int) -> None:
        event = WebhookReceived(
            provider="strava",
            kind="activity",
            event_id=f"strava-{activity_id}-{action}-{n}",
            object_id=str(activity_id),
            owner_id=str(athlete),
            action=action,
            received_at=datetime.now(UTC),
        )
        await bus.publish(s.broker, event.subject, event, msg_id=event.event_id)

    async def name() -> Any:
        return await s.admin.fetchval(
            "SELECT name FROM sync.strava_activities WHERE user_id = $1 AND strava_id = $2",
            user,
            activity_id,
        )

    weather_calls = (await s.stats())["calls"].get("open_meteo GET /archive", 0)
    await hook("create", 1)
    assert await eventually(name) == "via webhook"
    # A webhook enriches from the caches only: it never queues behind Open-Meteo.
    assert (await s.stats())["calls"].get("open_meteo GET /archive", 0) == weather_calls
    await s.control("PUT", f"/_sandbox/strava/activities/{activity_id}", {"name": "renamed"})
    await hook("update", 2)
    assert await eventually(lambda: _eq(name, "renamed")) is True
    await hook("delete", 3)
    await eventually(lambda: _is_none(name))
    changes = seen.of("records.changed.strava.activities", user)
    ids = [(tuple(e["added"]), tuple(e["updated"]), tuple(e["deleted"])) for e in changes[-3:]]
    key = (str(activity_id),)
    assert ids == [(key, (), ()), ((), key, ()), ((), (), key)]


async def test_webhook_for_an_unknown_owner_is_dropped(env: tuple[Stack, Events]) -> None:
    s, _ = env
    event = WebhookReceived(
        provider="strava",
        kind="activity",
        event_id=f"forged-{uuid.uuid4().hex}",
        object_id="12345",
        owner_id="999999999",
        action="create",
        received_at=datetime.now(UTC),
    )
    calls = (await s.stats())["calls"].get("strava GET /activities/{id}", 0)
    await bus.publish(s.broker, event.subject, event, msg_id=event.event_id)
    await eventually(lambda: _consumer_idle(s))
    assert (await s.stats())["calls"].get("strava GET /activities/{id}", 0) == calls


async def test_a_rejected_token_is_refreshed_once_and_the_call_retried(
    env: tuple[Stack, Events],
) -> None:
    s, seen = env
    user = "u-401"
    await connect(s, user, 3)
    await eventually(lambda: completed(seen, user))
    await s.control(
        "POST",
        "/_sandbox/faults",
        {"provider": "strava", "endpoint": "GET /athlete/activities", "status": 401, "count": 1},
    )
    refreshes = sum((await s.stats())["refreshes"].values())
    await request(s, user, kind="on_demand", mode="manual")
    done = await eventually(lambda: completed(seen, user)[1:])
    assert done[0]["failed"] == 0
    # One force refresh asked for by fingerprint; token-service tries a second flight when
    # Strava hands back the unchanged token (more than an hour left), and no more.
    assert 1 <= sum((await s.stats())["refreshes"].values()) - refreshes <= 2
    row = await s.row(user, "strava")
    assert row["status"] == "active"


async def test_session_and_status_and_smart_reads(env: tuple[Stack, Events]) -> None:
    s, seen = env
    user = "u-reads"
    await connect(s, user, 12)
    done = await eventually(lambda: completed(seen, user))
    session = await rpc.request(
        s.broker,
        subjects.SYNC_SESSION_GET,
        SyncSessionGet(user_id=user, session_id=done[0]["session_id"]),
        SyncSessionReply,
    )
    assert session.state == "completed"
    assert session.counts["stored"] == 12
    with pytest.raises(NotFoundError):
        await rpc.request(
            s.broker,
            subjects.SYNC_SESSION_GET,
            SyncSessionGet(user_id="someone-else", session_id=done[0]["session_id"]),
            SyncSessionReply,
        )
    status = await rpc.request(
        s.broker, subjects.SYNC_STATUS_GET, SyncStatusGet(user_id=user), SyncStatusReply
    )
    (entry,) = status.statuses
    assert entry.sync_status == "success"
    assert entry.records_synced == 12
    assert entry.needs_sync is False
    assert entry.connection_status == "active"

    ask = DataQuery(user_id=user, provider="strava", data_type="activities", limit=5)
    calls = (await s.stats())["calls"]["strava GET /athlete/activities"]
    cached = await rpc.request(s.broker, subjects.DATA_QUERY, ask, DataReply)
    assert cached.metadata["source"] == "cache"
    assert len(cached.data) == 5
    assert all("strava_id" in row for row in cached.data)
    assert (await s.stats())["calls"]["strava GET /athlete/activities"] == calls

    forced = ask.model_copy(update={"force_refresh": True})
    fresh = await rpc.request(s.broker, subjects.DATA_QUERY, forced, DataReply)
    assert fresh.metadata["source"] == "strava_api"
    assert fresh.status == "success"

    await s.control(
        "POST",
        "/_sandbox/faults",
        {"provider": "strava", "endpoint": "GET /athlete/activities", "status": 503, "count": 50},
    )
    try:
        stale = await rpc.request(s.broker, subjects.DATA_QUERY, forced, DataReply, wait=20)
    finally:
        await s.control("DELETE", "/_sandbox/faults")
    assert stale.metadata["source"] == "stale_cache"
    assert stale.status == "success_with_warning"
    assert stale.metadata["error"]
    assert len(stale.data) == 5


async def test_revocation_reaches_sync_workers_view_of_the_connection(
    env: tuple[Stack, Events],
) -> None:
    # The scheduler skips non-active connections: test_sync_scheduler covers that claim.
    s, seen = env
    user = "u-revoke"
    await connect(s, user, 2)
    await eventually(lambda: completed(seen, user))
    await rpc.request(
        s.broker,
        subjects.TOKEN_REVOKE,
        TokenRevoke(user_id=user, provider="strava"),
        TokenRevokeReply,
    )

    async def status() -> Any:
        return await s.admin.fetchval(
            "SELECT status FROM sync.connections WHERE user_id = $1", user
        )

    assert await eventually(lambda: _eq(status, "revoked")) is True


# -- small helpers ---------------------------------------------------------------------------


async def _eq(read: Any, expected: Any) -> bool:
    return bool(await read() == expected)


async def _is_none(read: Any) -> bool:
    return await read() is None


async def _consumer_idle(s: Stack) -> bool:
    js = s.nc.jetstream()
    info = await js.consumer_info("WEBHOOKS", "sync-worker-webhooks")
    return bool(info.num_pending == 0 and info.num_ack_pending == 0)
