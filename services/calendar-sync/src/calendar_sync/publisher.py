"""Messages decided inside a transaction (``calendar.remote.changed``, conflicts, dead
letters) are written to ``calendar.messages`` with it, and published here after it
commits, each with its msg id so a retry after a lost PubAck is dropped by the stream."""

from __future__ import annotations

import json
import logging

import asyncpg
from nats.js import JetStreamContext
from syncplane_common import subjects
from syncplane_common.clock import Clock
from syncplane_common.dlq import MSG_ID

from calendar_sync import store

log = logging.getLogger(__name__)
BATCH = 200


class Publisher:
    def __init__(self, pool: asyncpg.Pool, jetstream: JetStreamContext, clock: Clock) -> None:
        self.pool = pool
        self.js = jetstream
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
                        await self.js.publish(
                            message.subject,
                            json.dumps(message.payload).encode(),
                            stream=subjects.stream_for(message.subject).name,
                            headers={MSG_ID: message.msg_id, "content-type": "application/json"},
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
