"""calendar-sync's answer to the admin console: every calendar's push channel and when it
expires (``calendar.channels.list``), soonest first, so a channel about to lapse — or one
whose renewal failed and left the calendar polled — is at the top. The channel's secret
token never leaves this service."""

from __future__ import annotations

from collections.abc import Callable

from faststream.nats import NatsBroker
from syncplane_common import rpc, subjects
from syncplane_common.contracts import (
    CalendarChannelsList,
    CalendarChannelsReply,
    CalendarChannelView,
)

from calendar_sync.handlers import QUEUE
from calendar_sync.sync import Engine

CHANNELS = """
SELECT user_id, calendar_id, channel_id, channel_expires_at, push_enabled, sync_enabled,
       renew_failures, last_synced_at
FROM calendars
ORDER BY channel_expires_at NULLS LAST, user_id, calendar_id
LIMIT $1
"""


def register(broker: NatsBroker, engine: Callable[[], Engine]) -> None:
    @rpc.responder(
        broker,
        subjects.CALENDAR_CHANNELS_LIST,
        CalendarChannelsList,
        CalendarChannelsReply,
        queue=QUEUE,
    )
    async def channels(ask: CalendarChannelsList) -> CalendarChannelsReply:
        records = await engine().pool.fetch(CHANNELS, ask.limit)
        return CalendarChannelsReply(
            channels=tuple(
                CalendarChannelView(
                    user_id=r["user_id"],
                    calendar_id=r["calendar_id"],
                    channel_id=r["channel_id"],
                    expires_at=r["channel_expires_at"],
                    push_enabled=r["push_enabled"],
                    sync_enabled=r["sync_enabled"],
                    renew_failures=r["renew_failures"],
                    last_synced_at=r["last_synced_at"],
                )
                for r in records
            )
        )
