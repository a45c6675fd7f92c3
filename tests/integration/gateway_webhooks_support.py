"""Shared by the gateway webhook tests: the real gateway (``app.build``) served in-process
over the embedded NATS, what providers send (WHOOP signatures computed here with
hmac/hashlib, independently of the gateway), and readers for the stream and counters."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from prometheus_client import REGISTRY
from syncplane_common.clock import ManualClock
from syncplane_common.contracts import WebhookReceived
from syncplane_common.dlq import MSG_ID
from syncplane_common.provision import provision_js
from syncplane_common.runtime import ServiceRuntime
from webhook_gateway.app import build
from webhook_gateway.settings import GatewaySettings
from webhook_gateway.webhooks import WEBHOOKS

Client = TestClient[web.Request, web.Application]

VERIFY_TOKEN = "strava-verify-token"
SUBSCRIPTION_ID = 4242
WHOOP_SECRET = "whoop-webhook-secret"
STREAM = "WEBHOOKS"
BASE_SETTINGS: dict[str, Any] = {
    "api_jwt_secret": "j" * 32,
    "oauth_state_secret": "s" * 32,
    "strava_webhook_verify_token": VERIFY_TOKEN,
    "whoop_client_secret": WHOOP_SECRET,
    "publish_timeout_seconds": 1.0,
    "log_level": "WARNING",
}


@dataclass
class Served:
    client: Client
    runtime: ServiceRuntime
    js: JetStreamContext
    # Started at the real time (WHOOP timestamps are signed with it) and moved by tests
    # past the gateway's KV cache and re-read intervals instead of sleeping.
    clock: ManualClock
    # Where this gateway's messages start: a stream deleted and at once recreated under
    # the same name has been seen (rarely) to come back with an earlier test's messages.
    first_seq: int

    def url(self, path: str) -> str:
        return str(self.client.make_url(path))

    async def stored(self) -> list[Stored]:
        return await stored_events(self.js, self.first_seq)


@asynccontextmanager
async def serve_gateway(
    nats_url: str, js: JetStreamContext, **overrides: Any
) -> AsyncIterator[Served]:
    """The gateway as the composition root builds it, on a loopback port."""
    await provision_js(js)
    first_seq = (await js.stream_info(STREAM)).state.last_seq + 1
    settings = GatewaySettings(nats_url=nats_url, **{**BASE_SETTINGS, **overrides})
    runtime = build(settings)
    clock = ManualClock(datetime.now(UTC))
    runtime.http[WEBHOOKS].use_clock(clock)
    await runtime.broker.start()
    try:
        async with TestClient(TestServer(runtime.http)) as client:
            yield Served(client, runtime, js, clock, first_seq)
    finally:
        await runtime.broker.stop()


async def record_subscription(js: JetStreamContext, subscription_id: int | str) -> None:
    """What the admin route does once Strava accepted the subscription."""
    kv = await js.key_value("webhook_config")
    await kv.put("strava.subscription_id", str(subscription_id).encode())


# -- what providers send -------------------------------------------------------------------

_ids = itertools.count(9_007_199_254_740_993)  # 2**53 + 1: a float would change it


def strava_event(**overrides: Any) -> dict[str, Any]:
    return {
        "aspect_type": "create",
        "event_time": int(time.time()),
        "object_id": next(_ids),
        "object_type": "activity",
        "owner_id": 2222222,
        "subscription_id": SUBSCRIPTION_ID,
        "updates": {},
        **overrides,
    }


def whoop_signature(timestamp: str, body: bytes, secret: str = WHOOP_SECRET) -> str:
    """PROVIDERS.md §7.4: base64(HMAC-SHA256(client secret, ms timestamp + raw body))."""
    mac = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def whoop_headers(
    body: bytes, *, at: float | None = None, secret: str = WHOOP_SECRET
) -> dict[str, str]:
    stamp = str(int((time.time() if at is None else at) * 1000))
    return {
        "Content-Type": "application/json",
        "X-WHOOP-Signature": whoop_signature(stamp, body, secret),
        "X-WHOOP-Signature-Timestamp": stamp,
    }


def whoop_body(kind: str = "sleep", action: str = "updated", **overrides: Any) -> bytes:
    event = {
        "user_id": 456,
        "id": f"550e8400-e29b-41d4-a716-{next(_ids) % 10**12:012d}",
        "type": f"{kind}.{action}",
        "trace_id": f"trace-{next(_ids)}",
        **overrides,
    }
    return json.dumps(event).encode()


async def register_channel(
    js: JetStreamContext,
    channel_id: str,
    *,
    token: str = "channel-token",  # noqa: S107
    user_id: str = "user-1",
    calendar_id: str = "primary",
    resource_id: str | None = "resource-1",
    expiration: int | None = None,
) -> None:
    """What calendar-sync writes after a watch call (issue 8)."""
    kv = await js.key_value("gcal_channels")
    entry = {
        "token": token,
        "user_id": user_id,
        "calendar_id": calendar_id,
        "resource_id": resource_id,
        "expiration": expiration if expiration is not None else int((time.time() + 86400) * 1000),
    }
    await kv.put(channel_id, json.dumps(entry).encode())


def gcal_headers(
    channel_id: str,
    number: int,
    *,
    state: str = "exists",
    token: str | None = "channel-token",  # noqa: S107
    resource_id: str = "resource-1",
) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json; utf-8",
        "X-Goog-Channel-ID": channel_id,
        "X-Goog-Message-Number": str(number),
        "X-Goog-Resource-ID": resource_id,
        "X-Goog-Resource-State": state,
        "X-Goog-Resource-URI": "https://www.googleapis.com/calendar/v3/calendars/primary/events",
    }
    if token is not None:
        headers["X-Goog-Channel-Token"] = token
    return headers


# -- what arrived --------------------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    subject: str
    msg_id: str
    envelope: WebhookReceived


async def stored_events(js: JetStreamContext, first_seq: int = 1) -> list[Stored]:
    """The messages on the WEBHOOKS stream from ``first_seq`` on, read without consuming."""
    try:
        state = (await js.stream_info(STREAM)).state
    except NotFoundError:
        return []
    start = max(first_seq, state.first_seq)
    total = state.last_seq - start + 1 if state.messages else 0
    if total <= 0:
        return []
    sub = await js.pull_subscribe(
        "webhook.received.>",
        stream=STREAM,
        config=ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=30,
        ),
    )
    out: list[Stored] = []
    try:
        while len(out) < total:
            for msg in await sub.fetch(min(500, total - len(out)), timeout=2):
                out.append(
                    Stored(
                        msg.subject,
                        (msg.headers or {}).get(MSG_ID, ""),
                        WebhookReceived.model_validate_json(msg.data),
                    )
                )
    finally:
        await sub.unsubscribe()
    return out


def outcomes(provider: str) -> dict[str, float]:
    names = ("accepted", "duplicate", "ignored", "handshake", "rejected")
    return {
        name: REGISTRY.get_sample_value(
            "syncplane_webhooks_total", {"provider": provider, "outcome": name}
        )
        or 0.0
        for name in names
    }


def rejections(provider: str) -> dict[str, float]:
    reasons = (
        "method",
        "content_type",
        "too_large",
        "malformed",
        "signature",
        "timestamp",
        "unknown_subscription",
        "unknown_channel",
        "bus_unavailable",
    )
    return {
        reason: REGISTRY.get_sample_value(
            "syncplane_webhook_rejections_total", {"provider": provider, "reason": reason}
        )
        or 0.0
        for reason in reasons
    }


def delta(after: Mapping[str, float], before: Mapping[str, float]) -> dict[str, float]:
    """Only the counters that moved."""
    return {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0)}
