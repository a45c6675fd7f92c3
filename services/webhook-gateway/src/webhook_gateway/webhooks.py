"""Provider webhooks onto JetStream (issue 5): Strava, WHOOP, Google Calendar push.

Each route verifies what its provider can prove (PROVIDERS.md §3.4, §7.4, §5.4), wraps
the event in a ``WebhookReceived`` with a deterministic id, and answers 2xx only after
JetStream's PubAck (a duplicate PubAck too: the event is already stored). Anything that
stops short of that is a JSON error with a counted reason; 503 when the bus is down, so
the provider retries and the retry dedupes. The checks live in ``providers/``; shared
plumbing in ``_webhook_intake``; registered channels and the Strava subscription id are
read from KV buckets via ``_webhook_kv``.

    POST|GET /webhooks/strava          → webhook.received.strava.<activity|athlete>
    POST     /webhooks/whoop           → webhook.received.whoop.<recovery|sleep|workout|cycle>
    POST     /webhooks/google/calendar → webhook.received.gcal.events
"""

from __future__ import annotations

import json

from aiohttp import web
from syncplane_common import subjects
from syncplane_common.clock import Clock, SystemClock
from syncplane_common.contracts import WebhookReceived

from webhook_gateway import metrics
from webhook_gateway._webhook_intake import (
    BusPublisher,
    Rejected,
    guarded,
    read_body,
    require_json,
)
from webhook_gateway._webhook_kv import KvCache, KvUnavailable
from webhook_gateway.context import Gateway
from webhook_gateway.metrics import WebhookProvider
from webhook_gateway.providers import gcal_push, strava_webhooks, whoop_webhooks

STRAVA_PATH = "/webhooks/strava"
WHOOP_PATH = "/webhooks/whoop"
GCAL_PATH = "/webhooks/google/calendar"

# Written by the admin route that creates the subscription (the id Strava accepted).
STRAVA_SUBSCRIPTION_KEY = "strava.subscription_id"


def _bucket(name: str) -> str:
    if name not in {bucket.name for bucket in subjects.BUCKETS}:
        raise LookupError(f"no KV bucket {name!r} in subjects.BUCKETS")
    return name


WEBHOOK_CONFIG_BUCKET = _bucket("webhook_config")
GCAL_CHANNELS_BUCKET = _bucket("gcal_channels")


def subscription_id_of(raw: bytes | None) -> str | None:
    """The recorded id: a decimal string (tolerating JSON quotes or ``{"id": ...}``)."""
    if raw is None:
        return None
    text = raw.decode(errors="replace").strip()
    if text.startswith("{"):
        try:
            record = json.loads(text)
        except ValueError:
            return None
        value = record.get("subscription_id", record.get("id"))
        return None if value is None else str(value)
    return text.strip('"') or None


class Webhooks:
    def __init__(self, gateway: Gateway, clock: Clock) -> None:
        settings = gateway.settings
        self.gateway = gateway
        self.settings = settings
        self.clock = clock
        self.bus = BusPublisher(gateway.broker)
        jetstream = gateway.runtime.jetstream
        self.config = KvCache(
            jetstream,
            WEBHOOK_CONFIG_BUCKET,
            ttl=settings.channel_cache_seconds,
            clock=clock,
            timeout=settings.publish_timeout_seconds,
        )
        self.channels = KvCache(
            jetstream,
            GCAL_CHANNELS_BUCKET,
            ttl=settings.channel_cache_seconds,
            clock=clock,
            timeout=settings.publish_timeout_seconds,
        )

    def use_clock(self, clock: Clock) -> None:
        """Swap the clock (``build()`` gives the system clock; tests a ManualClock)."""
        self.clock = self.config.clock = self.channels.clock = clock

    def register(self, app: web.Application) -> None:
        router = app.router
        router.add_route("*", STRAVA_PATH, guarded("strava", {"GET", "POST"}, self.strava))
        router.add_route("*", WHOOP_PATH, guarded("whoop", {"POST"}, self.whoop))
        router.add_route("*", GCAL_PATH, guarded("gcal", {"POST"}, self.gcal))

    # -- routes ------------------------------------------------------------------------

    async def strava(self, request: web.Request) -> web.StreamResponse:
        if request.method == "GET":
            answer = strava_webhooks.answer_handshake(
                request.query, self.settings.strava_webhook_verify_token
            )
            metrics.webhook_outcome("strava", "handshake")
            return web.json_response(answer)
        require_json(request)
        event = strava_webhooks.parse_event(await self._body(request))
        await self._check_strava_subscription(event.subscription_id)
        return await self._deliver("strava", strava_webhooks.envelope(event, self.clock.now()))

    async def whoop(self, request: web.Request) -> web.StreamResponse:
        require_json(request)
        body = await self._body(request)
        now = self.clock.now()
        whoop_webhooks.verify(
            self.settings.whoop_client_secret,
            request.headers,
            body,
            now=now,
            tolerance_seconds=self.settings.whoop_webhook_tolerance_seconds,
        )
        event = whoop_webhooks.parse_event(body)
        if event.kind not in whoop_webhooks.KINDS:
            return self._ignored("whoop")
        return await self._deliver("whoop", whoop_webhooks.envelope(event, now))

    async def gcal(self, request: web.Request) -> web.StreamResponse:
        # Google sends an empty body typed application/json; a body is bounded, not read.
        if request.headers.get("Content-Type") and request.content_type != "application/json":
            raise Rejected("content_type", "a push notification is application/json or untyped")
        await self._body(request)
        push = gcal_push.parse_headers(request.headers)
        now = self.clock.now()
        if push.resource_state == gcal_push.SYNC:
            # The sync message can beat the watch call's return (and so the channel's
            # registration): nothing to do for it, only refuse one that is provably forged.
            channel = await self._channel(push.channel_id, required=False)
            if channel is not None:
                gcal_push.verify(push, channel, now=now)
            return self._ignored("gcal")
        cached = await self._channel(push.channel_id)
        try:
            channel = gcal_push.verify(push, cached, now=now)
        except Rejected:
            # Maybe the cache is behind a re-registration: one fresh read decides.
            fresh = await self._channel(push.channel_id, max_age=0)
            channel = gcal_push.verify(push, fresh, now=now)
        return await self._deliver("gcal", gcal_push.envelope(push, channel, now))

    # -- shared steps ------------------------------------------------------------------

    async def _body(self, request: web.Request) -> bytes:
        return await read_body(request, self.settings.webhook_max_body_bytes)

    async def _deliver(self, provider: WebhookProvider, envelope: WebhookReceived) -> web.Response:
        duplicate = await self.bus.publish(
            envelope, ack_timeout=self.settings.publish_timeout_seconds
        )
        outcome: metrics.WebhookOutcome = "duplicate" if duplicate else "accepted"
        metrics.webhook_outcome(provider, outcome)
        return web.json_response({"status": outcome, "event_id": envelope.event_id})

    def _ignored(self, provider: WebhookProvider) -> web.Response:
        metrics.webhook_outcome(provider, "ignored")
        return web.json_response({"status": "ignored"})

    async def _kv_get(self, cache: KvCache, key: str, max_age: float | None) -> bytes | None:
        if not self.bus.connected():
            raise Rejected("bus_unavailable", "the event bus is unavailable; retry later")
        try:
            return await cache.get(key, max_age=max_age)
        except KvUnavailable as err:
            raise Rejected("bus_unavailable", "the event bus is unavailable; retry later") from err

    async def _accepted_subscription(self, max_age: float | None = None) -> str | None:
        recorded = subscription_id_of(
            await self._kv_get(self.config, STRAVA_SUBSCRIPTION_KEY, max_age)
        )
        return recorded or self.settings.strava_subscription_id or None

    async def _check_strava_subscription(self, subscription_id: int) -> None:
        given = str(subscription_id)
        if await self._accepted_subscription() == given:
            return
        # A subscription created a moment ago may not be in our cache yet.
        if await self._accepted_subscription(max_age=0) == given:
            return
        raise Rejected("unknown_subscription", "not our Strava push subscription")

    async def _channel(
        self, channel_id: str, *, max_age: float | None = None, required: bool = True
    ) -> gcal_push.Channel | None:
        try:
            raw = await self._kv_get(self.channels, channel_id, max_age)
        except Rejected:
            if required:
                raise
            return None
        return gcal_push.parse_channel(raw)


WEBHOOKS = web.AppKey("webhooks", Webhooks)


def setup(gateway: Gateway, clock: Clock | None = None) -> None:
    """Register the provider webhook routes on the gateway's HTTP app."""
    webhooks = Webhooks(gateway, clock or SystemClock())
    gateway.app[WEBHOOKS] = webhooks
    webhooks.register(gateway.app)
