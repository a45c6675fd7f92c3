"""sync-worker's subjects: three durable consumers (sync requests, webhooks, connection
lifecycle) and three request/reply subjects (queue group ``sync-worker``). Thin: parse
(the contracts do), call the engine or the store, answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta

from faststream.nats import NatsBroker
from faststream.nats.annotations import NatsMessage
from syncplane_common import bus, rpc, subjects
from syncplane_common.contracts import (
    ConnectionEvent,
    DataQuery,
    DataReply,
    SyncRequested,
    SyncSessionGet,
    SyncSessionReply,
    SyncStatusGet,
    SyncStatusReply,
    WebhookReceived,
)
from syncplane_common.errors import PermanentError, RetryableError

from sync_worker import queries, sync_state
from sync_worker.engine import Cancelled, Deferred, Engine
from sync_worker.sessions import Session

log = logging.getLogger(__name__)

QUEUE = "sync-worker"
REQUESTS_DURABLE = "sync-worker-requests"
WEBHOOKS_DURABLE = "sync-worker-webhooks"
LIFECYCLE_DURABLE = "sync-worker-lifecycle"


@dataclass
class Worker:
    """What the handlers need once the process is up (built in ``app.start``)."""

    engine: Engine
    heartbeat_seconds: float
    max_deliver: int
    intervals: dict[str, int]
    delete_data_on_revoke: bool
    # Freshness per (provider, data type) for smart reads and status (settings).
    thresholds: dict[tuple[str, str], float] = field(default_factory=dict)
    flights: queries.Flights = field(default_factory=queries.Flights)
    answered: queries.Answered = field(default_factory=queries.Answered)

    @property
    def freshness(self) -> queries.Freshness:
        return queries.Freshness(self.thresholds, self.intervals)


@contextlib.asynccontextmanager
async def heartbeat(message: NatsMessage, every: float) -> AsyncIterator[None]:
    """Tell JetStream the message is still being worked on, so a long session keeps it
    past ack_wait; a worker that dies stops beating and the message is redelivered."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await message.in_progress()
            except Exception as err:  # a missed beat is not worth failing the session
                log.warning("in_progress failed: %s", err)

    task = asyncio.get_running_loop().create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def register(
    broker: NatsBroker,
    worker: Callable[[], Worker],
    *,
    sync_concurrency: int,
    webhook_concurrency: int,
    rpc_workers: int = 16,
) -> None:
    async def sync_requested(command: SyncRequested, message: NatsMessage) -> None:
        w = worker()
        engine = w.engine
        now = engine.clock.now()
        if command.not_before is not None and command.not_before > now:
            # A continuation queued before its window opened: one delivery to wait.
            wait = (command.not_before - now).total_seconds()
            raise RetryableError("continuation not due yet", retry_after=wait)
        deliveries = message.raw_message.metadata.num_delivered
        try:
            async with heartbeat(message, w.heartbeat_seconds):
                await engine.run(command, last_delivery=deliveries >= w.max_deliver)
        except Deferred as deferred:
            await _continue_later(engine, command, deferred)
        except Cancelled as cancelled:
            log.info("session cancelled: %s", cancelled)

    async def webhook_received(event: WebhookReceived) -> None:
        w = worker()
        provider = event.provider
        source = w.engine.sources.for_webhook(provider, event.kind)
        if source is None:
            # Not ours to sync yet: refuse loudly (dead letter, replayable), never drop.
            raise PermanentError(f"no sync for {event.provider} {event.kind} webhooks")
        if event.owner_id is None or event.object_id is None:
            log.warning("webhook without owner or object dropped", extra={"id": event.event_id})
            return
        connection = await sync_state.by_account(w.engine.pool, provider, event.owner_id)
        if connection is None or connection.status != "active":
            # Strava does not sign events: an unknown owner is noise or forgery.
            log.info("webhook for unknown or inactive owner dropped", extra={"id": event.event_id})
            return
        await w.engine.apply_webhook(
            connection.user_id,
            source,
            event.event_id,
            event.object_id,
            # Strava says "delete", WHOOP "deleted" (and "updated" for a new record too).
            "delete" if event.action in ("delete", "deleted") else "fetch",
        )

    async def connection_changed(event: ConnectionEvent, message: NatsMessage) -> None:
        await lifecycle(worker(), message.raw_message.subject, event)

    bus.durable_subscriber(
        broker, REQUESTS_DURABLE, batch_size=sync_concurrency, max_workers=sync_concurrency
    )(sync_requested)
    bus.durable_subscriber(
        broker, WEBHOOKS_DURABLE, batch_size=webhook_concurrency, max_workers=webhook_concurrency
    )(webhook_received)
    bus.durable_subscriber(broker, LIFECYCLE_DURABLE)(connection_changed)

    async def session(ask: SyncSessionGet) -> SyncSessionReply:
        return await queries.session(worker().engine, ask)

    async def status(ask: SyncStatusGet) -> SyncStatusReply:
        w = worker()
        return await queries.status(w.engine, w.freshness, ask)

    async def data(ask: DataQuery) -> rpc.Encoded:
        w = worker()
        return await queries.data_json(w.engine, ask, w.freshness, w.flights, w.answered)

    serve = functools.partial(rpc.responder, broker, queue=QUEUE, max_workers=rpc_workers)
    serve(subjects.SYNC_SESSION_GET, SyncSessionGet, SyncSessionReply)(session)
    serve(subjects.SYNC_STATUS_GET, SyncStatusGet, SyncStatusReply)(status)
    serve(subjects.DATA_QUERY, DataQuery, DataReply)(data)


async def _continue_later(engine: Engine, command: SyncRequested, deferred: Deferred) -> None:
    """Queue the session's continuation for the window boundary, then let this message
    be acknowledged: waiting must not spend the deliveries that real failures need."""
    session: Session = deferred.session
    not_before = engine.clock.now() + timedelta(seconds=deferred.seconds)
    continuation = command.model_copy(
        update={"session_id": str(session.id), "not_before": not_before}
    )
    await engine.publish(
        continuation.subject,
        continuation,
        f"{command.request_id}:continue:{session.pages_done}:{session.retry_count}",
    )
    log.info(
        "session deferred for the rate budget",
        extra={"session_id": str(session.id), "seconds": round(deferred.seconds, 1)},
    )


async def lifecycle(w: Worker, subject: str, event: ConnectionEvent) -> None:
    """connected → register and backfill; revoked / reauth_required → stop its work."""
    engine = w.engine
    now = engine.clock.now()
    what = subject.split(".")[1]
    if what == "connected":
        every = w.intervals.get(event.provider)
        first = now + timedelta(seconds=every) if every else now + timedelta(days=3650)
        applied = await sync_state.connected(
            engine.pool,
            event.user_id,
            event.provider,
            event.provider_account_id,
            occurred_at=event.occurred_at,
            first_sync_at=first,
            now=now,
        )
        if applied and event.provider in engine.sources:
            request_id = (
                f"backfill:{event.user_id}:{event.provider}:{event.occurred_at.isoformat()}"
            )
            command = SyncRequested(
                request_id=request_id,
                user_id=event.user_id,
                provider=event.provider,
                kind="backfill",
                requested_at=now,
                priority="background",
            )
            await engine.publish(command.subject, command, request_id)
        return
    status = "revoked" if what == "revoked" else "reauth_required"
    applied = await sync_state.stopped(
        engine.pool,
        event.user_id,
        event.provider,
        status,
        event.reason,
        occurred_at=event.occurred_at,
        now=now,
    )
    if not applied:
        return
    await queries.cancel_running(engine, event.user_id, event.provider)
    if status == "revoked" and w.delete_data_on_revoke:
        await queries.purge(engine, event.user_id, event.provider)
