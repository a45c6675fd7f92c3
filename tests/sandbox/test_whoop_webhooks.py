"""WHOOP webhooks (PROVIDERS.md §7.4, §7.5), received by a real local server: the signature
recomputed independently, the updated/deleted events with sleep UUIDs for recoveries, every
URL, retries on the virtual clock, revocation, and the drop, latency, duplicate,
bad-signature and stale-timestamp controls."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from provider_sandbox.core import Sandbox

from tests.sandbox.conftest import Client
from tests.sandbox.test_whoop_oauth import (
    API,
    SECRET,
    assert_shape,
    bearer,
    configure,
    connect,
    generate,
    payload,
    user_id,
)

pytestmark = pytest.mark.service

EVENT_TYPES = {
    "workout.updated",
    "workout.deleted",
    "sleep.updated",
    "sleep.deleted",
    "recovery.updated",
    "recovery.deleted",
}


class Receiver:
    """A webhook endpoint that records raw requests and answers scripted statuses."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        self.delays: list[float] = []
        self.server: TestServer | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        if self.delays:
            await asyncio.sleep(self.delays.pop(0))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/webhooks/whoop"))

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.requests]

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.requests) < count:
                await asyncio.sleep(0.01)

    async def stays_at(self, count: int, seconds: float = 0.25) -> None:
        await asyncio.sleep(seconds)
        assert len(self.requests) == count, self.events


async def start_receiver() -> tuple[Receiver, TestServer]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/webhooks/whoop", receiver.handle)
    server = TestServer(app)
    await server.start_server()
    receiver.server = server
    return receiver, server


@pytest.fixture
async def receiver(client: Client) -> AsyncIterator[Receiver]:
    hook, server = await start_receiver()
    resp = await client.put("/_sandbox/whoop/webhook", json={"url": hook.url})
    assert resp.status == 200
    yield hook
    await server.close()


async def connected_user(client: Client, sandbox: Sandbox, hint: str = "wes") -> tuple[int, str]:
    token = await connect(client, hint)
    return user_id(sandbox, hint), token["access_token"]


def independent_signature(timestamp: str, body: bytes) -> str:
    digest = hmac.new(SECRET.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


async def stats(client: Client) -> dict[str, int]:
    body = await (await client.get("/_sandbox/stats")).json()
    webhooks: dict[str, int] = body["webhooks"].get("whoop", {})
    return webhooks


async def test_signed_over_ms_timestamp_and_raw_body(
    client: Client, sandbox: Sandbox, receiver: Receiver
) -> None:
    user, _ = await connected_user(client, sandbox)
    sleep = (await generate(client, user, "sleep", 1))[0]
    await receiver.wait_for(1)
    headers, body = receiver.requests[0]
    stamp = headers["X-WHOOP-Signature-Timestamp"]
    assert stamp.isdigit()
    assert abs(int(stamp) - sandbox.clock.time() * 1000) < 5_000
    assert hmac.compare_digest(headers["X-WHOOP-Signature"], independent_signature(stamp, body))
    # The public implementation that puts a "." between the two would not verify.
    assert headers["X-WHOOP-Signature"] != independent_signature(stamp + ".", body)
    assert headers["Content-Type"].startswith("application/json")
    event = json.loads(body)
    assert_shape(event, payload("whoop_webhook.json"))
    assert event == {
        "user_id": user,
        "id": sleep["id"],
        "type": "sleep.updated",
        "trace_id": event["trace_id"],
    }
    assert uuid.UUID(event["id"]).version == 4
    assert uuid.UUID(event["trace_id"])


async def test_updated_and_deleted_events_with_sleep_ids_for_recoveries(
    client: Client, sandbox: Sandbox, receiver: Receiver
) -> None:
    user, _ = await connected_user(client, sandbox)
    recovery = (await generate(client, user, "recovery", 1))[0]
    await receiver.wait_for(2)
    created = {(e["type"], e["id"]) for e in receiver.events}
    # No create events and none for cycles: new records arrive as *.updated.
    assert created == {
        ("sleep.updated", recovery["sleep_id"]),
        ("recovery.updated", recovery["sleep_id"]),
    }
    workout = (await generate(client, user, "workout", 1))[0]
    await receiver.wait_for(3)
    resp = await client.put(
        f"/_sandbox/whoop/workout/{workout['id']}", json={"sport_name": "rowing"}
    )
    assert (await resp.json())["records"][0]["sport_name"] == "rowing"
    await receiver.wait_for(4)
    assert receiver.events[3]["type"] == "workout.updated"
    assert (
        await client.put(f"/_sandbox/whoop/cycle/{recovery['cycle_id']}", json={})
    ).status == 200
    assert (await client.delete(f"/_sandbox/whoop/workout/{workout['id']}")).status == 200
    await receiver.wait_for(5)
    assert receiver.events[4] == {
        **receiver.events[4],
        "type": "workout.deleted",
        "id": workout["id"],
    }
    # Deleting a sleep deletes its recovery too.
    resp = await client.delete(f"/_sandbox/whoop/sleep/{recovery['sleep_id']}")
    sent = (await resp.json())["events"]
    assert {(e["type"], e["id"]) for e in sent} == {
        ("sleep.deleted", recovery["sleep_id"]),
        ("recovery.deleted", recovery["sleep_id"]),
    }
    await receiver.wait_for(7)
    await receiver.stays_at(7)
    assert {e["type"] for e in receiver.events} <= EVENT_TYPES
    assert all(e["user_id"] == user for e in receiver.events)
    token = (await connect(client, "wes"))["access_token"]
    gone = await client.get(
        f"{API}/v2/cycle/{recovery['cycle_id']}/recovery", headers=bearer(token)
    )
    assert gone.status == 404


async def test_deleting_a_recovery_alone(
    client: Client, sandbox: Sandbox, receiver: Receiver
) -> None:
    user, _ = await connected_user(client, sandbox)
    recovery = (await generate(client, user, "recovery", 1))[0]
    await receiver.wait_for(2)
    assert (await client.delete(f"/_sandbox/whoop/recovery/{recovery['sleep_id']}")).status == 200
    await receiver.wait_for(3)
    assert receiver.events[2]["type"] == "recovery.deleted"
    assert receiver.events[2]["id"] == recovery["sleep_id"]


async def test_every_event_goes_to_every_url(
    client: Client, sandbox: Sandbox, receiver: Receiver
) -> None:
    other, server = await start_receiver()
    try:
        resp = await client.put("/_sandbox/whoop/webhook", json={"urls": [receiver.url, other.url]})
        assert (await resp.json())["urls"] == [receiver.url, other.url]
        user, _ = await connected_user(client, sandbox)
        await generate(client, user, "recovery", 1)
        await generate(client, user, "workout", 1)
        await receiver.wait_for(3)
        await other.wait_for(3)
        assert sorted(receiver.events, key=str) == sorted(other.events, key=str)
    finally:
        await server.close()


async def test_failed_deliveries_retry_five_times_over_about_an_hour(
    client: Client, sandbox: Sandbox, receiver: Receiver
) -> None:
    user, _ = await connected_user(client, sandbox)
    receiver.statuses = [500] * 20
    await generate(client, user, "workout", 1)
    await receiver.wait_for(1)
    sandbox.clock.advance(59)
    await receiver.stays_at(1)
    sandbox.clock.advance(1)
    await receiver.wait_for(2)
    sandbox.clock.advance(3540)
    await receiver.wait_for(6)
    sandbox.clock.advance(7200)
    await receiver.stays_at(6)
    bodies = {body for _, body in receiver.requests}
    assert len(bodies) == 1
    stamps = [h["X-WHOOP-Signature-Timestamp"] for h, _ in receiver.requests]
    assert len(set(stamps)) == 6
    for headers, body in receiver.requests:
        stamp = headers["X-WHOOP-Signature-Timestamp"]
        assert headers["X-WHOOP-Signature"] == independent_signature(stamp, body)
    counted = await stats(client)
    assert counted["sent"] == 6
    assert counted["status_500"] == 6


async def test_a_2xx_ends_the_retries(client: Client, sandbox: Sandbox, receiver: Receiver) -> None:
    user, _ = await connected_user(client, sandbox)
    receiver.statuses = [503, 204]
    await generate(client, user, "sleep", 1)
    await receiver.wait_for(1)
    sandbox.clock.advance(4000)
    await receiver.wait_for(2)
    await receiver.stays_at(2)
    assert await stats(client) == {"sent": 2, "status_503": 1, "status_204": 1}


async def test_a_slow_answer_times_out_and_is_retried(
    client: Client, sandbox: Sandbox, receiver: Receiver
) -> None:
    user, _ = await connected_user(client, sandbox)
    await configure(client, webhook_timeout_seconds=0.2)
    receiver.delays = [1.0]
    await generate(client, user, "workout", 1)
    await receiver.wait_for(1)
    await asyncio.sleep(0.4)
    sandbox.clock.advance(60)
    await receiver.wait_for(2)
    await asyncio.sleep(0.1)
    assert await stats(client) == {"sent": 2, "timeout": 1, "status_200": 1}


async def test_drop_and_latency_faults(
    client: Client, sandbox: Sandbox, receiver: Receiver
) -> None:
    user, _ = await connected_user(client, sandbox)
    fault = {"provider": "whoop", "endpoint": "webhook", "drop": True, "count": 1}
    assert (await client.post("/_sandbox/faults", json=fault)).status == 201
    await generate(client, user, "workout", 1)
    await receiver.stays_at(0)
    # A dropped event is missed for good: no retry.
    sandbox.clock.advance(4000)
    await receiver.stays_at(0)
    assert (await stats(client))["dropped"] == 1
    slow = {"provider": "whoop", "endpoint": "webhook", "latency_ms": 400, "count": 1}
    await client.post("/_sandbox/faults", json=slow)
    began = asyncio.get_running_loop().time()
    await generate(client, user, "workout", 1)
    await receiver.wait_for(1)
    assert asyncio.get_running_loop().time() - began >= 0.4


async def test_revoked_and_unconnected_users_get_no_webhooks(
    client: Client, sandbox: Sandbox, receiver: Receiver
) -> None:
    stranger = user_id(sandbox, "never-connected")
    resp = await client.post(f"/_sandbox/whoop/users/{stranger}/sleep", json={"generate": 2})
    assert (await resp.json())["events"] == []
    user, token = await connected_user(client, sandbox)
    receiver.statuses = [500]
    await generate(client, user, "workout", 1)
    await receiver.wait_for(1)
    assert (await client.delete(API + "/v2/user/access", headers=bearer(token))).status == 204
    # The pending retry and anything new stop for that user.
    sandbox.clock.advance(4000)
    await generate(client, user, "workout", 1)
    await receiver.stays_at(1)
    assert (await stats(client))["revoked"] == 1


async def test_duplicate_bad_signature_and_stale_timestamp_controls(
    client: Client, sandbox: Sandbox, receiver: Receiver
) -> None:
    user, _ = await connected_user(client, sandbox)
    await configure(client, webhook_duplicate_rate=1.0)
    await generate(client, user, "workout", 1)
    await receiver.wait_for(2)
    first, second = receiver.events
    assert first == second
    await configure(client, webhook_duplicate_rate=0.0, webhook_bad_signature_rate=1.0)
    await generate(client, user, "workout", 1)
    await receiver.wait_for(3)
    headers, body = receiver.requests[2]
    stamp = headers["X-WHOOP-Signature-Timestamp"]
    assert headers["X-WHOOP-Signature"] != independent_signature(stamp, body)
    await configure(
        client,
        webhook_bad_signature_rate=0.0,
        webhook_stale_timestamp_rate=1.0,
        webhook_stale_seconds=900,
    )
    await generate(client, user, "workout", 1)
    await receiver.wait_for(4)
    headers, body = receiver.requests[3]
    stamp = headers["X-WHOOP-Signature-Timestamp"]
    assert headers["X-WHOOP-Signature"] == independent_signature(stamp, body)
    age = sandbox.clock.time() * 1000 - int(stamp)
    assert 899_000 < age < 905_000


async def test_pending_records_scored_later_send_an_update(
    client: Client, sandbox: Sandbox, receiver: Receiver
) -> None:
    user, _ = await connected_user(client, sandbox)
    await configure(client, pending_score_seconds=300)
    sleep = (await generate(client, user, "sleep", 1))[0]
    assert sleep["score_state"] == "PENDING_SCORE"
    await receiver.wait_for(1)
    sandbox.clock.advance(300)
    await receiver.wait_for(2)
    assert [(e["type"], e["id"]) for e in receiver.events] == [("sleep.updated", sleep["id"])] * 2
    assert receiver.events[0]["trace_id"] != receiver.events[1]["trace_id"]
    token = (await connect(client, "wes"))["access_token"]
    found = await (
        await client.get(f"{API}/v2/activity/sleep/{sleep['id']}", headers=bearer(token))
    ).json()
    assert found["score_state"] == "SCORED"
    assert "score" in found


async def test_webhook_control_validates_and_reports(
    client: Client, sandbox: Sandbox, receiver: Receiver
) -> None:
    for bad in ({"url": "ftp://x"}, {"url": 3}, {"urls": "https://x"}):
        resp = await client.put("/_sandbox/whoop/webhook", json=bad)
        assert resp.status == 400
    user, _ = await connected_user(client, sandbox)
    await generate(client, user, "workout", 1)
    await receiver.wait_for(1)
    await asyncio.sleep(0.05)
    report = await (await client.get("/_sandbox/whoop/webhook")).json()
    assert report["urls"] == [receiver.url]
    assert report["deliveries"][0]["outcome"] == "status_200"
    assert report["deliveries"][0]["event"]["type"] == "workout.updated"
    cleared = await client.put("/_sandbox/whoop/webhook", json={"url": None})
    assert (await cleared.json())["urls"] == []
    await generate(client, user, "workout", 1)
    await receiver.stays_at(1)
