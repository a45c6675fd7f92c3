"""The provider sandbox itself delivers to the real gateway: WHOOP webhooks signed by the
sandbox (its faults included: duplicates, bad signatures, stale timestamps) and Strava's
subscription handshake followed by its events, all landing on WEBHOOKS verified."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from nats.js import JetStreamContext
from provider_sandbox.app import create_app
from provider_sandbox.config import AppCredentials, SandboxConfig
from syncplane_devstack.embedded import EmbeddedNats

from tests.integration.gateway_webhooks_support import (
    VERIFY_TOKEN,
    WHOOP_SECRET,
    Served,
    Stored,
    delta,
    outcomes,
    record_subscription,
    rejections,
    serve_gateway,
)

pytestmark = pytest.mark.integration

Sandbox = TestClient[web.Request, web.Application]
STRAVA = AppCredentials("12345", "strava-app-secret")


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    config = SandboxConfig(
        strava=STRAVA, whoop=AppCredentials("whoop-client", WHOOP_SECRET), seed=11
    )
    async with TestClient(TestServer(create_app(config))) as client:
        yield client


@pytest.fixture
async def gw(js: JetStreamContext, nats_server: EmbeddedNats) -> AsyncIterator[Served]:
    async with serve_gateway(nats_server.url, js) as served:
        yield served


async def call(sandbox: Sandbox, method: str, path: str, **kwargs: Any) -> Any:
    resp = await sandbox.request(method, path, **kwargs)
    assert resp.status < 300, await resp.text()
    return await resp.json()


async def wait_stored(
    gw: Served, done: Callable[[list[Stored]], bool], within: float = 10.0
) -> list[Stored]:
    deadline = time.monotonic() + within
    while True:
        stored = await gw.stored()
        if done(stored):
            return stored
        assert time.monotonic() < deadline, f"stream holds {[s.msg_id for s in stored]}"
        await asyncio.sleep(0.05)


async def whoop_deliveries(sandbox: Sandbox) -> list[dict[str, Any]]:
    body = await call(sandbox, "GET", "/_sandbox/whoop/webhook")
    deliveries: list[dict[str, Any]] = body["deliveries"]
    return deliveries


async def test_sandbox_whoop_webhooks_land_verified(sandbox: Sandbox, gw: Served) -> None:
    await call(sandbox, "PUT", "/_sandbox/whoop/webhook", json={"url": gw.url("/webhooks/whoop")})
    seeded = await call(
        sandbox, "POST", "/_sandbox/whoop/seed", json={"users": 1, "days": 0, "tokens": True}
    )
    user = seeded["users"][0]["user_id"]
    before = outcomes("whoop")
    sent: list[dict[str, Any]] = []
    for kind in ("sleep", "recovery", "workout"):
        created = await call(
            sandbox, "POST", f"/_sandbox/whoop/users/{user}/{kind}", json={"generate": 1}
        )
        sent += created["events"]
    assert {e["type"] for e in sent} >= {"sleep.updated", "recovery.updated", "workout.updated"}
    stored = await wait_stored(gw, lambda s: len(s) == len(sent))
    assert sorted((s.envelope.attributes["type"], s.envelope.object_id) for s in stored) == sorted(
        (e["type"], e["id"]) for e in sent
    )
    for item in stored:
        envelope = item.envelope
        assert item.subject == f"webhook.received.whoop.{envelope.kind}"
        assert item.msg_id == envelope.event_id
        assert envelope.owner_id == str(user)
        assert envelope.attributes["trace_id"] in {e["trace_id"] for e in sent}
    assert delta(outcomes("whoop"), before) == {"accepted": len(sent)}
    outcomes_seen = Counter(d["outcome"] for d in await whoop_deliveries(sandbox))
    assert outcomes_seen == {"status_200": len(sent)}


async def test_sandbox_whoop_faults_dedupe_or_are_refused_then_retried(
    sandbox: Sandbox, gw: Served
) -> None:
    await call(sandbox, "PUT", "/_sandbox/whoop/webhook", json={"url": gw.url("/webhooks/whoop")})
    seeded = await call(
        sandbox, "POST", "/_sandbox/whoop/seed", json={"users": 1, "days": 0, "tokens": True}
    )
    user = seeded["users"][0]["user_id"]
    before, refused = outcomes("whoop"), rejections("whoop")

    # Every event delivered twice (same trace id): stored once, the copy answered 200.
    await call(sandbox, "POST", "/_sandbox/whoop/config", json={"webhook_duplicate_rate": 1.0})
    await call(sandbox, "POST", f"/_sandbox/whoop/users/{user}/workout", json={"generate": 1})
    await wait_stored(gw, lambda s: len(s) == 1)
    deadline = time.monotonic() + 5
    while len(await whoop_deliveries(sandbox)) < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)

    # Signed with the wrong key, then signed too long ago: refused, nothing stored...
    await call(
        sandbox,
        "POST",
        "/_sandbox/whoop/config",
        json={"webhook_duplicate_rate": 0.0, "webhook_bad_signature_rate": 1.0},
    )
    await call(sandbox, "POST", f"/_sandbox/whoop/users/{user}/workout", json={"generate": 1})
    await call(
        sandbox,
        "POST",
        "/_sandbox/whoop/config",
        json={"webhook_bad_signature_rate": 0.0, "webhook_stale_timestamp_rate": 1.0},
    )
    await call(sandbox, "POST", f"/_sandbox/whoop/users/{user}/sleep", json={"generate": 1})
    deadline = time.monotonic() + 5
    while len(await whoop_deliveries(sandbox)) < 4:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert len(await gw.stored()) == 1
    # ... until WHOOP's retry (60 s later on the sandbox's clock) is signed properly.
    await call(sandbox, "POST", "/_sandbox/whoop/config", json={"webhook_stale_timestamp_rate": 0})
    await call(sandbox, "POST", "/_sandbox/clock/advance", json={"seconds": 60})
    await wait_stored(gw, lambda s: len(s) == 3)
    log = [d["outcome"] for d in await whoop_deliveries(sandbox)]
    assert Counter(log) == {"status_200": 4, "status_401": 2}
    assert delta(outcomes("whoop"), before) == {"accepted": 3, "duplicate": 1, "rejected": 2}
    assert delta(rejections("whoop"), refused) == {"signature": 1, "timestamp": 1}


async def test_sandbox_strava_subscription_and_events(sandbox: Sandbox, gw: Served) -> None:
    # What the admin route and token-service do together: create the subscription (the
    # sandbox validates our callback synchronously), then record the id Strava accepted.
    created = await call(
        sandbox,
        "POST",
        "/strava/api/v3/push_subscriptions",
        data={
            "client_id": STRAVA.client_id,
            "client_secret": STRAVA.client_secret,
            "callback_url": gw.url("/webhooks/strava"),
            "verify_token": VERIFY_TOKEN,
        },
    )
    await record_subscription(gw.js, created["id"])
    await call(sandbox, "POST", "/_sandbox/strava/config", json={"big_ids": True})
    seeded = await call(
        sandbox, "POST", "/_sandbox/strava/seed", json={"athletes": 1, "tokens": True}
    )
    athlete = seeded["athletes"][0]["id"]
    activities = await call(
        sandbox, "POST", f"/_sandbox/strava/athletes/{athlete}/activities", json={"generate": 3}
    )
    ids = {str(a["id"]) for a in activities["activities"]}
    assert any(int(i) > 2**53 for i in ids)
    stored = await wait_stored(gw, lambda s: len(s) == 3)
    assert {s.envelope.object_id for s in stored} == ids
    for item in stored:
        assert item.subject == "webhook.received.strava.activity"
        assert item.envelope.owner_id == str(athlete)
        assert item.envelope.action == "create"
        assert item.envelope.attributes["subscription_id"] == str(created["id"])
    await call(sandbox, "POST", f"/_sandbox/strava/athletes/{athlete}/deauthorize")
    stored = await wait_stored(gw, lambda s: len(s) == 4)
    assert stored[-1].subject == "webhook.received.strava.athlete"
    assert stored[-1].envelope.attributes["updates"] == {"authorized": "false"}
