"""Provider webhooks through the real gateway over the embedded NATS: what is accepted
lands on WEBHOOKS exactly once with a deterministic Nats-Msg-Id; every bad input is a
JSON error with its status, nothing published, a counter per reason; a 2xx only after
the PubAck (503 while the stream is missing or the server is frozen)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import ClientResponse
from faststream.nats import NatsBroker
from nats.js import JetStreamContext
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from syncplane_common import bus
from syncplane_common.clock import ManualClock
from syncplane_common.contracts import WebhookReceived
from syncplane_common.provision import provision_js
from syncplane_common.telemetry import nats_telemetry_middleware, setup_telemetry
from syncplane_devstack.embedded import EmbeddedNats
from webhook_gateway._webhook_kv import KvCache

from tests.integration.gateway_webhooks_support import (
    SUBSCRIPTION_ID,
    VERIFY_TOKEN,
    Served,
    delta,
    gcal_headers,
    outcomes,
    record_subscription,
    register_channel,
    rejections,
    serve_gateway,
    strava_event,
    whoop_body,
    whoop_headers,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def gw(js: JetStreamContext, nats_server: EmbeddedNats) -> AsyncIterator[Served]:
    async with serve_gateway(nats_server.url, js) as served:
        await record_subscription(js, SUBSCRIPTION_ID)
        yield served


async def post_strava(gw: Served, event: dict[str, Any]) -> ClientResponse:
    return await gw.client.post("/webhooks/strava", json=event)


async def error_of(resp: ClientResponse, status: int, code: str) -> None:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]


# -- Strava --------------------------------------------------------------------------------


async def test_strava_handshake(gw: Served) -> None:
    before = rejections("strava")
    started = time.monotonic()
    resp = await gw.client.get(
        "/webhooks/strava",
        params={
            "hub.mode": "subscribe",
            "hub.challenge": "c-15f7d1",
            "hub.verify_token": VERIFY_TOKEN,
        },
    )
    assert resp.status == 200
    assert time.monotonic() - started < 2.0
    assert resp.content_type == "application/json"
    assert await resp.json() == {"hub.challenge": "c-15f7d1"}
    wrong = await gw.client.get(
        "/webhooks/strava",
        params={"hub.mode": "subscribe", "hub.challenge": "c", "hub.verify_token": "guess"},
    )
    await error_of(wrong, 403, "unknown_subscription")
    assert delta(rejections("strava"), before) == {"unknown_subscription": 1}
    assert await gw.stored() == []


async def test_strava_events_land_on_their_subjects_with_exact_ids(gw: Served) -> None:
    activity = strava_event(updates={"title": "Messy"}, aspect_type="update")
    athlete = strava_event(object_type="athlete", updates={"authorized": "false"})
    athlete["owner_id"] = athlete["object_id"]
    for event in (activity, athlete):
        resp = await post_strava(gw, event)
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["status"] == "accepted"
    stored = await gw.stored()
    assert [s.subject for s in stored] == [
        "webhook.received.strava.activity",
        "webhook.received.strava.athlete",
    ]
    first = stored[0].envelope
    assert (
        stored[0].msg_id
        == first.event_id
        == (
            f"strava:{SUBSCRIPTION_ID}:activity:{activity['object_id']}:update:{activity['event_time']}"
        )
    )
    # 2**53 + n: only exact integer parsing and strings on the wire keep it.
    assert first.object_id == str(activity["object_id"])
    assert first.owner_id == "2222222"
    assert first.action == "update"
    assert first.event_time is not None
    assert int(first.event_time.timestamp()) == activity["event_time"]
    assert first.attributes == {"updates": {"title": "Messy"}, "subscription_id": "4242"}
    assert stored[1].envelope.attributes["updates"] == {"authorized": "false"}


async def test_strava_duplicate_is_200_and_stored_once(gw: Served) -> None:
    event = strava_event()
    before = outcomes("strava")
    answers = [await post_strava(gw, event) for _ in range(3)]
    assert [a.status for a in answers] == [200, 200, 200]
    assert [(await a.json())["status"] for a in answers] == ["accepted", "duplicate", "duplicate"]
    assert len(await gw.stored()) == 1
    assert delta(outcomes("strava"), before) == {"accepted": 1, "duplicate": 2}


async def test_strava_subscription_must_be_ours(gw: Served) -> None:
    before = rejections("strava")
    resp = await post_strava(gw, strava_event(subscription_id=SUBSCRIPTION_ID + 1))
    await error_of(resp, 403, "unknown_subscription")
    assert await gw.stored() == []
    # A new subscription recorded while the old id is cached is honoured at once (the
    # refused id above re-read the bucket; re-reads are at most one a second).
    await record_subscription(gw.js, 5151)
    gw.clock.advance(1.0)
    assert (await post_strava(gw, strava_event(subscription_id=5151))).status == 200
    assert (await post_strava(gw, strava_event())).status == 403
    assert delta(rejections("strava"), before) == {"unknown_subscription": 2}
    assert len(await gw.stored()) == 1


async def test_strava_subscription_setting_is_the_fallback(
    js: JetStreamContext, nats_server: EmbeddedNats
) -> None:
    async with serve_gateway(nats_server.url, js, strava_subscription_id="777") as gw:
        assert (await post_strava(gw, strava_event(subscription_id=777))).status == 200
        assert (await post_strava(gw, strava_event())).status == 403
        await record_subscription(js, SUBSCRIPTION_ID)
        gw.clock.advance(1.0)
        # The recorded id (what Strava accepted) wins over the setting.
        assert (await post_strava(gw, strava_event())).status == 200
    async with serve_gateway(nats_server.url, js) as gw:
        await (await js.key_value("webhook_config")).delete("strava.subscription_id")
        # Nothing recorded and nothing configured: nothing can be ours.
        assert (await post_strava(gw, strava_event())).status == 403


# -- bad input -----------------------------------------------------------------------------

BIG = 256 * 1024


def _chunks(total: int) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * min(64 * 1024, total - sent)
        sent += 64 * 1024


async def test_every_bad_input_is_a_counted_json_error_and_publishes_nothing(
    gw: Served,
) -> None:
    await register_channel(gw.js, "chan-bad")
    whoop_ok = whoop_body()
    stale = whoop_headers(whoop_ok, at=time.time() - 301)
    future = whoop_headers(whoop_ok, at=time.time() + 301)
    bad_sig = {**whoop_headers(whoop_ok), "X-WHOOP-Signature": "bm90IGl0"}
    unsigned = {"Content-Type": "application/json"}
    big_event = json.dumps({**strava_event(), "pad": "x" * BIG}).encode()

    async def gen() -> AsyncIterator[bytes]:
        for chunk in _chunks(BIG + 1):
            yield chunk

    c = gw.client
    cases: list[tuple[str, int, str, Any]] = [
        ("strava", 405, "method", c.put("/webhooks/strava", json=strava_event())),
        ("strava", 405, "method", c.delete("/webhooks/strava")),
        ("whoop", 405, "method", c.get("/webhooks/whoop")),
        ("gcal", 405, "method", c.get("/webhooks/google/calendar")),
        (
            "strava",
            415,
            "content_type",
            c.post("/webhooks/strava", data=b"{}", headers={"Content-Type": "text/plain"}),
        ),
        (
            "whoop",
            415,
            "content_type",
            c.post(
                "/webhooks/whoop",
                data=whoop_ok,
                headers={
                    **whoop_headers(whoop_ok),
                    "Content-Type": "application/x-www-form-urlencoded",
                },
            ),
        ),
        (
            "gcal",
            415,
            "content_type",
            c.post(
                "/webhooks/google/calendar",
                headers={**gcal_headers("chan-bad", 5), "Content-Type": "text/html"},
            ),
        ),
        (
            "strava",
            413,
            "too_large",
            c.post(
                "/webhooks/strava", data=big_event, headers={"Content-Type": "application/json"}
            ),
        ),
        (
            "strava",
            413,
            "too_large",
            c.post("/webhooks/strava", data=gen(), headers={"Content-Type": "application/json"}),
        ),
        (
            "whoop",
            413,
            "too_large",
            c.post("/webhooks/whoop", data=b"{" + b" " * BIG + b"}", headers=whoop_headers(b"")),
        ),
        (
            "strava",
            400,
            "malformed",
            c.post("/webhooks/strava", data=b"{not json", headers=unsigned),
        ),
        ("strava", 400, "malformed", c.post("/webhooks/strava", json={"object_type": "activity"})),
        (
            "strava",
            400,
            "malformed",
            c.post("/webhooks/strava", json={**strava_event(), "object_id": 1.5}),
        ),
        (
            "whoop",
            400,
            "malformed",
            c.post("/webhooks/whoop", data=b'{"id": "x"}', headers=whoop_headers(b'{"id": "x"}')),
        ),
        (
            "gcal",
            400,
            "malformed",
            c.post(
                "/webhooks/google/calendar",
                headers={
                    k: v
                    for k, v in gcal_headers("chan-bad", 5).items()
                    if k != "X-Goog-Message-Number"
                },
            ),
        ),
        ("whoop", 401, "signature", c.post("/webhooks/whoop", data=whoop_ok, headers=unsigned)),
        ("whoop", 401, "signature", c.post("/webhooks/whoop", data=whoop_ok, headers=bad_sig)),
        ("whoop", 401, "timestamp", c.post("/webhooks/whoop", data=whoop_ok, headers=stale)),
        ("whoop", 401, "timestamp", c.post("/webhooks/whoop", data=whoop_ok, headers=future)),
        (
            "gcal",
            401,
            "signature",
            c.post("/webhooks/google/calendar", headers=gcal_headers("chan-bad", 6, token="guess")),
        ),
        (
            "gcal",
            401,
            "signature",
            c.post("/webhooks/google/calendar", headers=gcal_headers("chan-bad", 7, token=None)),
        ),
        (
            "strava",
            403,
            "unknown_subscription",
            c.post("/webhooks/strava", json=strava_event(subscription_id=1)),
        ),
        (
            "gcal",
            403,
            "unknown_channel",
            c.post("/webhooks/google/calendar", headers=gcal_headers("chan-unknown", 8)),
        ),
        (
            "gcal",
            403,
            "unknown_channel",
            c.post(
                "/webhooks/google/calendar",
                headers=gcal_headers("chan-bad", 9, resource_id="someone-elses"),
            ),
        ),
    ]
    before = {p: rejections(p) for p in ("strava", "whoop", "gcal")}
    expected: dict[str, dict[str, float]] = {"strava": {}, "whoop": {}, "gcal": {}}
    for provider, status, reason, call in cases:
        resp = await call
        if status == 413:
            assert resp.status == 413
            with contextlib.suppress(Exception):  # aiohttp may cut an oversized body off
                await error_of(resp, 413, reason)
        else:
            await error_of(resp, status, reason)
        if status == 405:
            assert resp.headers["Allow"]
        expected[provider][reason] = expected[provider].get(reason, 0) + 1
    for provider, counts in expected.items():
        assert delta(rejections(provider), before[provider]) == counts, provider
    assert await gw.stored() == []
    metrics = await (await gw.client.get("/metrics")).text()
    assert 'syncplane_webhook_rejections_total{provider="whoop",reason="timestamp"}' in metrics
    assert 'syncplane_webhooks_total{outcome="rejected",provider="strava"}' in metrics


# -- WHOOP ---------------------------------------------------------------------------------


async def test_whoop_signed_events_by_kind_and_duplicates(gw: Served) -> None:
    before = outcomes("whoop")
    bodies = {kind: whoop_body(kind) for kind in ("recovery", "sleep", "workout", "cycle")}
    bodies["deleted"] = whoop_body("workout", "deleted")
    for body in bodies.values():
        resp = await gw.client.post("/webhooks/whoop", data=body, headers=whoop_headers(body))
        assert resp.status == 200, await resp.text()
    # The same delivery again (WHOOP retries with a fresh signature, same trace id).
    again = bodies["sleep"]
    resp = await gw.client.post("/webhooks/whoop", data=again, headers=whoop_headers(again))
    assert (await resp.json())["status"] == "duplicate"
    # Types we do not consume are acknowledged and dropped (PROVIDERS.md §7.6).
    other = whoop_body("body_measurement")
    resp = await gw.client.post("/webhooks/whoop", data=other, headers=whoop_headers(other))
    assert resp.status == 200
    assert (await resp.json())["status"] == "ignored"
    stored = await gw.stored()
    assert [s.subject for s in stored] == [
        "webhook.received.whoop.recovery",
        "webhook.received.whoop.sleep",
        "webhook.received.whoop.workout",
        "webhook.received.whoop.cycle",
        "webhook.received.whoop.workout",
    ]
    sleep = json.loads(bodies["sleep"])
    envelope = stored[1].envelope
    assert (
        stored[1].msg_id
        == envelope.event_id
        == (f"whoop:sleep.updated:{sleep['id']}:{sleep['trace_id']}")
    )
    assert (envelope.object_id, envelope.owner_id, envelope.action) == (
        sleep["id"],
        "456",
        "updated",
    )
    assert envelope.attributes == {"trace_id": sleep["trace_id"], "type": "sleep.updated"}
    assert stored[4].envelope.action == "deleted"
    assert delta(outcomes("whoop"), before) == {"accepted": 5, "duplicate": 1, "ignored": 1}


# -- Google Calendar push ------------------------------------------------------------------


async def test_gcal_push_verified_against_the_registered_channel(gw: Served) -> None:
    await register_channel(gw.js, "chan-1", user_id="u-7", calendar_id="work@example.com")
    before = outcomes("gcal")
    sync = await gw.client.post(
        "/webhooks/google/calendar", headers=gcal_headers("chan-1", 1, state="sync")
    )
    assert sync.status == 200
    assert (await sync.json())["status"] == "ignored"
    # A sync for a channel not registered yet (it may beat the watch call) is fine too.
    early = await gw.client.post(
        "/webhooks/google/calendar", headers=gcal_headers("chan-new", 1, state="sync")
    )
    assert early.status == 200
    assert await gw.stored() == []
    for number in (3, 3, 17):
        resp = await gw.client.post(
            "/webhooks/google/calendar", headers=gcal_headers("chan-1", number)
        )
        assert resp.status == 200, await resp.text()
    stored = await gw.stored()
    assert [s.msg_id for s in stored] == ["gcal:chan-1:3", "gcal:chan-1:17"]
    envelope = stored[0].envelope
    assert stored[0].subject == "webhook.received.gcal.events"
    assert (envelope.provider, envelope.kind, envelope.action) == ("gcal", "events", "exists")
    assert envelope.attributes == {
        "channel_id": "chan-1",
        "resource_id": "resource-1",
        "message_number": 3,
        "user_id": "u-7",
        "calendar_id": "work@example.com",
    }
    assert delta(outcomes("gcal"), before) == {"ignored": 2, "accepted": 2, "duplicate": 1}


async def test_gcal_channel_token_rotation_is_seen_through_the_cache(gw: Served) -> None:
    await register_channel(gw.js, "chan-2", token="old")
    assert (
        await gw.client.post(
            "/webhooks/google/calendar", headers=gcal_headers("chan-2", 2, token="old")
        )
    ).status == 200
    await register_channel(gw.js, "chan-2", token="new")
    gw.clock.advance(1.0)
    # "new" fails against the cached entry, so one fresh read decides.
    assert (
        await gw.client.post(
            "/webhooks/google/calendar", headers=gcal_headers("chan-2", 3, token="new")
        )
    ).status == 200
    expired = int((time.time() - 60) * 1000)
    await register_channel(gw.js, "chan-3", expiration=expired)
    resp = await gw.client.post("/webhooks/google/calendar", headers=gcal_headers("chan-3", 4))
    await error_of(resp, 403, "unknown_channel")
    assert len(await gw.stored()) == 2


# -- the ack rule --------------------------------------------------------------------------


async def test_no_stream_no_2xx(gw: Served) -> None:
    """Without a PubAck there is no 2xx: with the stream gone a publish cannot be stored."""
    before = rejections("strava")
    await gw.js.delete_stream("WEBHOOKS")
    event = strava_event()
    resp = await post_strava(gw, event)
    await error_of(resp, 503, "bus_unavailable")
    assert delta(rejections("strava"), before) == {"bus_unavailable": 1}
    await provision_js(gw.js)
    assert (await post_strava(gw, event)).status == 200
    assert len(await gw.stored()) == 1


@contextlib.contextmanager
def frozen(server: EmbeddedNats) -> Iterator[None]:
    """A nats-server that accepts bytes but answers nothing: a slow bus, at its worst."""
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.pid, signal.SIGCONT)


async def test_slow_bus_is_503_and_the_retry_dedupes(
    js: JetStreamContext, nats_server: EmbeddedNats
) -> None:
    async with serve_gateway(nats_server.url, js, publish_timeout_seconds=0.3) as gw:
        await record_subscription(js, SUBSCRIPTION_ID)
        assert (await post_strava(gw, strava_event())).status == 200  # subscription cached
        event = strava_event()
        with frozen(nats_server):
            started = time.monotonic()
            resp = await post_strava(gw, event)
            waited = time.monotonic() - started
        await error_of(resp, 503, "bus_unavailable")
        # Bounded by the 0.3 s publish timeout, with slack for a loaded 2-core CI machine:
        # the point is that a stuck bus answers 503 instead of hanging the provider.
        assert waited < 3.0
        # The frozen publish may still be stored once the server wakes up; the provider's
        # retry carries the same id, so either way the event is there exactly once.
        deadline = time.monotonic() + 15
        while (resp := await post_strava(gw, event)).status != 200:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        ids = [s.msg_id for s in await gw.stored()]
        assert len(ids) == len(set(ids)) == 2


# -- what consumers get --------------------------------------------------------------------


async def test_a_webhook_reaches_a_durable_consumer_in_one_trace(
    js: JetStreamContext, nats_server: EmbeddedNats
) -> None:
    """The envelope decodes as the consumers' FastStream subscribers decode it, and the
    consumer's span continues the trace the webhook request started."""
    spans = InMemorySpanExporter()
    provider = setup_telemetry(
        "webhook-trace-test", "none", "http://127.0.0.1:4318", span_exporter=spans
    )
    received: asyncio.Queue[WebhookReceived] = asyncio.Queue()
    consumer = NatsBroker(nats_server.url, middlewares=[nats_telemetry_middleware(provider)])

    async def handle(event: WebhookReceived) -> None:
        await received.put(event)

    bus.durable_subscriber(consumer, "calendar-sync-webhooks")(handle)

    async with serve_gateway(nats_server.url, js) as gw:
        await register_channel(js, "chan-trace", user_id="u-trace", calendar_id="cal-9")
        await consumer.start()
        try:
            resp = await gw.client.post(
                "/webhooks/google/calendar", headers=gcal_headers("chan-trace", 5)
            )
            assert resp.status == 200
            event = await asyncio.wait_for(received.get(), 10)
        finally:
            await consumer.stop()
    assert event.event_id == "gcal:chan-trace:5"
    assert (event.provider, event.kind, event.object_id) == ("gcal", "events", "cal-9")
    assert event.attributes["user_id"] == "u-trace"
    [server] = [
        s
        for s in spans.get_finished_spans()
        if s.kind is SpanKind.SERVER and "/webhooks/google/calendar" in str(s.attributes)
    ]
    consumers = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CONSUMER]
    assert server.context is not None
    assert server.context.trace_id in {s.context.trace_id for s in consumers if s.context}


async def test_kv_cache_keeps_values_for_its_ttl_and_rereads_on_demand(
    js: JetStreamContext,
) -> None:
    await provision_js(js)
    kv = await js.key_value("gcal_channels")
    await kv.put("chan-cache", b"v1")
    clock = ManualClock()
    cache = KvCache(lambda: js, "gcal_channels", ttl=30, clock=clock)
    assert await cache.get("chan-cache") == b"v1"
    await kv.put("chan-cache", b"v2")
    assert await cache.get("chan-cache") == b"v1"  # cached
    assert await cache.get("chan-cache", max_age=0) == b"v1"  # re-read at most once a second
    clock.advance(1)
    assert await cache.get("chan-cache", max_age=0) == b"v2"
    await kv.delete("chan-cache")
    clock.advance(29.5)
    assert await cache.get("chan-cache") == b"v2"
    clock.advance(1)
    assert await cache.get("chan-cache") is None
    # Keys no one could have written (they come from request headers) are simply absent.
    assert await cache.get("no spaces * allowed >") is None
    assert await KvCache(lambda: js, "no_such_bucket", ttl=0, clock=clock).get("k") is None
    cold = KvCache(lambda: js, "gcal_channels", ttl=30, clock=clock)
    await kv.put("chan-burst", b"v")
    assert await asyncio.gather(*(cold.get("chan-burst") for _ in range(20))) == [b"v"] * 20
