"""calendar-sync's message outbox against real NATS and Postgres: rows decided in a
transaction reach their stream once each, under their msg id; what the bus refuses
stays pending for the next flush."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from calendar_sync import store
from calendar_sync.publisher import Publisher
from faststream.nats import NatsBroker
from nats.js import JetStreamContext
from syncplane_common import subjects
from syncplane_common.clock import ManualClock
from syncplane_common.contracts import (
    CalendarEventBody,
    CalendarLocalChanged,
    CalendarPushDisabled,
    Contract,
)
from syncplane_common.db import create_pool
from syncplane_common.dlq import MSG_ID
from syncplane_common.provision import provision_js
from syncplane_devstack.embedded import EmbeddedNats

from tests.integration.calendar_harness import migrated, role_dsn

pytestmark = pytest.mark.integration

AT = datetime(2026, 11, 2, 9, tzinfo=UTC)
DISABLED = CalendarPushDisabled(
    user_id="u-1",
    calendar_id="primary",
    reason="channel renewal failed 3 times",
    poll_interval_seconds=300.0,
    at=AT,
)
LETTER = CalendarLocalChanged(
    change_id="outbox-7",
    user_id="u-1",
    event=CalendarEventBody(
        id="e1", calendar_id="primary", title="Rent", start="2026-11-03", end="2026-11-04"
    ),
    at=AT,
)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    await migrated(database_url)
    made = await create_pool(role_dsn(database_url), "calendar", min_size=1, max_size=2)
    await made.execute("TRUNCATE calendar.messages")
    yield made
    await made.close()


@pytest.fixture
async def broker(nats_server: EmbeddedNats) -> AsyncIterator[NatsBroker]:
    made = NatsBroker(nats_server.url, logger=None)
    await made.start()
    yield made
    await made.stop()


async def enqueue(pool: asyncpg.Pool, subject: str, msg_id: str, payload: Contract) -> None:
    async with pool.acquire() as conn:
        await store.enqueue_message(conn, subject, msg_id, payload.model_dump(mode="json"), AT)


async def pending(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM calendar.messages WHERE published_at IS NULL"
    )
    return count


async def test_each_row_reaches_its_stream_once_under_its_msg_id(
    js: JetStreamContext, pool: asyncpg.Pool, broker: NatsBroker
) -> None:
    await provision_js(js)
    await enqueue(pool, subjects.CALENDAR_PUSH_DISABLED, "push-disabled:u-1", DISABLED)
    await enqueue(pool, subjects.dead_letter(subjects.CALENDAR_LOCAL_CHANGED), "dead:7", LETTER)
    publisher = Publisher(pool, broker, ManualClock(AT))
    assert await publisher.flush() == 2
    assert await publisher.flush() == 0
    assert await pending(pool) == 0

    info = await js.stream_info(subjects.CALENDAR.name)
    assert info.state.messages == 1
    stored = await js.get_msg(subjects.CALENDAR.name, info.state.last_seq)
    assert stored.subject == subjects.CALENDAR_PUSH_DISABLED
    assert (stored.headers or {})[MSG_ID] == "push-disabled:u-1"
    assert CalendarPushDisabled.model_validate_json(stored.data or b"") == DISABLED
    info = await js.stream_info(subjects.DLQ.name)
    letter = await js.get_msg(subjects.DLQ.name, info.state.last_seq)
    assert letter.subject == "dlq.calendar.local.changed"
    assert CalendarLocalChanged.model_validate_json(letter.data or b"") == LETTER

    # Published, but the marking was lost (a crash before commit): the next flush sends
    # them again and the streams drop them by msg id.
    await pool.execute("UPDATE calendar.messages SET published_at = NULL")
    assert await publisher.flush() == 2
    assert (await js.stream_info(subjects.CALENDAR.name)).state.messages == 1
    assert (await js.stream_info(subjects.DLQ.name)).state.messages == 1


async def test_what_the_bus_refuses_stays_pending(
    js: JetStreamContext, pool: asyncpg.Pool, broker: NatsBroker
) -> None:
    # The js fixture left no streams: nothing captures the subject, the publish fails.
    await enqueue(pool, subjects.CALENDAR_PUSH_DISABLED, "push-disabled:u-1", DISABLED)
    publisher = Publisher(pool, broker, ManualClock(AT))
    assert await publisher.flush() == 0
    assert await pending(pool) == 1
    await provision_js(js)
    assert await publisher.flush() == 1
    assert await pending(pool) == 0
    assert (await js.stream_info(subjects.CALENDAR.name)).state.messages == 1
