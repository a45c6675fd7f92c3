"""Admin routes over real NATS: overview from JetStream, Strava subscription into KV (where
the webhook route reads it), dead letters listed and replayed, 503 for absent owners."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from syncplane_common import dlq, subjects
from syncplane_common.contracts import SyncRequested
from syncplane_common.provision import provision_js
from syncplane_devstack.embedded import EmbeddedNats

from tests.integration.gateway_harness import (
    VERIFY_TOKEN,
    Harness,
    StandInTokenService,
    running_gateway,
    stand_in_token_service,
)

pytestmark = pytest.mark.integration

Json = dict[str, Any]

ADMIN = "/api/v1/admin"


@dataclass
class Admin:
    gateway: Harness
    tokens: StandInTokenService
    js: JetStreamContext

    async def call(self, method: str, path: str, body: object = None) -> tuple[int, Json]:
        resp = await self.gateway.client.request(
            method, ADMIN + path, json=body, headers=self.gateway.auth("ops", admin=True)
        )
        return resp.status, await resp.json()

    async def dead_letter(self, n: int) -> int:
        command = SyncRequested(
            request_id=f"r-{n}",
            user_id="u-1",
            provider="strava",
            kind="on_demand",
            requested_at=datetime(2026, 11, 1, tzinfo=UTC),
        )
        ack = await self.js.publish(
            subjects.dead_letter(command.subject),
            command.to_bytes(),
            headers={
                dlq.MSG_ID: f"dlq:SYNC:{n}",
                dlq.H_ORIGINAL_SUBJECT: command.subject,
                dlq.H_ERROR_TYPE: "PermanentError",
                dlq.H_ERROR_CODE: "permanent",
                dlq.H_ERROR_MESSAGE: "athlete not found",
                dlq.H_DELIVERIES: "1",
                dlq.H_CONSUMER: "sync-worker-requests",
                dlq.H_FAILED_AT: "2026-11-01T00:00:00+00:00",
            },
        )
        return ack.seq


@pytest.fixture
async def admin(js: JetStreamContext, nats_server: EmbeddedNats) -> AsyncIterator[Admin]:
    await provision_js(js)
    async with (
        stand_in_token_service(nats_server.url) as tokens,
        running_gateway(nats_server.url) as gateway,
    ):
        yield Admin(gateway, tokens, js)


async def test_admin_routes_need_the_admin_scope(admin: Admin) -> None:
    client = admin.gateway.client
    for method, path in (
        ("GET", "/overview"),
        ("POST", "/sync/background"),
        ("POST", "/strava/subscription"),
        ("GET", "/dead-letters"),
        ("POST", "/dead-letters/replay"),
    ):
        resp = await client.request(method, ADMIN + path, headers=admin.gateway.auth("u-1"))
        assert resp.status == 403, path
        resp = await client.request(method, ADMIN + path)
        assert resp.status == 401, path


async def test_overview_counts_streams_consumers_and_dead_letters(admin: Admin) -> None:
    await admin.dead_letter(1)
    status, body = await admin.call("GET", "/overview")
    assert status == 200
    assert set(body["streams"]) == {s.name for s in subjects.STREAMS}
    assert body["streams"]["DLQ"]["messages"] == 1
    assert body["dead_letters"] == 1
    durables = {c["durable"]: c for c in body["consumers"]}
    assert set(durables) == {c.durable for c in subjects.CONSUMERS}
    assert durables["sync-worker-requests"]["pending"] == 0
    # token-service answers token.* but not (yet) connection counts.
    assert body["connections"]["status"] == "unavailable"


async def test_background_sync_is_503_until_sync_worker_serves_it(admin: Admin) -> None:
    status, body = await admin.call("POST", "/sync/background", {"syncType": "full", "maxUsers": 5})
    assert (status, body["error"]["code"]) == (503, "unavailable")
    status, _ = await admin.call("POST", "/sync/background", {"syncType": "sometimes"})
    assert status == 400


async def test_strava_subscription_is_recorded_where_the_webhook_reads_it(admin: Admin) -> None:
    status, body = await admin.call("POST", "/strava/subscription")
    assert (status, body) == (200, {"subscription_id": 4242, "created": True})
    [ask] = admin.tokens.ensures
    assert ask.callback_url == admin.gateway.base_url + "/webhooks/strava"
    assert ask.verify_token == VERIFY_TOKEN
    kv = await admin.js.key_value("webhook_config")
    assert (await kv.get("strava.subscription_id")).value == b"4242"
    status, body = await admin.call("POST", "/strava/subscription")
    assert body == {"subscription_id": 4242, "created": False}
    # The webhook route now accepts events of that subscription.
    event = {
        "aspect_type": "create",
        "event_time": 1_700_000_000,
        "object_id": 1,
        "object_type": "activity",
        "owner_id": 7,
        "subscription_id": 4242,
        "updates": {},
    }
    resp = await admin.gateway.client.post("/webhooks/strava", json=event)
    assert resp.status == 200, await resp.text()


async def test_dead_letters_list_and_replay_by_sequence(admin: Admin) -> None:
    first, second = await admin.dead_letter(1), await admin.dead_letter(2)
    status, body = await admin.call("GET", "/dead-letters")
    assert status == 200
    letters = body["dead_letters"]
    assert [d["sequence"] for d in letters] == [first, second]
    assert letters[0]["original_subject"] == "sync.requested.strava"
    assert letters[0]["error"]["message"] == "athlete not found"
    assert letters[0]["body"]["request_id"] == "r-1"

    status, body = await admin.call("POST", "/dead-letters/replay", {"sequences": [first, 999]})
    assert status == 200
    assert body["missing"] == [999]
    [replayed] = body["replayed"]
    assert replayed["subject"] == "sync.requested.strava"
    original = await admin.js.get_msg(subjects.SYNC.name, replayed["new_sequence"])
    assert json.loads(original.data or b"")["request_id"] == "r-1"
    with pytest.raises(NotFoundError):
        await admin.js.get_msg(subjects.DLQ.name, first)
    status, body = await admin.call("POST", "/dead-letters/replay", {"subject": "dlq.sync.>"})
    assert [r["sequence"] for r in body["replayed"]] == [second]
    status, body = await admin.call("GET", "/dead-letters")
    assert body["dead_letters"] == []


async def test_replay_body_and_filter_are_validated(admin: Admin) -> None:
    bodies: list[Json] = [
        {},
        {"sequences": []},
        {"sequences": [1], "subject": "dlq.>"},
        {"subject": "x"},
    ]
    for body in bodies:
        status, _ = await admin.call("POST", "/dead-letters/replay", body)
        assert status == 400, body
    for subject in ("sync.>", "dlq.a>b", "dlq..x", "dlq.>.x"):
        resp = await admin.gateway.client.get(
            ADMIN + "/dead-letters",
            params={"subject": subject},
            headers=admin.gateway.auth("ops", admin=True),
        )
        assert resp.status == 400, subject
