"""Smart reads through the gateway with two sync-worker replicas sharing NATS and Postgres
(issue 7): 100 concurrent stale reads of one user's type cost exactly one provider call
(the sandbox's counter), the cross-replica lock alone keeps two replicas to one call, and
a provider failure with nothing stored is a 502 in our error shape."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sync_worker.app import SyncApp
from syncplane_common.contracts import DataQuery, DataReply

from tests.integration.gateway_harness import Harness, running_gateway
from tests.integration.sync_harness import (
    Events,
    build_app,
    eventually,
    migrated,
    recorder,
    running,
    whoop_settings,
)
from tests.integration.test_sync_whoop import LISTS, connect, fault
from tests.integration.token_harness import Stack, stack

pytestmark = pytest.mark.integration


@dataclass
class Env:
    stack: Stack
    seen: Events
    workers: tuple[SyncApp, SyncApp]
    gateway: Harness


@pytest.fixture(scope="module")
async def env(nats_server: Any, database_url: str) -> AsyncIterator[Env]:
    await migrated(database_url)
    async with stack(nats_server.url, database_url) as s:
        settings = await whoop_settings(s, database_url)
        async with (
            running(build_app(settings, scheduler=False)) as one,
            running(build_app(settings, scheduler=False)) as two,
            recorder(nats_server.url, "sync.>") as seen,
            running_gateway(
                nats_server.url, sandbox_url=s.sandbox_url, request_timeout_seconds=20.0
            ) as gateway,
        ):
            yield Env(s, seen, (one, two), gateway)


async def connected(env: Env, user: str, days: int) -> dict[str, Any]:
    member = await connect(env.stack, user, days)
    await eventually(
        lambda: env.seen.of("sync.completed.whoop", user) or env.seen.of("sync.failed.whoop", user)
    )
    return member


async def make_stale(env: Env, user: str, data_type: str) -> None:
    await env.stack.admin.execute(
        "UPDATE sync.sync_log SET last_success_at = last_success_at - interval '3 hours' "
        "WHERE user_id = $1 AND provider = 'whoop' AND data_type = $2",
        user,
        data_type,
    )


async def list_calls(env: Env, data_type: str) -> int:
    value: int = (await env.stack.stats())["calls"].get(LISTS[data_type], 0)
    return value


async def get(env: Env, user: str, path: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with env.gateway.client.get(
        f"/api/v1/users/{user}{path}", headers=env.gateway.auth(user)
    ) as resp:
        return resp.status, await resp.json(), dict(resp.headers)


async def test_a_hundred_concurrent_stale_reads_cost_one_provider_call(env: Env) -> None:
    user = "sf-burst"
    member = await connected(env, user, 10)
    await make_stale(env, user, "recovery")
    # A slow provider keeps the first fetch in flight while the other 99 arrive.
    await fault(env.stack, "recovery", latency_ms=500)
    try:
        before = await list_calls(env, "recovery")
        answers = await asyncio.gather(
            *(get(env, user, "/data/whoop/recovery?limit=5") for _ in range(100))
        )
        after = await list_calls(env, "recovery")
    finally:
        await env.stack.control("DELETE", "/_sandbox/faults")
    assert after - before == 1
    assert [status for status, _, _ in answers] == [200] * 100
    sources = Counter(body["metadata"]["source"] for _, body, _ in answers)
    assert set(sources) <= {"whoop_api", "cache"}
    assert sources["whoop_api"] >= 1
    for _, body, _ in answers:
        assert body["status"] == "success"
        assert body["metadata"]["record_count"] == len(body["data"]) == min(5, member["recovery"])


async def test_two_replicas_share_one_fetch_through_the_lock(env: Env) -> None:
    # Each replica has its own in-process flights: only the advisory lock stands between
    # them, and the replica that waited re-reads the log and serves the fresh rows.
    from sync_worker import queries

    user = "sf-replicas"
    await connected(env, user, 6)
    await make_stale(env, user, "sleep")
    await fault(env.stack, "sleep", latency_ms=300)
    ask = DataQuery(user_id=user, provider="whoop", data_type="sleep")
    try:
        before = await list_calls(env, "sleep")
        answers = await asyncio.gather(
            *(
                queries.data_json(
                    w.require().engine,
                    ask,
                    w.require().freshness,
                    w.require().flights,
                    w.require().answered,
                )
                for w in env.workers
            )
        )
        replies = [DataReply.model_validate_json(a.to_bytes()) for a in answers]
        after = await list_calls(env, "sleep")
    finally:
        await env.stack.control("DELETE", "/_sandbox/faults")
    assert after - before == 1
    assert [r.metadata["source"] for r in replies] == ["whoop_api", "whoop_api"]
    assert replies[0].data == replies[1].data


async def test_the_gateway_answers_the_smart_read_shape_and_the_status(env: Env) -> None:
    user = "sf-shape"
    await connected(env, user, 4)
    status, body, _ = await get(env, user, "/data/whoop/cycle")
    assert status == 200
    assert body["status"] == "success"
    assert body["metadata"]["source"] == "cache"
    assert body["metadata"]["cached_enough"] is True
    assert body["metadata"]["threshold_seconds"] == 7200
    status, body, _ = await get(env, user, "/sync/status")
    assert status == 200
    entry = body["sync_status"]["whoop"]["workout"]
    assert {
        "last_sync_at",
        "sync_status",
        "records_synced",
        "time_since_sync_seconds",
        "time_since_sync_hours",
        "threshold_seconds",
        "threshold_hours",
        "needs_sync",
        "error_message",
    } <= set(entry)
    assert entry["threshold_seconds"] == 3600
    assert entry["needs_sync"] is False
    assert body["check_timestamp"]
    status, body, _ = await get(env, user, "/data/whoop/naps")
    assert status == 404
    assert body["error"]["code"] == "not_found"


async def test_a_failing_provider_with_nothing_stored_is_a_502(env: Env) -> None:
    user = "sf-502"
    await fault(env.stack, "workout", status=400)
    try:
        await connected(env, user, 2)
        await env.stack.control("DELETE", "/_sandbox/faults")
        await fault(env.stack, "workout", status=503)
        status, body, headers = await get(env, user, "/data/whoop/workout")
    finally:
        await env.stack.control("DELETE", "/_sandbox/faults")
    assert status == 502
    assert body["error"]["code"] == "provider_unavailable"
    assert "WHOOP API failed and no workout data is stored yet" in body["error"]["message"]
    assert int(headers["Retry-After"]) >= 1
