"""Calendar events of the app API: CRUD fronting calendar-sync's ``calendar.events.*``.

An event is ``{"id", "calendar_id", "title", "description", "location", "start", "end",
"all_day", "time_zone", "metadata", "updated_at", "deleted"}`` (ARCHITECTURE §8); writes
are validated here (RFC 3339 date-times with an offset, or dates when all-day; end after
start) so calendar-sync receives only well-formed changes. Requests and replies are the
``calendar.events.*`` contracts of ``syncplane_common.contracts``.
"""

from __future__ import annotations

from aiohttp import web
from syncplane_common.contracts import (
    CalendarEventBody,
    CalendarEventCreate,
    CalendarEventRef,
    CalendarEventReply,
    CalendarEventsList,
    CalendarEventsReply,
    CalendarEventUpdate,
)
from syncplane_common.subjects import (
    CALENDAR_EVENTS_CREATE,
    CALENDAR_EVENTS_DELETE,
    CALENDAR_EVENTS_GET,
    CALENDAR_EVENTS_LIST,
    CALENDAR_EVENTS_UPDATE,
)

from webhook_gateway._api_models import (
    EventCreate,
    EventPatch,
    EventPath,
    EventsQuery,
    EventsReply,
    UserPath,
)
from webhook_gateway.routes import Call, Reply, Route, ask_owner

USER = "/api/v1/users/{user_id}"
EVENT = CalendarEventReply
NOT_RUNNING = "Answers 503 `unavailable` while calendar-sync is not running."


async def list_events(call: Call) -> web.StreamResponse:
    query = call.query(EventsQuery)
    message = CalendarEventsList(user_id=call.path(UserPath).user_id, **query.model_dump())
    reply = await ask_owner(call, CALENDAR_EVENTS_LIST, message, CalendarEventsReply)
    return web.json_response(reply)


async def create_event(call: Call) -> web.StreamResponse:
    message = CalendarEventCreate(
        user_id=call.path(UserPath).user_id, event=call.body(EventCreate).as_event()
    )
    reply = await ask_owner(call, CALENDAR_EVENTS_CREATE, message, EVENT)
    return web.json_response(reply, status=201)


async def get_event(call: Call) -> web.StreamResponse:
    path = call.path(EventPath)
    message = CalendarEventRef(user_id=path.user_id, event_id=path.event_id)
    return web.json_response(await ask_owner(call, CALENDAR_EVENTS_GET, message, EVENT))


async def update_event(call: Call) -> web.StreamResponse:
    path, patch = call.path(EventPath), call.body(EventPatch)
    changes = patch.model_dump(mode="json", include=patch.model_fields_set)
    message = CalendarEventUpdate(user_id=path.user_id, event_id=path.event_id, changes=changes)
    return web.json_response(await ask_owner(call, CALENDAR_EVENTS_UPDATE, message, EVENT))


async def delete_event(call: Call) -> web.StreamResponse:
    path = call.path(EventPath)
    message = CalendarEventRef(user_id=path.user_id, event_id=path.event_id)
    return web.json_response(await ask_owner(call, CALENDAR_EVENTS_DELETE, message, EVENT))


ROUTES = (
    Route(
        "GET",
        USER + "/calendar/events",
        list_events,
        "List calendar events",
        access="user",
        tag="calendar",
        path_model=UserPath,
        query_model=EventsQuery,
        subject=CALENDAR_EVENTS_LIST,
        description=NOT_RUNNING,
        replies=(Reply(200, "The events", EventsReply),),
    ),
    Route(
        "POST",
        USER + "/calendar/events",
        create_event,
        "Create a calendar event (pushed to Google by calendar-sync)",
        access="user",
        tag="calendar",
        path_model=UserPath,
        body_model=EventCreate,
        subject=CALENDAR_EVENTS_CREATE,
        description=NOT_RUNNING,
        replies=(Reply(201, "The created event", CalendarEventBody),),
    ),
    Route(
        "GET",
        USER + "/calendar/events/{event_id}",
        get_event,
        "One calendar event",
        access="user",
        tag="calendar",
        path_model=EventPath,
        subject=CALENDAR_EVENTS_GET,
        description=NOT_RUNNING,
        replies=(Reply(200, "The event", CalendarEventBody),),
    ),
    Route(
        "PATCH",
        USER + "/calendar/events/{event_id}",
        update_event,
        "Change fields of a calendar event",
        access="user",
        tag="calendar",
        path_model=EventPath,
        body_model=EventPatch,
        subject=CALENDAR_EVENTS_UPDATE,
        description=NOT_RUNNING,
        replies=(Reply(200, "The updated event", CalendarEventBody),),
    ),
    Route(
        "DELETE",
        USER + "/calendar/events/{event_id}",
        delete_event,
        "Delete a calendar event",
        access="user",
        tag="calendar",
        path_model=EventPath,
        subject=CALENDAR_EVENTS_DELETE,
        description=NOT_RUNNING,
        replies=(Reply(200, "The event, marked deleted", CalendarEventBody),),
    ),
)
