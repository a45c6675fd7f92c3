"""The app API /api/v1 for one user's data (issue 5), each route fronting its owner's subject.

A caller reaches ``users/{user_id}/...`` only for its own subject (admins: everyone); the
route table (:mod:`routes`) enforces that before any handler runs. Handlers are thin:
parse, ask the owning service over request/reply (or publish a command), answer. While an
owner is not running the answer is 503 ``unavailable`` at once (NATS reports no
responders), never a 500 or a hang. Calendar events are in :mod:`_api_calendar`, admin
routes in :mod:`_api_admin`, the progress stream in :mod:`_api_events`.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from aiohttp import web
from syncplane_common import bus, rpc, subjects
from syncplane_common.contracts import (
    CalendarEventsQuery,
    CalendarEventsQueryReply,
    ConnectionsList,
    ConnectionsListReply,
    DataQuery,
    ProviderName,
    SyncRequested,
    SyncSessionGet,
    SyncStatusGet,
    TimeZoneGet,
    TimeZoneReply,
    TimeZoneSet,
    TokenRevoke,
    TokenRevokeReply,
)
from syncplane_common.errors import NotFoundError

from webhook_gateway import _api_admin, _api_calendar, _api_events
from webhook_gateway._api_models import (
    ConnectionsReply,
    DataPath,
    DataQueryParams,
    DataReply,
    ErrorBody,
    OwnerObject,
    RevokeResult,
    SessionPath,
    SessionRef,
    StatusQuery,
    SyncAccepted,
    SyncBody,
    SyncMode,
    TimeZoneBody,
    TimeZoneView,
    UserPath,
    UserProviderPath,
)
from webhook_gateway.context import Gateway
from webhook_gateway.routes import Call, Reply, Route, ask_owner, bus_errors, pass_owner, register

API = "/api/v1"
USER = API + "/users/{user_id}"

# Two app-focus requests for one user and provider inside this window are one request:
# a double tap, or several screens gaining focus at once, enqueue a single sync.
APP_FOCUS_DEDUPE_SECONDS = 60
# Sync-mode header on sync.requested: SyncRequested has no field for it yet.
SYNC_MODE_HEADER = "Syncplane-Sync-Mode"


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


# -- connections ---------------------------------------------------------------------------


async def list_connections(call: Call) -> web.StreamResponse:
    user_id = call.path(UserPath).user_id
    with bus_errors(subjects.CONNECTIONS_LIST):
        reply = await rpc.request(
            call.gateway.broker,
            subjects.CONNECTIONS_LIST,
            ConnectionsList(user_id=user_id),
            ConnectionsListReply,
            wait=call.gateway.settings.request_timeout_seconds,
        )
    body = ConnectionsReply(connections=list(reply.connections))
    return _json(body.model_dump(mode="json"))


async def delete_connection(call: Call) -> web.StreamResponse:
    path = call.path(UserProviderPath)
    with bus_errors(subjects.TOKEN_REVOKE):
        reply = await rpc.request(
            call.gateway.broker,
            subjects.TOKEN_REVOKE,
            TokenRevoke(user_id=path.user_id, provider=path.provider, reason="user_request"),
            TokenRevokeReply,
            wait=call.gateway.settings.request_timeout_seconds,
        )
    return _json(RevokeResult(provider=path.provider, revoked=reply.revoked).model_dump())


# -- sync ----------------------------------------------------------------------------------


def sync_request_id(
    user_id: str, provider: str, mode: SyncMode, now_seconds: float, random_part: str
) -> str:
    """The request id (also the Nats-Msg-Id): deterministic per time bucket for app_focus,
    so JetStream drops the duplicates; unique otherwise (a manual refresh is meant)."""
    if mode != "app_focus":
        return f"{mode}-{random_part}"
    bucket = int(now_seconds // APP_FOCUS_DEDUPE_SECONDS)
    digest = hashlib.sha256(f"{user_id}\n{provider}\n{mode}\n{bucket}".encode()).hexdigest()
    return f"app_focus-{digest[:32]}"


async def _active_providers(call: Call, user_id: str) -> list[ProviderName]:
    with bus_errors(subjects.CONNECTIONS_LIST):
        reply = await rpc.request(
            call.gateway.broker,
            subjects.CONNECTIONS_LIST,
            ConnectionsList(user_id=user_id),
            ConnectionsListReply,
            wait=call.gateway.settings.request_timeout_seconds,
        )
    return [c.provider for c in reply.connections if c.status == "active"]


async def request_sync(call: Call) -> web.StreamResponse:
    # SyncRequested has no mode: manual and app_focus travel as kind "on_demand" and
    # backfill as "backfill"; the mode rides in a header, and sync-worker decides whether
    # an app_focus request is stale enough to run (it owns the freshness log).
    user_id = call.path(UserPath).user_id
    body = call.body(SyncBody)
    providers = [body.provider] if body.provider else await _active_providers(call, user_id)
    now = call.clock.now()
    sessions = []
    for provider in providers:
        request_id = sync_request_id(
            user_id, provider, body.mode, now.timestamp(), uuid.uuid4().hex
        )
        command = SyncRequested(
            request_id=request_id,
            user_id=user_id,
            provider=provider,
            kind="backfill" if body.mode == "backfill" else "on_demand",
            data_types=tuple(body.data_types),
            since=body.since,
            requested_at=now,
            priority="background" if body.mode == "backfill" else "interactive",
            mode=body.mode,
        )
        with bus_errors(command.subject):
            await bus.publish(
                call.gateway.broker,
                command.subject,
                command,
                msg_id=request_id,
                headers={SYNC_MODE_HEADER: body.mode},
                ack_timeout=call.gateway.settings.publish_timeout_seconds,
            )
        sessions.append(SessionRef(provider=provider, request_id=request_id))
    return _json(SyncAccepted(sessions=sessions).model_dump(), status=202)


async def sync_status(call: Call) -> web.StreamResponse:
    query = call.query(StatusQuery)
    ask_for = SyncStatusGet(
        user_id=call.path(UserPath).user_id, provider=query.provider, data_type=query.data_type
    )
    return _json(await ask_owner(call, subjects.SYNC_STATUS_GET, ask_for))


async def sync_session(call: Call) -> web.StreamResponse:
    path = call.path(SessionPath)
    message = SyncSessionGet(user_id=path.user_id, session_id=path.session_id)
    reply = await ask_owner(call, subjects.SYNC_SESSION_GET, message)
    # Defence in depth: a session id guessed from another user never shows its data.
    if reply.get("user_id", path.user_id) != path.user_id:
        raise NotFoundError(f"no sync session {path.session_id}")
    return _json(reply)


# -- smart reads ---------------------------------------------------------------------------


async def read_data(call: Call) -> web.StreamResponse:
    path, query = call.path(DataPath), call.query(DataQueryParams)
    asked = {
        "user_id": path.user_id,
        "provider": path.provider,
        "data_type": path.type,
        "start": query.start,
        "end": query.end,
        "limit": query.limit,
        "force_refresh": query.force_refresh,
    }
    # Calendar events belong to calendar-sync (the local mirror is the cache); every
    # other type to sync-worker.
    if path.provider == "google_calendar":
        reply = await ask_owner(
            call,
            subjects.CALENDAR_EVENTS_QUERY,
            CalendarEventsQuery(**asked),
            CalendarEventsQueryReply,
        )
        return _json(reply)
    return await pass_owner(call, subjects.DATA_QUERY, DataQuery(**asked))


# -- Google Fit days -----------------------------------------------------------------------


async def set_time_zone(call: Call) -> web.StreamResponse:
    # The zone is checked by sync-worker, not here: the zone database that counts is the
    # one the days are bucketed with.
    message = TimeZoneSet(
        user_id=call.path(UserPath).user_id, **call.body(TimeZoneBody).model_dump()
    )
    return _json(await ask_owner(call, subjects.SYNC_TIME_ZONE_SET, message, TimeZoneReply))


async def get_time_zone(call: Call) -> web.StreamResponse:
    message = TimeZoneGet(user_id=call.path(UserPath).user_id)
    return _json(await ask_owner(call, subjects.SYNC_TIME_ZONE_GET, message, TimeZoneReply))


# -- the table -----------------------------------------------------------------------------

NOT_RUNNING = " Answers 503 `unavailable` while {owner} is not running."


def fronts(owner: str, text: str = "") -> str:
    return text + NOT_RUNNING.format(owner=owner)


ROUTES = (
    Route(
        "GET",
        USER + "/connections",
        list_connections,
        "The user's provider connections",
        access="user",
        tag="connections",
        path_model=UserPath,
        subject=subjects.CONNECTIONS_LIST,
        description=fronts("token-service"),
        replies=(Reply(200, "The connections", ConnectionsReply),),
    ),
    Route(
        "DELETE",
        USER + "/connections/{provider}",
        delete_connection,
        "Disconnect a provider (revokes its tokens)",
        access="user",
        tag="connections",
        path_model=UserProviderPath,
        subject=subjects.TOKEN_REVOKE,
        description=fronts("token-service", "404 `not_connected` when there is none."),
        replies=(Reply(200, "Revoked", RevokeResult),),
    ),
    Route(
        "POST",
        USER + "/sync",
        request_sync,
        "Request sync sessions",
        access="user",
        tag="sync",
        path_model=UserPath,
        body_model=SyncBody,
        subject=subjects.CONNECTIONS_LIST,
        description="Publishes `SyncRequested` on `sync.requested.<provider>` for the given "
        "provider, or for each provider the user has an active connection for (asked of "
        "token-service). `app_focus` requests dedupe per user and provider within "
        f"{APP_FOCUS_DEDUPE_SECONDS} s and carry kind `on_demand` with header "
        f"`{SYNC_MODE_HEADER}: app_focus`: sync-worker runs them only when the last sync is "
        "older than its threshold. `manual` is kind `on_demand`, `backfill` kind `backfill`."
        + NOT_RUNNING.format(owner="token-service (no provider given) or JetStream"),
        replies=(Reply(202, "Accepted: one request per provider", SyncAccepted),),
    ),
    Route(
        "GET",
        USER + "/sync/status",
        sync_status,
        "Sync status per provider and data type",
        access="user",
        tag="sync",
        path_model=UserPath,
        query_model=StatusQuery,
        subject=subjects.SYNC_STATUS_GET,
        description=fronts("sync-worker", "The owner's reply, passed through."),
        replies=(Reply(200, "Status", OwnerObject),),
    ),
    Route(
        "GET",
        USER + "/sync/sessions/{session_id}",
        sync_session,
        "One sync session",
        access="user",
        tag="sync",
        path_model=SessionPath,
        subject=subjects.SYNC_SESSION_GET,
        description=fronts("sync-worker", "The owner's reply, passed through."),
        replies=(Reply(200, "The session", OwnerObject),),
    ),
    Route(
        "GET",
        USER + "/sync/events",
        _api_events.sync_events,
        "Server-sent events: the user's sync progress",
        access="user",
        tag="sync",
        path_model=UserPath,
        token_in_query=True,
        description="`text/event-stream` of the user's `sync.progress`, `sync.completed` "
        "and `sync.failed` events from now on (event name `progress` | `completed` | "
        "`failed`, `id` the EVENTS stream sequence, `data` the event JSON), a comment line "
        "every 15 s as heartbeat. Browsers' EventSource cannot set headers, so the token "
        "may come as `?access_token=`.",
        replies=(Reply(200, "The event stream", None, content_type="text/event-stream"),),
    ),
    Route(
        "PUT",
        USER + "/time_zone",
        set_time_zone,
        "Set the time zone the user's Google Fit days are counted in",
        access="user",
        tag="data",
        path_model=UserPath,
        body_model=TimeZoneBody,
        subject=subjects.SYNC_TIME_ZONE_SET,
        description=fronts(
            "sync-worker",
            "An IANA zone name; the next Google Fit sync buckets the user's days by local "
            "midnight there (days synced before keep their zone). 400 `bad_request` for a "
            "zone sync-worker does not know.",
        ),
        replies=(Reply(200, "The zone now set", TimeZoneView),),
    ),
    Route(
        "GET",
        USER + "/time_zone",
        get_time_zone,
        "The time zone the user's Google Fit days are counted in",
        access="user",
        tag="data",
        path_model=UserPath,
        subject=subjects.SYNC_TIME_ZONE_GET,
        description=fronts(
            "sync-worker", "The zone set for the user, else sync-worker's DEFAULT_TIME_ZONE."
        ),
        replies=(Reply(200, "The zone the next sync uses", TimeZoneView),),
    ),
    Route(
        "GET",
        USER + "/data/{provider}/{type}",
        read_data,
        "Smart read: cached when fresh, fetched from the provider when stale",
        access="user",
        tag="data",
        path_model=DataPath,
        query_model=DataQueryParams,
        subject=subjects.DATA_QUERY,
        description=fronts(
            "the owner (sync-worker; calendar-sync for google_calendar/events on "
            f"`{subjects.CALENDAR_EVENTS_QUERY}`)",
            "The owner's reply, passed through.",
        ),
        replies=(
            Reply(200, "Rows and freshness metadata", DataReply),
            Reply(
                502,
                "The provider failed and nothing is stored to answer instead "
                "(`provider_unavailable`, with Retry-After)",
                ErrorBody,
            ),
        ),
    ),
)


def setup(gateway: Gateway) -> None:
    settings = gateway.settings
    if settings.api_jwt_algorithm == "EdDSA" and not settings.api_jwt_public_key:
        raise ValueError("API_JWT_ALGORITHM=EdDSA needs API_JWT_PUBLIC_KEY")
    register(gateway.app, ROUTES)
    register(gateway.app, _api_calendar.ROUTES)
    register(gateway.app, _api_admin.ROUTES)
    _api_events.setup(gateway)
