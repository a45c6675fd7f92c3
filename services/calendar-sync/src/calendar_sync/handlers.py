"""calendar-sync's subjects: ``calendar.events.*`` request/reply (queue group
``calendar-sync``) and three durable consumers. Thin: parse (the contracts do), call,
answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from faststream.nats import NatsBroker
from faststream.nats.annotations import NatsMessage
from syncplane_common import bus, rpc, subjects
from syncplane_common.contracts import (
    CalendarEventBody,
    CalendarEventCreate,
    CalendarEventRef,
    CalendarEventReply,
    CalendarEventsList,
    CalendarEventsQuery,
    CalendarEventsQueryReply,
    CalendarEventsReply,
    CalendarEventUpdate,
    CalendarLocalChanged,
    ConnectionEvent,
    Contract,
    Reply,
    WebhookReceived,
)
from syncplane_common.errors import MessageParseError

from calendar_sync.channels import Channels
from calendar_sync.sync import Engine

QUEUE = "calendar-sync"
Ask = TypeVar("Ask", bound=Contract)
Answer = TypeVar("Answer", bound=Reply)


def event_reply(body: CalendarEventBody) -> CalendarEventReply:
    return CalendarEventReply(**body.model_dump(exclude={"schema_version"}))


def register(
    broker: NatsBroker,
    engine: Callable[[], Engine],
    channels: Callable[[], Channels],
    *,
    max_workers: int,
) -> None:
    def serve(
        subject: str,
        ask_type: type[Ask],
        reply_type: type[Answer],
        handle: Callable[[Ask], Awaitable[Answer]],
    ) -> None:
        rpc.responder(broker, subject, ask_type, reply_type, queue=QUEUE, max_workers=max_workers)(
            handle
        )

    async def list_events(ask: CalendarEventsList) -> CalendarEventsReply:
        events = await engine().list(
            ask.user_id,
            calendar_id=ask.calendar_id,
            start=ask.start,
            end=ask.end,
            include_deleted=ask.include_deleted,
            limit=ask.limit,
        )
        return CalendarEventsReply(events=tuple(events))

    async def get_event(ask: CalendarEventRef) -> CalendarEventReply:
        return event_reply(await engine().get(ask.user_id, ask.event_id))

    async def create_event(ask: CalendarEventCreate) -> CalendarEventReply:
        return event_reply(await engine().create(ask.user_id, ask.event))

    async def update_event(ask: CalendarEventUpdate) -> CalendarEventReply:
        return event_reply(await engine().update(ask.user_id, ask.event_id, ask.changes))

    async def delete_event(ask: CalendarEventRef) -> CalendarEventReply:
        return event_reply(await engine().delete(ask.user_id, ask.event_id))

    async def query_events(ask: CalendarEventsQuery) -> CalendarEventsQueryReply:
        """The mirror is the cache; pushes keep it fresh, ``force_refresh`` syncs first."""
        running = engine()
        if ask.force_refresh:
            await running.sync_calendar(ask.user_id, "primary")
        events = await running.list(ask.user_id, start=ask.start, end=ask.end, limit=ask.limit)
        return CalendarEventsQueryReply(
            data=tuple(events),
            metadata={
                "source": "google_calendar_api" if ask.force_refresh else "cache",
                "record_count": len(events),
            },
        )

    serve(subjects.CALENDAR_EVENTS_LIST, CalendarEventsList, CalendarEventsReply, list_events)
    serve(subjects.CALENDAR_EVENTS_GET, CalendarEventRef, CalendarEventReply, get_event)
    serve(subjects.CALENDAR_EVENTS_CREATE, CalendarEventCreate, CalendarEventReply, create_event)
    serve(subjects.CALENDAR_EVENTS_UPDATE, CalendarEventUpdate, CalendarEventReply, update_event)
    serve(subjects.CALENDAR_EVENTS_DELETE, CalendarEventRef, CalendarEventReply, delete_event)
    serve(
        subjects.CALENDAR_EVENTS_QUERY, CalendarEventsQuery, CalendarEventsQueryReply, query_events
    )

    async def local_changed(message: CalendarLocalChanged) -> None:
        await engine().local_changed(message)

    async def webhook(event: WebhookReceived) -> None:
        user_id = event.attributes.get("user_id")
        calendar_id = event.attributes.get("calendar_id") or event.object_id
        if not isinstance(user_id, str) or not isinstance(calendar_id, str):
            raise MessageParseError("a calendar push without user_id / calendar_id")
        if event.action == "sync":
            return  # a new channel says hello: nothing changed
        await engine().sync_calendar(user_id, calendar_id)

    async def lifecycle(event: ConnectionEvent, message: NatsMessage) -> None:
        if event.provider != "google_calendar":
            return
        # The subject says what happened; the body is the shared ConnectionEvent shape.
        what = message.raw_message.subject.split(".")[1]
        if what == "connected":
            await channels().connected(event.user_id)
        else:
            await channels().revoked(event.user_id)

    bus.durable_subscriber(broker, "calendar-sync-local")(local_changed)
    bus.durable_subscriber(broker, "calendar-sync-webhooks")(webhook)
    bus.durable_subscriber(broker, "calendar-sync-lifecycle")(lifecycle)
