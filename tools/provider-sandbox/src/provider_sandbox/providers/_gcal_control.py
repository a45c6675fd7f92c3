"""Calendar control routes (ARCHITECTURE §8, PROVIDERS.md §5.5) under
``/_sandbox/google_calendar/``: seed calendars and events as if edited in Google's UI (each
change pushes ``exists``), expire sync tokens, list channels, tune the emulation."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from provider_sandbox.core import Account
from provider_sandbox.providers._gcal_errors import GoogleError
from provider_sandbox.providers._gcal_list import ListQuery
from provider_sandbox.providers._gcal_store import Calendar, render
from provider_sandbox.providers._gcal_times import zone

if TYPE_CHECKING:
    from provider_sandbox.providers.google_calendar import GoogleCalendar

BASE = "/_sandbox/google_calendar"
MAX_GENERATE = 10_000


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


class ControlError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.response = _error(status, code, message)


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ControlError(400, "bad_request", "body is not JSON") from None
    if not isinstance(body, dict):
        raise ControlError(400, "bad_request", "expected an object")
    return body


class Control:
    def __init__(self, part: GoogleCalendar) -> None:
        self.part = part

    def setup(self, app: web.Application) -> None:
        events = BASE + "/users/{user_id}/calendars/{calendar_id}/events"
        routes = [
            ("POST", BASE + "/users/{user_id}/calendars", self.add_calendar),
            ("POST", events, self.add_events),
            ("GET", events, self.get_events),
            ("PUT", events + "/{event_id}", self.edit_event),
            ("DELETE", events + "/{event_id}", self.delete_event),
            ("POST", BASE + "/invalidate_sync_tokens", self.invalidate),
            ("GET", BASE + "/channels", self.channels),
            ("GET", BASE + "/config", self.get_config),
            ("POST", BASE + "/config", self.set_config),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, self._guard(handler))

    @staticmethod
    def _guard(handler: Any) -> Any:
        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                response: web.StreamResponse = await handler(request)
            except ControlError as err:
                return err.response
            except GoogleError as err:
                return err.response()
            return response

        return guarded

    # -- lookups -------------------------------------------------------------------------

    def _account(self, user_id: str) -> Account:
        """A Google account id, else an id the store already knows, else a login hint
        (so data can be seeded before the account first signs in)."""
        sandbox = self.part.sandbox
        found = sandbox.accounts.get("google", user_id)
        if found is not None:
            return found
        if user_id in self.part.store.users:
            return Account("google", user_id, None)
        return sandbox.accounts.get_or_create("google", user_id)

    def _calendar(self, request: web.Request) -> Calendar:
        account = self._account(request.match_info["user_id"])
        cal = self.part.store.calendar(account, request.match_info["calendar_id"])
        if cal is None:
            raise ControlError(404, "not_found", "no such calendar")
        return cal

    # -- calendars and events ------------------------------------------------------------

    async def add_calendar(self, request: web.Request) -> web.Response:
        account = self._account(request.match_info["user_id"])
        body = await _body(request)
        cal_id = body.get("id")
        summary = body.get("summary", "Sandbox calendar")
        description = body.get("description", "")
        time_zone = body.get("timeZone", "UTC")
        if cal_id is not None and (not isinstance(cal_id, str) or not cal_id):
            raise ControlError(400, "bad_request", "'id' must be a non-empty string")
        if not isinstance(summary, str) or not isinstance(description, str):
            raise ControlError(400, "bad_request", "'summary'/'description' must be strings")
        if not isinstance(time_zone, str) or zone(time_zone) is None:
            raise ControlError(400, "bad_request", "'timeZone' must be an IANA zone name")
        cal = self.part.store.add_calendar(account, cal_id, summary, description, time_zone)
        return web.json_response({"user_id": account.id, **cal.list_entry()}, status=201)

    async def add_events(self, request: web.Request) -> web.Response:
        cal = self._calendar(request)
        body = await _body(request)
        if "generate" in body:
            count = body["generate"]
            if (
                not isinstance(count, int)
                or isinstance(count, bool)
                or not (0 <= count <= MAX_GENERATE)
            ):
                raise ControlError(400, "bad_request", f"'generate' must be 0..{MAX_GENERATE}")
            specs = [self._generated(cal, n) for n in range(count)]
        elif isinstance(body.get("events"), list):
            specs = body["events"]
            if not all(isinstance(s, dict) for s in specs):
                raise ControlError(400, "bad_request", "'events' must hold objects")
            specs = [self._with_times(cal, s) for s in specs]
        else:
            raise ControlError(400, "bad_request", "expected 'events' or 'generate'")
        created = [self.part.store.insert(cal, spec) for spec in specs]
        return web.json_response({"items": [render(cal, e) for e in created]}, status=201)

    def _generated(self, cal: Calendar, number: int) -> dict[str, Any]:
        rng = self.part.sandbox.rng
        spec: dict[str, Any] = {"summary": f"Sandbox event {number + 1}"}
        if rng.random() < 0.1:
            day = self._now(cal).date() + timedelta(days=rng.randint(-14, 30))
            spec["start"] = {"date": day.isoformat()}
            spec["end"] = {"date": (day + timedelta(days=1)).isoformat()}
            return spec
        start = self._now(cal).replace(minute=0, second=0, microsecond=0) + timedelta(
            days=rng.randint(-14, 30), hours=rng.randint(-8, 8)
        )
        end = start + timedelta(minutes=rng.choice((30, 45, 60, 90, 120)))
        spec["start"] = {"dateTime": start.isoformat()}
        spec["end"] = {"dateTime": end.isoformat()}
        return spec

    def _with_times(self, cal: Calendar, spec: dict[str, Any]) -> dict[str, Any]:
        if "start" in spec or "end" in spec:
            return spec
        start = self._now(cal).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        return {
            **spec,
            "start": {"dateTime": start.isoformat()},
            "end": {"dateTime": (start + timedelta(hours=1)).isoformat()},
        }

    def _now(self, cal: Calendar) -> datetime:
        tz = zone(cal.time_zone)
        now = self.part.sandbox.clock.now()
        return now.astimezone(tz) if tz is not None else now

    async def get_events(self, request: web.Request) -> web.Response:
        cal = self._calendar(request)
        listing = self.part.lister.page(cal, ListQuery(max_results=10**9, show_deleted=True))
        return web.json_response(listing.body())

    async def edit_event(self, request: web.Request) -> web.Response:
        cal = self._calendar(request)
        event = self.part.store.resolve(cal, request.match_info["event_id"])
        if event is None:
            raise ControlError(404, "not_found", "no such event")
        updated = self.part.store.patch(cal, event, await _body(request))
        return web.json_response(render(cal, updated))

    async def delete_event(self, request: web.Request) -> web.Response:
        cal = self._calendar(request)
        event = self.part.store.resolve(cal, request.match_info["event_id"])
        if event is None:
            raise ControlError(404, "not_found", "no such event")
        removed = self.part.store.delete(cal, event)
        return web.json_response(render(cal, removed, minimal=True))

    # -- sync tokens, channels, settings -------------------------------------------------

    async def invalidate(self, request: web.Request) -> web.Response:
        body = await _body(request)
        if "user_id" in body or "calendar_id" in body:
            user_id, cal_id = body.get("user_id"), body.get("calendar_id", "primary")
            if not isinstance(user_id, str) or not isinstance(cal_id, str):
                raise ControlError(400, "bad_request", "'user_id'/'calendar_id' are strings")
            cal = self.part.store.calendar(self._account(user_id), cal_id)
            if cal is None:
                raise ControlError(404, "not_found", "no such calendar")
            return web.json_response({"invalidated": self.part.store.invalidate(cal)})
        return web.json_response({"invalidated": self.part.store.invalidate()})

    async def channels(self, _request: web.Request) -> web.Response:
        listed = [
            {
                **channel.resource(),
                "address": channel.address,
                "user_id": channel.account_id,
                "calendar_id": channel.calendar.id,
                "messageNumber": channel.message_number,
            }
            for channel in self.part.pusher.live()
        ]
        return web.json_response({"channels": listed})

    def _config_body(self) -> dict[str, Any]:
        return {"config": self.part.settings.as_dict(), "injected": list(self.part.injected.queue)}

    async def get_config(self, _request: web.Request) -> web.Response:
        return web.json_response(self._config_body())

    async def set_config(self, request: web.Request) -> web.Response:
        body = await _body(request)
        inject = body.pop("inject", None)
        try:
            self.part.settings.update(body)
            if inject is not None:
                self.part.injected.add(inject)
        except ValueError as err:
            raise ControlError(400, "bad_request", str(err)) from None
        return web.json_response(self._config_body())
