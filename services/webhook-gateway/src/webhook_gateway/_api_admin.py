"""Admin routes of the app API (admin scope): overview, background sync, Strava push
subscription, dead letters and their replay."""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp import web
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError as JsNotFound
from syncplane_common import dlq, rpc, subjects
from syncplane_common.contracts import (
    BackgroundSyncRun,
    ConnectionsStats,
    StravaSubscriptionEnsure,
    StravaSubscriptionEnsureReply,
)
from syncplane_common.errors import RetryableError

from webhook_gateway._api_models import (
    BackgroundSyncBody,
    ConsumerStats,
    DeadLetters,
    DeadLettersQuery,
    DeadLetterView,
    Overview,
    OwnerObject,
    ReplayBody,
    Replayed,
    ReplayResult,
    StreamStats,
    SubscriptionResult,
)
from webhook_gateway.context import Gateway
from webhook_gateway.responses import error_response
from webhook_gateway.routes import Call, Reply, Route, ask_owner, bus_errors

CONNECTIONS_STATS = subjects.CONNECTIONS_STATS
SYNC_BACKGROUND_RUN = subjects.SYNC_BACKGROUND_RUN
ADMIN = "/api/v1/admin"
WEBHOOK_CONFIG_BUCKET = "webhook_config"
STRAVA_SUBSCRIPTION_KEY = "strava.subscription_id"
# Strava validates the callback (a GET on our /webhooks/strava) before it answers
# token-service, so this request takes a round trip longer than the others.
SUBSCRIPTION_WAIT_SECONDS = 20.0


def _json(model: Any, status: int = 200) -> web.Response:
    return web.json_response(model.model_dump(mode="json"), status=status)


# -- overview ------------------------------------------------------------------------------


async def _stream_stats(js: JetStreamContext, name: str) -> StreamStats:
    try:
        info = await js.stream_info(name)
    except JsNotFound:
        return StreamStats(status="missing")
    return StreamStats(
        messages=info.state.messages, bytes=info.state.bytes, consumers=info.state.consumer_count
    )


async def _consumer_stats(js: JetStreamContext, item: subjects.ConsumerDef) -> ConsumerStats:
    stats = ConsumerStats(stream=item.stream, durable=item.durable, service=item.service)
    try:
        info = await js.consumer_info(item.stream, item.durable)
    except JsNotFound:
        return stats.model_copy(update={"status": "missing"})
    return stats.model_copy(
        update={
            "pending": info.num_pending,
            "ack_pending": info.num_ack_pending,
            "redelivered": info.num_redelivered,
        }
    )


async def admin_overview(call: Call) -> web.StreamResponse:
    with bus_errors("JetStream"):
        js = call.gateway.runtime.jetstream()
        streams = {s.name: await _stream_stats(js, s.name) for s in subjects.STREAMS}
        consumers = [await _consumer_stats(js, item) for item in subjects.CONSUMERS]
    try:
        connections: dict[str, Any] = await ask_owner(call, CONNECTIONS_STATS, ConnectionsStats())
    except RetryableError as err:
        connections = {"status": "unavailable", "message": err.message}
    overview = Overview(
        streams=streams,
        consumers=consumers,
        dead_letters=streams[subjects.DLQ.name].messages,
        connections=connections,
    )
    return _json(overview)


# -- background sync -----------------------------------------------------------------------


async def admin_background_sync(call: Call) -> web.StreamResponse:
    # sync-worker owns the due list (it claims due connections itself), so the gateway can
    # only ask it to run a pass now; until it serves sync.background.run this is 503.
    body = call.body(BackgroundSyncBody)
    message = BackgroundSyncRun(sync_type=body.sync_type, max_users=body.max_users)
    return web.json_response(await ask_owner(call, SYNC_BACKGROUND_RUN, message), status=202)


# -- Strava push subscription --------------------------------------------------------------


async def admin_strava_subscription(call: Call) -> web.StreamResponse:
    settings = call.gateway.settings
    if not settings.strava_webhook_verify_token:
        return error_response(
            503, "unavailable", "STRAVA_WEBHOOK_VERIFY_TOKEN is not set on the gateway"
        )
    return _json(await ensure_strava_subscription(call.gateway))


async def ensure_strava_subscription(gateway: Gateway) -> SubscriptionResult:
    """Ask token-service for the subscription, then record its id where the webhook route
    reads it (the API route and the console's action both come here)."""
    settings = gateway.settings
    ensure = StravaSubscriptionEnsure(
        callback_url=f"{settings.public_base_url.rstrip('/')}/webhooks/strava",
        verify_token=settings.strava_webhook_verify_token,
    )
    with bus_errors(subjects.STRAVA_SUBSCRIPTION_ENSURE):
        reply = await rpc.request(
            gateway.broker,
            subjects.STRAVA_SUBSCRIPTION_ENSURE,
            ensure,
            StravaSubscriptionEnsureReply,
            wait=SUBSCRIPTION_WAIT_SECONDS,
        )
    if reply.subscription_id is None:
        raise RetryableError("token-service answered without a subscription id")
    with bus_errors(f"KV {WEBHOOK_CONFIG_BUCKET}"):
        kv = await gateway.runtime.jetstream().key_value(WEBHOOK_CONFIG_BUCKET)
        await kv.put(STRAVA_SUBSCRIPTION_KEY, str(reply.subscription_id).encode())
    return SubscriptionResult(subscription_id=reply.subscription_id, created=reply.created)


# -- dead letters --------------------------------------------------------------------------


def _view(letter: dlq.DeadLetter) -> DeadLetterView:
    body: Any = None
    body_base64 = None
    try:
        body = json.loads(letter.data)
    except ValueError:
        body_base64 = base64.b64encode(letter.data).decode()
    return DeadLetterView(
        sequence=letter.sequence,
        subject=letter.subject,
        original_subject=letter.original_subject,
        error=letter.error,
        consumer=letter.headers.get(dlq.H_CONSUMER),
        failed_at=letter.headers.get(dlq.H_FAILED_AT),
        body=body,
        body_base64=body_base64,
    )


async def admin_dead_letters(call: Call) -> web.StreamResponse:
    query = call.query(DeadLettersQuery)
    with bus_errors("DLQ"):
        letters = await _dead_letters(call.gateway.runtime.jetstream(), query.subject, query.limit)
    return _json(DeadLetters(dead_letters=[_view(letter) for letter in letters]))


async def _dead_letters(js: JetStreamContext, subject: str, limit: int) -> list[dlq.DeadLetter]:
    # Listing waits out a fetch timeout once it runs dry; the usual case (an empty DLQ,
    # or fewer letters than the limit) need not wait for it.
    stored = (await js.stream_info(subjects.DLQ.name)).state.messages
    if stored == 0:
        return []
    return await dlq.list_dead_letters(js, subject, min(limit, stored))


async def _letter(js: JetStreamContext, sequence: int) -> dlq.DeadLetter | None:
    try:
        raw = await js.get_msg(subjects.DLQ.name, sequence)
    except JsNotFound:
        return None
    subject = raw.subject or ""
    headers = dict(raw.headers or {})
    original = headers.get(dlq.H_ORIGINAL_SUBJECT)
    if not original:
        if not subject.startswith("dlq."):
            return None
        original = subjects.original_of_dead_letter(subject)
    return dlq.DeadLetter(sequence, subject, original, headers, raw.data or b"")


async def admin_replay(call: Call) -> web.StreamResponse:
    body = call.body(ReplayBody)
    replayed: list[Replayed] = []
    missing: list[int] = []
    with bus_errors("DLQ replay"):
        js = call.gateway.runtime.jetstream()
        if body.sequences is not None:
            letters = []
            for sequence in dict.fromkeys(body.sequences):
                letter = await _letter(js, sequence)
                if letter is None:
                    missing.append(sequence)
                else:
                    letters.append(letter)
        else:
            letters = await _dead_letters(js, body.subject or "dlq.>", body.limit)
        for letter in letters:
            new_sequence = await dlq.replay(js, letter, now=call.clock.now())
            replayed.append(
                Replayed(
                    sequence=letter.sequence,
                    subject=letter.original_subject,
                    new_sequence=new_sequence,
                )
            )
    return _json(ReplayResult(replayed=replayed, missing=missing))


# -- the table -----------------------------------------------------------------------------

ROUTES = (
    Route(
        "GET",
        ADMIN + "/overview",
        admin_overview,
        "Streams, consumer lag, dead letters and connection counts",
        access="admin",
        tag="admin",
        subject=CONNECTIONS_STATS,
        description="From the JetStream API; `connections` from token-service on "
        f"`{CONNECTIONS_STATS}`, or `{{status: unavailable}}` while it does not answer.",
        replies=(Reply(200, "The overview", Overview),),
    ),
    Route(
        "POST",
        ADMIN + "/sync/background",
        admin_background_sync,
        "Run a background sync pass now",
        access="admin",
        tag="admin",
        body_model=BackgroundSyncBody,
        subject=SYNC_BACKGROUND_RUN,
        description="sync-worker owns the due list; this asks it on "
        f"`{SYNC_BACKGROUND_RUN}` and passes its reply through. 503 `unavailable` until "
        "sync-worker serves that subject.",
        replies=(Reply(202, "Accepted by sync-worker", OwnerObject),),
    ),
    Route(
        "POST",
        ADMIN + "/strava/subscription",
        admin_strava_subscription,
        "Create or confirm Strava's push subscription",
        access="admin",
        tag="admin",
        subject=subjects.STRAVA_SUBSCRIPTION_ENSURE,
        description="Asks token-service for the subscription with callback "
        "`{PUBLIC_BASE_URL}/webhooks/strava` and STRAVA_WEBHOOK_VERIFY_TOKEN, then records "
        f"its id in KV `{WEBHOOK_CONFIG_BUCKET}` key `{STRAVA_SUBSCRIPTION_KEY}`, where the "
        "webhook route reads it. 503 while token-service is not running.",
        replies=(Reply(200, "The subscription", SubscriptionResult),),
    ),
    Route(
        "GET",
        ADMIN + "/dead-letters",
        admin_dead_letters,
        "List dead letters (without consuming them)",
        access="admin",
        tag="admin",
        query_model=DeadLettersQuery,
        replies=(Reply(200, "Dead letters, oldest first", DeadLetters),),
    ),
    Route(
        "POST",
        ADMIN + "/dead-letters/replay",
        admin_replay,
        "Replay dead letters onto their original subjects",
        access="admin",
        tag="admin",
        body_model=ReplayBody,
        description="By stream sequence (`sequences`) or by filter (`subject`, `limit`); "
        "each replayed letter is removed from the DLQ.",
        replies=(Reply(200, "What was replayed", ReplayResult),),
    ),
)
