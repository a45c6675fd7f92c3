"""Google Calendar API v3 emulation (PROVIDERS.md §5): calendars, events with the sync
protocol, optimistic concurrency, watch channels with push, and per-user quotas."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiohttp import web
from yarl import URL

from provider_sandbox.config import PREFIXES, SandboxConfig
from provider_sandbox.core import Account, Grant, Sandbox, bearer_token
from provider_sandbox.providers._gcal_config import GcalSettings, Injected, SlidingWindow
from provider_sandbox.providers._gcal_control import Control
from provider_sandbox.providers._gcal_errors import (
    GcalErrors,
    GoogleError,
    invalid,
    named_error,
    not_found,
    parse_error,
    precondition_failed,
    rate_limited,
    required,
)
from provider_sandbox.providers._gcal_list import Lister, parse_query
from provider_sandbox.providers._gcal_push import Channel, Pusher
from provider_sandbox.providers._gcal_store import Calendar, Event, Store, render
from provider_sandbox.providers.google_oauth import google_grant

NAME = "google_calendar"
PREFIX = PREFIXES["GOOGLE_CALENDAR_API_BASE"]
SCOPE = "https://www.googleapis.com/auth/calendar"
WRITE_SCOPES = frozenset({SCOPE, SCOPE + ".events"})
READ_SCOPES = WRITE_SCOPES | {SCOPE + ".readonly", SCOPE + ".events.readonly"}
CALENDAR_SCOPES = frozenset(
    {SCOPE, SCOPE + ".readonly", SCOPE + ".calendarlist", SCOPE + ".calendarlist.readonly"}
)
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
ERRORS = GcalErrors()


@dataclass(frozen=True)
class Call:
    request: web.Request
    grant: Grant
    account: Account


ApiHandler = Callable[[Call], Awaitable[web.StreamResponse]]


async def json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise parse_error() from None
    if not isinstance(body, dict):
        raise parse_error()
    return body


class GoogleCalendar:
    name = NAME

    def __init__(self, sandbox: Sandbox, config: SandboxConfig) -> None:
        self.sandbox = sandbox
        self.config = config
        self.settings = GcalSettings()
        self.store = Store(sandbox.rng, sandbox.clock.time, self.settings)
        self.pusher = Pusher(sandbox, self.settings)
        self.store.on_change = self.pusher.notify
        self.lister = Lister(self.store, self.settings, sandbox.rng)
        self.windows = SlidingWindow()
        self.injected = Injected()

    def reset(self) -> None:
        self.settings.restore_defaults()
        self.store.reset()
        self.pusher.reset()
        self.windows.reset()
        self.injected.queue.clear()

    def setup(self, app: web.Application) -> None:
        app.on_startup.append(self.pusher.start)
        app.on_cleanup.append(self.pusher.close)
        api = self._api
        api(app, "GET", "/users/me/calendarList", self.calendar_list, CALENDAR_SCOPES)
        api(app, "GET", "/calendars/{calendarId}", self.calendar_get, CALENDAR_SCOPES)
        events = "/calendars/{calendarId}/events"
        api(app, "POST", events + "/watch", self.watch, READ_SCOPES)
        api(app, "GET", events, self.events_list, READ_SCOPES)
        api(app, "POST", events, self.events_insert, WRITE_SCOPES)
        one = events + "/{eventId}"
        api(app, "GET", one, self.events_get, READ_SCOPES)
        api(app, "PUT", one, self.events_update, WRITE_SCOPES)
        api(app, "PATCH", one, self.events_patch, WRITE_SCOPES)
        api(app, "DELETE", one, self.events_delete, WRITE_SCOPES)
        api(app, "POST", "/channels/stop", self.channels_stop, READ_SCOPES)
        Control(self).setup(app)

    # -- the wrapper every API call goes through -----------------------------------------

    def _api(
        self,
        app: web.Application,
        method: str,
        template: str,
        handler: ApiHandler,
        scopes: frozenset[str],
    ) -> None:
        key = f"{NAME} {method} {template}"

        async def wrapped(request: web.Request) -> web.StreamResponse:
            granted = google_grant(self.sandbox, request, scopes)
            if isinstance(granted, web.Response):
                return granted
            grant = granted
            try:
                self._check_quota(grant, key)
                account = self.account(grant.account_id)
                return await handler(Call(request, grant, account))
            except GoogleError as err:
                return err.response()

        self.sandbox.route(
            app, NAME, PREFIX, method, template, wrapped, ERRORS, token_of=bearer_token
        )

    def _check_quota(self, grant: Grant, key: str) -> None:
        reason = self.injected.take()
        if reason is not None:
            raise named_error(reason)
        now = self.sandbox.clock.time()
        user = f"user {grant.client_id} {grant.account_id}"
        settings = self.settings
        if self.windows.allow(user, now, settings.user_rate_limit_per_minute) and (
            self.windows.allow(
                f"project {grant.client_id}", now, settings.project_rate_limit_per_minute
            )
        ):
            return
        status = settings.rate_limit_status
        if status == "random":
            status = 403 if self.sandbox.rng.random() < 0.5 else 429
        self.sandbox.stats.rate_limited[key] += 1
        raise rate_limited(int(status))

    def account(self, account_id: str) -> Account:
        found = self.sandbox.accounts.get("google", account_id)
        return found if found is not None else Account("google", account_id, None)

    def calendar(self, call: Call) -> Calendar:
        cal = self.store.calendar(call.account, call.request.match_info["calendarId"])
        if cal is None:
            raise not_found()
        return cal

    def event(self, call: Call, cal: Calendar) -> Event:
        event = self.store.resolve(cal, call.request.match_info["eventId"])
        if event is None:
            raise not_found()
        return event

    # -- calendars -----------------------------------------------------------------------

    async def calendar_list(self, call: Call) -> web.Response:
        owned = self.store.calendars(call.account)
        latest = max(c.updated_us for c in owned.values())
        return web.json_response(
            {
                "kind": "calendar#calendarList",
                "etag": f'"{latest}"',
                "nextSyncToken": f"CL{latest}==",
                "items": [c.list_entry() for c in owned.values()],
            }
        )

    async def calendar_get(self, call: Call) -> web.Response:
        return web.json_response(self.calendar(call).resource())

    # -- events --------------------------------------------------------------------------

    async def events_list(self, call: Call) -> web.Response:
        cal = self.calendar(call)
        query = parse_query(call.request.query)
        listing = self.lister.page(cal, query)
        return web.Response(text=listing.text(), content_type="application/json")

    async def events_insert(self, call: Call) -> web.Response:
        cal = self.calendar(call)
        event = self.store.insert(cal, await json_body(call.request))
        return web.json_response(render(cal, event))

    async def events_get(self, call: Call) -> web.Response:
        cal = self.calendar(call)
        event = self.event(call, cal)
        if call.request.headers.get("If-None-Match") == event.etag:
            return web.Response(status=304)
        return web.json_response(render(cal, event))

    def _precondition(self, call: Call, event: Event) -> None:
        expected = call.request.headers.get("If-Match")
        if expected is not None and expected.strip() not in (event.etag, "*"):
            raise precondition_failed()

    async def events_update(self, call: Call) -> web.Response:
        cal = self.calendar(call)
        event = self.event(call, cal)
        body = await json_body(call.request)
        self._precondition(call, event)
        return web.json_response(render(cal, self.store.replace(cal, event, body)))

    async def events_patch(self, call: Call) -> web.Response:
        cal = self.calendar(call)
        event = self.event(call, cal)
        body = await json_body(call.request)
        self._precondition(call, event)
        return web.json_response(render(cal, self.store.patch(cal, event, body)))

    async def events_delete(self, call: Call) -> web.Response:
        cal = self.calendar(call)
        event = self.event(call, cal)
        self._precondition(call, event)
        self.store.delete(cal, event)
        return web.Response(status=204)

    # -- channels ------------------------------------------------------------------------

    async def watch(self, call: Call) -> web.Response:
        cal = self.calendar(call)
        body = await json_body(call.request)
        channel = self._channel(call, cal, body)
        sync = self.pusher.open(channel)
        if self.settings.sync_before_watch_response:
            await self.pusher.send_now(channel, sync)
        else:
            self.pusher.enqueue(channel, sync)
        return web.json_response(channel.resource())

    def _channel(self, call: Call, cal: Calendar, body: dict[str, Any]) -> Channel:
        channel_id = body.get("id")
        if not isinstance(channel_id, str) or not channel_id:
            raise required("Required")
        if len(channel_id) > 64:
            raise invalid("Invalid value for: id")
        if self.pusher.get(channel_id) is not None:
            raise GoogleError(400, "channelIdNotUnique", "Channel id not unique")
        if body.get("type") not in ("web_hook", "webhook"):
            raise invalid(f"Invalid value for: type, {body.get('type')!r} is not supported")
        address = self._address(body.get("address"))
        token = body.get("token")
        if token is not None and (not isinstance(token, str) or len(token) > 256):
            raise invalid("Invalid value for: token")
        now_ms = self.pusher.now_ms()
        requested = self._requested_expiration(body, now_ms)
        ceiling = now_ms + self.settings.channel_max_ttl_seconds * 1000
        default_ttl = self.settings.channel_default_ttl_seconds * 1000
        resource_uri = str(call.request.url.origin()) + (
            f"{PREFIX}/calendars/{quote(cal.id, safe='@')}/events?alt=json"
        )
        return Channel(
            id=channel_id,
            resource_id=cal.resource_id,
            resource_uri=resource_uri,
            token=token,
            expiration_ms=min(requested or now_ms + default_ttl, ceiling),
            expiration_set=requested is not None,
            address=address,
            account_id=call.account.id,
            client_id=call.grant.client_id,
            calendar=cal,
        )

    def _address(self, address: Any) -> str:
        if not isinstance(address, str) or not address:
            raise required("Required")
        try:
            url = URL(address)
        except ValueError:
            url = None
        host = url.host if url is not None and url.absolute else None
        if url is not None and host and url.scheme == "https":
            return address
        # Documented sandbox exception: plain http to the loopback interface.
        if (
            url is not None
            and host
            and url.scheme == "http"
            and (host in LOOPBACK or host.startswith("127.") or self.settings.allow_http_addresses)
        ):
            return address
        raise GoogleError(
            400, "push.webhookUrlNotHttps", f"WebHook callback must be HTTPS: {address}"
        )

    def _requested_expiration(self, body: dict[str, Any], now_ms: int) -> int | None:
        raw = body.get("expiration")
        if raw is not None:
            # int64 fields arrive as JSON numbers or as decimal strings.
            if isinstance(raw, float) and raw.is_integer():
                raw = int(raw)
            if isinstance(raw, bool) or not isinstance(raw, int | str):
                raise invalid("Invalid value for: expiration")
            try:
                return int(raw)
            except ValueError:
                raise invalid("Invalid value for: expiration") from None
        params = body.get("params")
        if params is not None and not isinstance(params, dict):
            raise invalid("Invalid value for: params")
        ttl = (params or {}).get("ttl")
        if ttl is None:
            return None
        try:
            seconds = int(str(ttl))
        except ValueError:
            raise invalid("Invalid value for: params.ttl") from None
        return now_ms + seconds * 1000

    async def channels_stop(self, call: Call) -> web.Response:
        body = await json_body(call.request)
        channel_id, resource_id = body.get("id"), body.get("resourceId")
        if not isinstance(channel_id, str) or not channel_id:
            raise required("Required")
        if not isinstance(resource_id, str) or not resource_id:
            raise required("Required")
        channel = self.pusher.get(channel_id)
        # Only the creating user, through the same OAuth client, may stop a channel.
        if (
            channel is None
            or channel.resource_id != resource_id
            or channel.account_id != call.account.id
            or channel.client_id != call.grant.client_id
        ):
            project = call.grant.client_id.split("-", 1)[0]
            raise GoogleError(
                404, "notFound", f"Channel '{channel_id}' not found for project '{project}'"
            )
        self.pusher.stop(channel)
        return web.Response(status=204)


def build(sandbox: Sandbox, config: SandboxConfig) -> GoogleCalendar:
    return GoogleCalendar(sandbox, config)
