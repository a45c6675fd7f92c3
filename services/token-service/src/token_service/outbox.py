"""Lifecycle events (``connection.<connected|revoked|reauth_required>.<provider>``) go out
through an outbox: written in the transaction that changes the connection, published to
the EVENTS stream after it commits, retried until JetStream acknowledges them. Each row's
msg id makes a retry after a lost PubAck a duplicate the stream drops."""

from __future__ import annotations

import logging

import asyncpg
from faststream.nats import NatsBroker
from syncplane_common import bus, contracts, subjects
from syncplane_common.clock import Clock

from token_service import store

log = logging.getLogger(__name__)

BATCH = 100

_EVENTS: dict[str, type[contracts.ConnectionEvent]] = {
    "connected": contracts.ConnectionConnected,
    "revoked": contracts.ConnectionRevoked,
    "reauth_required": contracts.ConnectionReauthRequired,
}


def event_subject(event: contracts.ConnectionEvent) -> str:
    for what, model in _EVENTS.items():
        if type(event) is model:
            return subjects.connection_event(what, event.provider)  # type: ignore[arg-type]
    raise TypeError(f"not a lifecycle event: {type(event).__name__}")


async def enqueue(tx: store.Tx, event: contracts.ConnectionEvent, clock: Clock) -> None:
    await store.enqueue_event(tx, event_subject(event), event.model_dump(mode="json"), clock.now())


def _decode(pending: store.PendingEvent) -> contracts.ConnectionEvent:
    what = pending.subject.split(".")[1]
    return _EVENTS[what].model_validate(pending.payload)


class Outbox:
    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], broker: NatsBroker, clock: Clock):
        self.pool = pool
        self.broker = broker
        self.clock = clock

    async def flush(self) -> int:
        """Publish what is pending; returns how many went out. Never raises: what could
        not be published now stays pending for the next flush."""
        sent = 0
        try:
            while True:
                async with self.pool.acquire() as conn, conn.transaction():
                    batch = await store.pending_events(conn, BATCH)
                    done, stalled = await self._publish(batch)
                    if done:
                        await store.mark_published(conn, done, self.clock.now())
                sent += len(done)
                if stalled or len(batch) < BATCH:
                    return sent
        except Exception:
            log.warning("lifecycle events not published yet; will retry", exc_info=True)
            return sent

    async def _publish(self, batch: list[store.PendingEvent]) -> tuple[list[int], bool]:
        """Ids published in order, and whether the bus refused one (the rest waits)."""
        done: list[int] = []
        for item in batch:
            try:
                await bus.publish(self.broker, item.subject, _decode(item), msg_id=item.msg_id)
            except Exception:
                log.warning(
                    "event publish failed; kept in the outbox",
                    extra={"subject": item.subject},
                    exc_info=True,
                )
                return done, True
            done.append(item.id)
        return done, False
