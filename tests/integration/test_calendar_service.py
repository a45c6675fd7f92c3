"""calendar-sync's NATS surface with the real service app, NATS, Postgres and the Google
sandbox: the ``calendar.events.*`` responders, and its three durable consumers (local
changes reach Google exactly once, push notifications become ``calendar.remote.changed``,
bad messages are dead-lettered while the good ones behind them still land)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from syncplane_common import subjects
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
    WebhookReceived,
)
from syncplane_common.errors import NotFoundError
from syncplane_devstack.embedded import EmbeddedNats

from tests.integration.calendar_harness import Service, eventually, service

pytestmark = pytest.mark.integration

ANN = "ann@example.com"
U1 = "u-1"
GYM = CalendarEventBody(
    calendar_id="primary",
    title="Gym",
    start="2030-05-01T10:00:00+00:00",
    end="2030-05-01T11:00:00+00:00",
    metadata={"kind": "workout"},
)
# The sandbox's stats keys (endpoint templates) of the event writes.
INSERT = "POST /calendars/{calendarId}/events"
PATCH = "PATCH /calendars/{calendarId}/events/{eventId}"
DELETE = "DELETE /calendars/{calendarId}/events/{eventId}"
LIST = "GET /calendars/{calendarId}/events"


@pytest.fixture
async def svc(nats_server: EmbeddedNats, database_url: str) -> AsyncIterator[Service]:
    async with service(nats_server.url, database_url) as made:
        await made.connect(U1, ANN)
        yield made


async def on_google(svc: Service, count: int) -> list[dict[str, Any]]:
    """Google's live events once there are ``count`` of them and no push is pending."""

    async def settled() -> tuple[list[dict[str, Any]]] | None:
        pending = await svc.admin.fetchval(
            "SELECT count(*) FROM calendar.outbox WHERE status = 'pending'"
        )
        live = await svc.google.live(ANN)
        return (live,) if pending == 0 and len(live) == count else None

    found: tuple[list[dict[str, Any]]] = await eventually(settled)
    return found[0]


async def raw_reply(svc: Service, subject: str, body: bytes) -> dict[str, Any]:
    msg = await svc.broker.connection.request(subject, body, timeout=10)
    reply: dict[str, Any] = json.loads(msg.data)
    return reply


async def test_events_responders_write_through_to_google(svc: Service) -> None:
    created = await svc.ask(
        subjects.CALENDAR_EVENTS_CREATE,
        CalendarEventCreate(user_id=U1, event=GYM),
        CalendarEventReply,
    )
    assert created.id
    assert (created.title, created.updated_at is not None) == ("Gym", True)
    [google] = await on_google(svc, 1)
    assert google["summary"] == "Gym"

    ref = CalendarEventRef(user_id=U1, event_id=created.id)
    got = await svc.ask(subjects.CALENDAR_EVENTS_GET, ref, CalendarEventReply)
    assert got.model_dump(exclude={"error"}) == created.model_dump(exclude={"error"})

    change = CalendarEventUpdate(user_id=U1, event_id=created.id, changes={"title": "Gym!"})
    updated = await svc.ask(subjects.CALENDAR_EVENTS_UPDATE, change, CalendarEventReply)
    assert (updated.title, updated.metadata) == ("Gym!", {"kind": "workout"})
    [google] = await on_google(svc, 1)
    assert google["summary"] == "Gym!"

    listed = await svc.ask(
        subjects.CALENDAR_EVENTS_LIST, CalendarEventsList(user_id=U1), CalendarEventsReply
    )
    assert [(e.id, e.title) for e in listed.events] == [(created.id, "Gym!")]

    query = CalendarEventsQuery(user_id=U1, force_refresh=True)
    read = await svc.ask(subjects.CALENDAR_EVENTS_QUERY, query, CalendarEventsQueryReply)
    assert [e.id for e in read.data] == [created.id]
    assert read.metadata == {"source": "google_calendar_api", "record_count": 1}

    deleted = await svc.ask(subjects.CALENDAR_EVENTS_DELETE, ref, CalendarEventReply)
    assert deleted.deleted
    assert await on_google(svc, 0) == []
    listed = await svc.ask(
        subjects.CALENDAR_EVENTS_LIST,
        CalendarEventsList(user_id=U1, include_deleted=True),
        CalendarEventsReply,
    )
    assert [(e.id, e.deleted) for e in listed.events] == [(created.id, True)]
    # One write per change, none echoed back by the listings in between.
    assert (svc.calls(INSERT), svc.calls(PATCH), svc.calls(DELETE)) == (1, 1, 1)
    assert svc.events.of(subjects.CALENDAR_REMOTE_CHANGED) == []


async def test_bad_requests_get_typed_errors_and_change_nothing(svc: Service) -> None:
    created = await svc.ask(
        subjects.CALENDAR_EVENTS_CREATE,
        CalendarEventCreate(user_id=U1, event=GYM),
        CalendarEventReply,
    )
    assert created.id
    await on_google(svc, 1)
    bad: list[tuple[str, bytes, str]] = [
        (subjects.CALENDAR_EVENTS_GET, b"{not json", "bad_request"),
        (subjects.CALENDAR_EVENTS_CREATE, b'{"user_id": "u-1"}', "bad_request"),
        (
            subjects.CALENDAR_EVENTS_GET,
            CalendarEventRef(user_id=U1, event_id="nosuchevent").to_bytes(),
            "not_found",
        ),
        # Someone else's event is not found, not shown.
        (
            subjects.CALENDAR_EVENTS_GET,
            CalendarEventRef(user_id="u-2", event_id=created.id).to_bytes(),
            "not_found",
        ),
        (
            subjects.CALENDAR_EVENTS_UPDATE,
            CalendarEventUpdate(
                user_id=U1, event_id=created.id, changes={"colour": "red"}
            ).to_bytes(),
            "bad_request",
        ),
        (
            subjects.CALENDAR_EVENTS_CREATE,
            CalendarEventCreate(
                user_id=U1, event=GYM.model_copy(update={"id": created.id})
            ).to_bytes(),
            "bad_request",
        ),
        (
            subjects.CALENDAR_EVENTS_LIST,
            b'{"user_id": "u-1", "limit": 0}',
            "bad_request",
        ),
    ]
    for subject, body, code in bad:
        reply = await raw_reply(svc, subject, body)
        assert reply["error"]["code"] == code, (subject, body, reply)
        assert reply["error"]["message"]
    with pytest.raises(NotFoundError):
        await svc.ask(
            subjects.CALENDAR_EVENTS_DELETE,
            CalendarEventRef(user_id=U1, event_id="nosuchevent"),
            CalendarEventReply,
        )
    got = await svc.ask(
        subjects.CALENDAR_EVENTS_GET,
        CalendarEventRef(user_id=U1, event_id=created.id),
        CalendarEventReply,
    )
    assert (got.title, got.updated_at) == ("Gym", created.updated_at)
    [google] = await on_google(svc, 1)
    assert google["summary"] == "Gym"
    assert svc.calls(INSERT) == 1
    assert svc.calls(PATCH) == 0


def local_change(change_id: str, event: CalendarEventBody, svc: Service) -> CalendarLocalChanged:
    return CalendarLocalChanged(change_id=change_id, user_id=U1, event=event, at=svc.clock.now())


async def test_local_changes_reach_google_exactly_once(svc: Service) -> None:
    event = GYM.model_copy(update={"id": "0123456789abcdef0123456789abcdef"})
    first = local_change("c-1", event, svc)
    # A retried publish (same msg id) and a redelivered copy (a new one): one write.
    await svc.publish(subjects.CALENDAR_LOCAL_CHANGED, first, "c-1")
    await svc.publish(subjects.CALENDAR_LOCAL_CHANGED, first, "c-1")
    await svc.publish(subjects.CALENDAR_LOCAL_CHANGED, first, "c-1-again")
    await svc.settled("CALENDAR", "calendar-sync-local")
    [google] = await on_google(svc, 1)
    assert google["id"] == event.id
    assert svc.calls(INSERT) == 1

    svc.clock.advance(5)
    edit = local_change("c-2", event.model_copy(update={"title": "Gym at 10"}), svc)
    # An edit, then the first change arriving late: the older one changes nothing.
    await svc.publish(subjects.CALENDAR_LOCAL_CHANGED, edit, "c-2")
    await svc.publish(subjects.CALENDAR_LOCAL_CHANGED, first, "c-1-late")
    await svc.settled("CALENDAR", "calendar-sync-local")
    [google] = await on_google(svc, 1)
    assert google["summary"] == "Gym at 10"
    # A Google listing in between sees our own writes: echoes, not remote changes.
    await svc.app.require().sync_calendar(U1, "primary")
    assert (svc.calls(INSERT), svc.calls(PATCH)) == (1, 1)
    assert svc.events.of(subjects.CALENDAR_REMOTE_CHANGED) == []


async def test_a_bad_local_change_is_dead_lettered_and_the_next_still_lands(
    svc: Service,
) -> None:
    await svc.broker.connection.jetstream().publish(
        subjects.CALENDAR_LOCAL_CHANGED, b'{"change_id": "broken"}', stream="CALENDAR"
    )
    good = local_change(
        "c-9", GYM.model_copy(update={"id": "abcdefabcdefabcdefabcdefabcdef01"}), svc
    )
    await svc.publish(subjects.CALENDAR_LOCAL_CHANGED, good, "c-9")
    letter = await svc.events.wait(
        subjects.dead_letter(subjects.CALENDAR_LOCAL_CHANGED), lambda b: True, within=15
    )
    assert letter == {"change_id": "broken"}  # the original body, kept byte for byte
    [google] = await on_google(svc, 1)
    assert google["id"] == good.event.id


async def test_a_push_notification_leads_to_remote_changed(svc: Service) -> None:
    added = await svc.google.add(
        ANN,
        {
            "summary": "Dentist",
            "start": {"dateTime": "2030-06-01T09:00:00Z"},
            "end": {"dateTime": "2030-06-01T09:30:00Z"},
        },
    )
    push = WebhookReceived(
        provider="gcal",
        kind="events",
        event_id="gcal:chan-1:2",
        object_id="primary",
        action="exists",
        received_at=svc.clock.now(),
        attributes={"channel_id": "chan-1", "user_id": U1, "calendar_id": "primary"},
    )
    lists = svc.calls(LIST)
    await svc.publish(subjects.webhook_received("gcal", "events"), push, push.event_id)
    changed = await svc.events.wait(
        subjects.CALENDAR_REMOTE_CHANGED, lambda b: b["google_event_id"] == added["id"]
    )
    assert changed["user_id"] == U1
    assert changed["event"]["title"] == "Dentist"
    assert svc.calls(LIST) == lists + 1
    listed = await svc.ask(
        subjects.CALENDAR_EVENTS_LIST, CalendarEventsList(user_id=U1), CalendarEventsReply
    )
    assert [e.title for e in listed.events] == ["Dentist"]
    # The same notification again (a redelivery) and a listing: nothing new.
    await svc.publish(
        subjects.webhook_received("gcal", "events"),
        push.model_copy(update={"event_id": "gcal:chan-1:3"}),
        "gcal:chan-1:3",
    )
    await svc.settled("WEBHOOKS", "calendar-sync-webhooks")
    assert len(svc.events.of(subjects.CALENDAR_REMOTE_CHANGED)) == 1
    # Nothing is pushed back to Google for what came from it.
    assert svc.calls(INSERT) == svc.calls(PATCH) == 0


async def test_a_push_without_its_calendar_is_dead_lettered(svc: Service) -> None:
    bad = WebhookReceived(
        provider="gcal",
        kind="events",
        event_id="gcal:chan-x:2",
        received_at=svc.clock.now(),
        action="exists",
    )
    await svc.publish(subjects.webhook_received("gcal", "events"), bad, bad.event_id)
    letter = await svc.events.wait(
        subjects.dead_letter(subjects.webhook_received("gcal", "events")), lambda b: True
    )
    assert letter["event_id"] == "gcal:chan-x:2"
