"""Messages decided inside a transaction (``calendar.remote.changed``, conflicts, dead
letters) are written to ``calendar.messages`` with it, and published here after it
commits through :func:`syncplane_common.bus.publish`, each with its msg id so a retry
after a lost PubAck is dropped by the stream."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from faststream.nats import NatsBroker
from pydantic import RootModel
from syncplane_common import bus
from syncplane_common.clock import Clock

from calendar_sync import store

log = logging.getLogger(__name__)
BATCH = 200


class Stored(RootModel[dict[str, Any]]):
    """A payload as its contract dumped it when the message was decided: published as
    it is, not validated again (a row that no longer validates would block the rest)."""


class Publisher:
    def __init__(self, pool: asyncpg.Pool, broker: NatsBroker, clock: Clock) -> None:
        self.pool = pool
        self.broker = broker
        self.clock = clock

    async def flush(self) -> int:
        """Publish what is pending; what the bus refuses stays for the next flush."""
        sent = 0
        while True:
            async with self.pool.acquire() as conn, conn.transaction():
                batch = await store.pending_messages(conn, BATCH)
                done: list[int] = []
                for message in batch:
                    try:
                        await bus.publish(
                            self.broker,
                            message.subject,
                            Stored(message.payload),
                            msg_id=message.msg_id,
                        )
                    except Exception:
                        log.warning("publish failed; kept", extra={"subject": message.subject})
                        break
                    done.append(message.id)
                if done:
                    await store.mark_published(conn, done, self.clock.now())
            sent += len(done)
            if len(done) < BATCH:
                return sent
