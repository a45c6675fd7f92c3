"""WHOOP through sync-worker over real NATS, Postgres, token-service and the sandbox
(issue 7): one backfill session runs recovery, sleep, cycle and workout in turn; a
failure in the middle of the second type resumes there with the first still `success`;
a permanent failure in the third fails the third and fourth only; a command naming one
type runs only that type; webhooks refetch, skip unchanged records and delete; smart
reads answer in the shape of seeds/004, and the sync status lists every type."""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from syncplane_common import bus, rpc, subjects
from syncplane_common.contracts import (
    DataQuery,
    DataReply,
    SyncRequested,
    SyncStatusGet,
    SyncStatusReply,
    WebhookReceived,
)
from syncplane_common.errors import NotFoundError, ProviderUnavailableError

from tests.integration.sync_harness import (
    Events,
    build_app,
    eventually,
    migrated,
    recorder,
    running,
    sessions_of,
    whoop_settings,
)
from tests.integration.token_harness import Stack, stack

pytestmark = pytest.mark.integration

TYPES = ("recovery", "sleep", "cycle", "workout")
LISTS = {
    "recovery": "whoop GET /v2/recovery",
    "sleep": "whoop GET /v2/activity/sleep",
    "cycle": "whoop GET /v2/cycle",
    "workout": "whoop GET /v2/activity/workout",
}
TABLES = {
    "recovery": "whoop_recoveries",
    "sleep": "whoop_sleeps",
    "cycle": "whoop_cycles",
    "workout": "whoop_workouts",
}
SCOPES = (
    "offline",
    "read:profile",
    "read:recovery",
    "read:sleep",
    "read:cycles",
    "read:workout",
)


@pytest.fixture(scope="module")
async def env(nats_server: Any, database_url: str) -> AsyncIterator[tuple[Stack, Events]]:
    await migrated(database_url)
    async with stack(nats_server.url, database_url) as s:
        settings = await whoop_settings(s, database_url)
        async with (
            running(build_app(settings, scheduler=False)),
            recorder(nats_server.url, "sync.>", "records.>") as seen,
        ):
            yield s, seen


# -- helpers -------------------------------------------------------------------------------


async def seed(s: Stack, user: str, days: int) -> dict[str, Any]:
    """A sandbox WHOOP member with ``days`` of history; its id and record counts."""
    made = await s.control(
        "POST",
        "/_sandbox/whoop/seed",
        {"users": 1, "days": days, "login_hint_prefix": f"{user}-", "workout_rate": 1.0},
    )
    entry: dict[str, Any] = made["users"][0]
    return entry


async def connect(s: Stack, user: str, days: int) -> dict[str, Any]:
    member = await seed(s, user, days)
    code = await s.consent("whoop", member["login_hint"], scopes=SCOPES)
    reply = await s.exchange(user, "whoop", code, scopes=SCOPES)
    assert reply.provider_account_id == str(member["user_id"])
    return member


def completed(seen: Events, user: str) -> list[dict[str, Any]]:
    return seen.of("sync.completed.whoop", user)


async def calls(s: Stack) -> dict[str, int]:
    stats = (await s.stats())["calls"]
    return {t: stats.get(LISTS[t], 0) for t in TYPES}


async def stored(s: Stack, user: str, data_type: str) -> int:
    value: int = await s.admin.fetchval(
        f"SELECT count(*) FROM sync.{TABLES[data_type]} WHERE user_id = $1",  # noqa: S608
        user,
    )
    return value


async def sync_log(s: Stack, user: str) -> dict[str, dict[str, Any]]:
    records = await s.admin.fetch(
        "SELECT * FROM sync.sync_log WHERE user_id = $1 AND provider = 'whoop'", user
    )
    return {r["data_type"]: dict(r) for r in records}


def pages(count: int) -> int:
    """List calls a walk of ``count`` records takes at 25 a page (an empty list: one)."""
    return max(1, math.ceil(count / 25))


async def request(s: Stack, user: str, **extra: Any) -> None:
    request_id = f"test-{uuid.uuid4().hex}"
    command = SyncRequested(
        request_id=request_id,
        user_id=user,
        provider="whoop",
        kind="incremental",
        requested_at=datetime.now(UTC),
        priority="interactive",
        **extra,
    )
    await bus.publish(s.broker, command.subject, command, msg_id=request_id)


async def fault(s: Stack, data_type: str, **rule: Any) -> None:
    endpoint = LISTS[data_type].removeprefix("whoop ")
    await s.control("POST", "/_sandbox/faults", {"provider": "whoop", "endpoint": endpoint, **rule})


# -- sessions over several types -----------------------------------------------------------


async def test_a_backfill_runs_all_four_types_in_one_session(env: tuple[Stack, Events]) -> None:
    s, seen = env
    user = "w-backfill"
    before = await calls(s)
    member = await connect(s, user, 40)
    (done,) = await eventually(lambda: completed(seen, user))
    assert done["kind"] == "backfill"
    (session,) = await sessions_of(s, user)
    assert session["state"] == "completed"
    after = await calls(s)
    log = await sync_log(s, user)
    total = 0
    for data_type in TYPES:
        count = member[data_type]
        assert count > 0, data_type
        assert await stored(s, user, data_type) == count
        assert after[data_type] - before[data_type] == pages(count), data_type
        assert log[data_type]["status"] == "success"
        assert log[data_type]["records_synced"] == count
        assert log[data_type]["session_id"] == session["id"]
        added = [i for e in seen.of(f"records.changed.whoop.{data_type}", user) for i in e["added"]]
        assert len(added) == len(set(added)) == count
        total += count
    assert done["stored"] == total
    # Types finish in registry order, each recorded with its own last page.
    finished = [log[t]["last_success_at"] for t in TYPES]
    assert finished == sorted(finished)


async def test_a_failure_inside_the_second_type_resumes_there(env: tuple[Stack, Events]) -> None:
    s, seen = env
    user = "w-resume"
    member = await seed(s, user, 60)
    assert pages(member["sleep"]) >= 3
    # The first sleep page goes through (a rule that changes nothing uses it up), the
    # second answers 500 once; the redelivered command resumes at that second page.
    await fault(s, "sleep", count=1)
    await fault(s, "sleep", status=500, count=1)
    before = await calls(s)
    code = await s.consent("whoop", member["login_hint"], scopes=SCOPES)
    await s.exchange(user, "whoop", code, scopes=SCOPES)
    await eventually(lambda: completed(seen, user))
    after = await calls(s)
    (session,) = await sessions_of(s, user)
    assert session["state"] == "completed"
    assert session["retry_count"] == 1
    # Recovery was not walked again; sleep lost exactly the one failed call.
    assert after["recovery"] - before["recovery"] == pages(member["recovery"])
    assert after["sleep"] - before["sleep"] == pages(member["sleep"]) + 1
    for data_type in TYPES:
        assert await stored(s, user, data_type) == member[data_type]
    log = await sync_log(s, user)
    assert {t: log[t]["status"] for t in TYPES} == dict.fromkeys(TYPES, "success")
    # Recovery's success was recorded before the failure and never undone.
    assert log["recovery"]["last_success_at"] < log["sleep"]["last_success_at"]


async def test_a_permanent_failure_in_the_third_type_fails_the_rest_only(
    env: tuple[Stack, Events],
) -> None:
    s, seen = env
    user = "w-third"
    await fault(s, "cycle", status=400)
    try:
        member = await connect(s, user, 10)
        (failed,) = await eventually(lambda: seen.of("sync.failed.whoop", user))
    finally:
        await s.control("DELETE", "/_sandbox/faults")
    assert failed["error"]["retryable"] is False
    log = await sync_log(s, user)
    assert {t: log[t]["status"] for t in TYPES} == {
        "recovery": "success",
        "sleep": "success",
        "cycle": "failed",
        "workout": "failed",
    }
    assert "400" in log["cycle"]["error"]
    assert await stored(s, user, "recovery") == member["recovery"]
    assert await stored(s, user, "sleep") == member["sleep"]
    assert await stored(s, user, "workout") == 0


async def test_a_command_naming_one_type_runs_only_that_type(env: tuple[Stack, Events]) -> None:
    s, seen = env
    user = "w-only-sleep"
    await connect(s, user, 5)
    await eventually(lambda: completed(seen, user))
    log_before = await sync_log(s, user)
    before = await calls(s)
    await request(s, user, data_types=("sleep",))
    done = await eventually(lambda: completed(seen, user)[1:])
    assert done[0]["kind"] == "incremental"
    after = await calls(s)
    assert {t: after[t] - before[t] for t in TYPES} == {
        "recovery": 0,
        "sleep": 1,
        "cycle": 0,
        "workout": 0,
    }
    log = await sync_log(s, user)
    assert log["sleep"]["last_success_at"] > log_before["sleep"]["last_success_at"]
    for other in ("recovery", "cycle", "workout"):
        assert log[other] == log_before[other]


# -- webhooks ------------------------------------------------------------------------------


async def test_webhooks_refetch_skip_unchanged_and_delete(env: tuple[Stack, Events]) -> None:
    s, seen = env
    user = "w-hooks"
    member = await connect(s, user, 3)
    await eventually(lambda: completed(seen, user))
    sleep_id = str(
        await s.admin.fetchval(
            "SELECT sleep_id FROM sync.whoop_sleeps WHERE user_id = $1 AND nap = false "
            "ORDER BY start_at DESC LIMIT 1",
            user,
        )
    )
    sent = 0

    async def hook(kind: str, action: str) -> None:
        nonlocal sent
        sent += 1
        event = WebhookReceived(
            provider="whoop",
            kind=kind,
            event_id=f"whoop:{kind}.{action}:{sleep_id}:{uuid.uuid4()}",
            object_id=sleep_id,
            owner_id=str(member["user_id"]),
            action=action,
            received_at=datetime.now(UTC),
        )
        await bus.publish(s.broker, event.subject, event, msg_id=event.event_id)

    async def handled() -> bool:
        count = await s.admin.fetchval(
            "SELECT count(*) FROM sync.sessions WHERE user_id = $1 AND kind = 'webhook' "
            "AND state = 'completed'",
            user,
        )
        return bool(count == sent)

    async def row() -> Any:
        return await s.admin.fetchrow(
            "SELECT timezone_offset, updated_at FROM sync.whoop_sleeps "
            "WHERE user_id = $1 AND sleep_id = $2",
            user,
            uuid.UUID(sleep_id),
        )

    await s.control("PUT", f"/_sandbox/whoop/sleep/{sleep_id}", {"timezone_offset": "+09:00"})
    await hook("sleep", "updated")
    await eventually(handled)
    changed = await row()
    assert changed["timezone_offset"] == "+09:00"
    # The same record again (a duplicate delivery under a new trace id): not rewritten.
    await hook("sleep", "updated")
    await eventually(handled)
    assert (await row())["updated_at"] == changed["updated_at"]
    # A recovery webhook names the sleep; WHOOP deletes both and says so for each.
    assert await s.admin.fetchval(
        "SELECT count(*) FROM sync.whoop_recoveries WHERE user_id = $1 AND sleep_id = $2",
        user,
        uuid.UUID(sleep_id),
    )
    await s.control("DELETE", f"/_sandbox/whoop/sleep/{sleep_id}")
    await hook("sleep", "deleted")
    await hook("recovery", "deleted")
    await eventually(handled)
    assert await row() is None
    assert not await s.admin.fetchval(
        "SELECT count(*) FROM sync.whoop_recoveries WHERE user_id = $1 AND sleep_id = $2",
        user,
        uuid.UUID(sleep_id),
    )
    sleeps = [
        (tuple(e["added"]), tuple(e["updated"]), tuple(e["deleted"]))
        for e in seen.of("records.changed.whoop.sleep", user)[1:]
    ]
    # The unchanged refetch published nothing: one update, then the deletion.
    assert sleeps == [((), (sleep_id,), ()), ((), (), (sleep_id,))]
    (recovery_gone,) = [e for e in seen.of("records.changed.whoop.recovery", user) if e["deleted"]]
    assert recovery_gone["deleted"] == [sleep_id]


# -- smart reads and status ----------------------------------------------------------------


async def test_smart_reads_answer_in_the_smart_sync_shape(env: tuple[Stack, Events]) -> None:
    s, seen = env
    user = "w-reads"
    member = await connect(s, user, 12)
    await eventually(lambda: completed(seen, user))

    async def read(**extra: Any) -> DataReply:
        ask = DataQuery(user_id=user, provider="whoop", data_type="recovery", **extra)
        return await rpc.request(s.broker, subjects.DATA_QUERY, ask, DataReply, wait=20)

    before = await calls(s)
    cached = await read(limit=5)
    assert cached.status == "success"
    meta = cached.metadata
    assert set(meta) == {
        "source",
        "record_count",
        "last_sync_at",
        "time_since_sync_seconds",
        "time_since_sync_hours",
        "threshold_seconds",
        "cached_enough",
        "note",
    }
    assert meta["source"] == "cache"
    assert meta["record_count"] == len(cached.data) == 5
    assert meta["threshold_seconds"] == 7200
    assert meta["cached_enough"] is True
    assert isinstance(meta["time_since_sync_seconds"], float)
    assert 0 <= meta["time_since_sync_seconds"] < 7200
    row = cached.data[0]
    assert row["id"] == row["sleep_id"]
    assert isinstance(row["record"], dict)
    assert row["record"]["sleep_id"] == row["id"]
    assert await calls(s) == before

    forced = await read(force_refresh=True)
    assert forced.status == "success"
    assert forced.metadata["source"] == "whoop_api"
    assert forced.metadata["cached_enough"] is False
    assert forced.metadata["synced_at"]
    assert forced.metadata["record_count"] == member["recovery"]
    assert "WHOOP API" in str(forced.metadata["note"])
    assert (await calls(s))["recovery"] == before["recovery"] + 1

    await fault(s, "recovery", status=503)
    try:
        stale = await read(force_refresh=True)
    finally:
        await s.control("DELETE", "/_sandbox/faults")
    assert stale.status == "success_with_warning"
    assert stale.metadata["source"] == "stale_cache"
    assert stale.metadata["warning"] == "Using stale cached data due to sync failure"
    assert "503" in str(stale.metadata["error"])
    assert stale.metadata["record_count"] == member["recovery"]

    with pytest.raises(NotFoundError, match="no data type whoop/naps"):
        await rpc.request(
            s.broker,
            subjects.DATA_QUERY,
            DataQuery(user_id=user, provider="whoop", data_type="naps"),
            DataReply,
        )


async def test_a_kept_answer_is_never_sent_for_rows_that_changed(
    env: tuple[Stack, Events],
) -> None:
    """The worker keeps the rows of fresh reads as it answered them; whatever writes a
    row (another replica, a webhook, a cleanup) the next read answers the row as it is."""
    s, seen = env
    user = "w-kept"
    await connect(s, user, 6)
    await eventually(lambda: completed(seen, user))

    async def read() -> DataReply:
        ask = DataQuery(user_id=user, provider="whoop", data_type="recovery", limit=3)
        return await rpc.request(s.broker, subjects.DATA_QUERY, ask, DataReply, wait=20)

    first = await read()
    assert first.metadata["source"] == "cache"
    assert (await read()).data == first.data  # the kept answer, same rows
    newest, second = (row["id"] for row in first.data[:2])
    await s.admin.execute(
        "UPDATE sync.whoop_recoveries SET raw = jsonb_set(raw, '{score_state}', "
        "'\"PENDING_SCORE\"') WHERE user_id = $1 AND sleep_id = $2::uuid",
        user,
        newest,
    )
    changed = await read()
    assert changed.metadata["source"] == "cache"
    record = changed.data[0]["record"]
    assert isinstance(record, dict)
    assert record["score_state"] == "PENDING_SCORE"
    assert changed.data[1:] == first.data[1:]
    await s.admin.execute(
        "DELETE FROM sync.whoop_recoveries WHERE user_id = $1 AND sleep_id = $2::uuid",
        user,
        second,
    )
    gone = await read()
    assert second not in [row["id"] for row in gone.data]
    assert gone.metadata["record_count"] == len(gone.data) == 3


async def test_a_failing_provider_with_nothing_stored_is_a_provider_error(
    env: tuple[Stack, Events],
) -> None:
    s, seen = env
    user = "w-nothing"
    await fault(s, "workout", status=400)
    try:
        await connect(s, user, 2)
        await eventually(lambda: seen.of("sync.failed.whoop", user))
        await s.control("DELETE", "/_sandbox/faults")
        await fault(s, "workout", status=503)
        ask = DataQuery(user_id=user, provider="whoop", data_type="workout")
        with pytest.raises(ProviderUnavailableError, match="WHOOP API failed") as caught:
            await rpc.request(s.broker, subjects.DATA_QUERY, ask, DataReply, wait=20)
    finally:
        await s.control("DELETE", "/_sandbox/faults")
    assert "no workout data is stored yet" in caught.value.message


async def test_sync_status_lists_every_type_with_its_threshold(env: tuple[Stack, Events]) -> None:
    s, seen = env
    user = "w-status"
    await connect(s, user, 4)
    await eventually(lambda: completed(seen, user))
    reply = await rpc.request(
        s.broker, subjects.SYNC_STATUS_GET, SyncStatusGet(user_id=user), SyncStatusReply
    )
    whoop = reply.sync_status["whoop"]
    assert sorted(whoop) == sorted(TYPES)
    assert reply.check_timestamp is not None
    for data_type, entry in whoop.items():
        assert entry.sync_status == "success"
        assert entry.needs_sync is False
        assert entry.error_message is None
        assert entry.records_synced > 0
        expected = 3600 if data_type == "workout" else 7200
        assert entry.threshold_seconds == expected
        assert entry.threshold_hours == expected / 3600
        assert entry.time_since_sync_hours is not None
    assert len(reply.statuses) == 4
