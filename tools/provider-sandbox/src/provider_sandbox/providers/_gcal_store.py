"""Calendar v3 state (PROVIDERS.md §5.2, §5.3): calendars per Google account, events kept in
modification order so incremental sync reads only what changed, and every write path
(insert, update, patch, delete, recurring-instance exceptions) shared by the API and the
control routes."""

from __future__ import annotations

import base64
import json
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from random import Random
from typing import Any

from provider_sandbox.core import Account
from provider_sandbox.providers._gcal_config import GcalSettings
from provider_sandbox.providers._gcal_errors import GoogleError, deleted, duplicate, invalid
from provider_sandbox.providers._gcal_events import validate_fields
from provider_sandbox.providers._gcal_times import (
    Recurrence,
    When,
    format_ms,
    instance_suffix,
    occurrences,
    parse_recurrence,
    parse_when,
)

BASE32HEX = "0123456789abcdefghijklmnopqrstuv"


@dataclass
class Event:
    id: str
    data: dict[str, Any]  # the client-writable fields, as last written
    start: When
    end: When
    created_us: int
    updated_us: int
    recurrence: Recurrence | None = None
    recurring_event_id: str | None = None
    original_start: When | None = None
    # An instance dropped by a change of its series' rules: reported as cancelled to
    # singleEvents incremental syncs only.
    ghost: bool = False
    # (updated_us, minimal) -> body: renders are reused until the next write.
    rendered: dict[tuple[int, bool], dict[str, Any]] = field(default_factory=dict, repr=False)
    rendered_json: dict[tuple[int, bool], str] = field(default_factory=dict, repr=False)

    @property
    def cancelled(self) -> bool:
        return self.data.get("status") == "cancelled"

    @property
    def etag(self) -> str:
        # Google's event etags are quoted decimal strings (twice the update time in µs).
        return f'"{2 * self.updated_us}"'


@dataclass
class Calendar:
    key: str  # internal, stable: what sync tokens name
    id: str
    owner_id: str
    owner_email: str
    summary: str
    description: str
    time_zone: str
    primary: bool
    resource_id: str
    updated_us: int
    epoch: int = 0
    # Events in ascending ``updated_us``: each write moves its event to the end.
    events: OrderedDict[str, Event] = field(default_factory=OrderedDict)
    exceptions: dict[str, dict[int, str]] = field(default_factory=dict)
    channels: set[str] = field(default_factory=set)
    # Full listings by filter set, valid while ``updated_us`` (and the day) stand still.
    listings: dict[tuple[Any, ...], tuple[int, int, Any]] = field(default_factory=dict)

    @property
    def etag(self) -> str:
        return '"' + base32hex_of(self.updated_us, 16) + '"'

    def list_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "kind": "calendar#calendarListEntry",
            "etag": '"' + str(self.updated_us) + '"',
            "id": self.id,
            "summary": self.summary,
        }
        if self.description:
            entry["description"] = self.description
        entry.update(
            timeZone=self.time_zone,
            colorId="14",
            backgroundColor="#9fe1e7",
            foregroundColor="#000000",
            selected=True,
            accessRole="owner",
            defaultReminders=[],
            conferenceProperties={"allowedConferenceSolutionTypes": ["hangoutsMeet"]},
        )
        if self.primary:
            entry["primary"] = True
        return entry

    def resource(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "calendar#calendar",
            "etag": self.etag,
            "id": self.id,
            "summary": self.summary,
        }
        if self.description:
            body["description"] = self.description
        body["timeZone"] = self.time_zone
        body["conferenceProperties"] = {"allowedConferenceSolutionTypes": ["hangoutsMeet"]}
        return body


def base32hex_of(number: int, width: int) -> str:
    raw = number.to_bytes(width * 5 // 8, "big")
    return base64.b32hexencode(raw).decode().lower()


def valid_event_id(value: str) -> bool:
    return 5 <= len(value) <= 1024 and all(c in BASE32HEX for c in value)


def _duration(event: Event) -> timedelta:
    return event.end.local - event.start.local


class Store:
    """Every Google account's calendars. Stamps are µs on the virtual clock and strictly
    increasing, so they double as the change sequence that sync tokens point into."""

    def __init__(
        self, rng: Random, clock_time: Callable[[], float], settings: GcalSettings
    ) -> None:
        self.rng = rng
        self.settings = settings
        self.clock_time = clock_time
        self.users: dict[str, dict[str, Calendar]] = {}
        self.by_key: dict[str, Calendar] = {}
        self.epoch = 0
        self.last_stamp = 0
        self.on_change: Callable[[Calendar], None] = lambda _cal: None

    def reset(self) -> None:
        self.users.clear()
        self.by_key.clear()
        self.epoch = 0
        self.last_stamp = 0

    def stamp(self) -> int:
        self.last_stamp = max(int(self.clock_time() * 1_000_000), self.last_stamp + 1)
        return self.last_stamp

    def now_us(self) -> int:
        return int(self.clock_time() * 1_000_000)

    def random_id(self, length: int = 26) -> str:
        return "".join(BASE32HEX[self.rng.randrange(32)] for _ in range(length))

    # -- calendars ------------------------------------------------------------------------

    def calendars(self, account: Account) -> dict[str, Calendar]:
        """The account's calendars; the primary one exists from first use, named by the
        account's e-mail address as Google names it."""
        owned = self.users.get(account.id)
        if owned is None:
            owned = self.users[account.id] = {}
            email = _email_of(account)
            self._add(account, email, email, "", "UTC", primary=True)
        return owned

    def calendar(self, account: Account, calendar_id: str) -> Calendar | None:
        owned = self.calendars(account)
        if calendar_id == "primary":
            return next(c for c in owned.values() if c.primary)
        return owned.get(calendar_id)

    def add_calendar(
        self,
        account: Account,
        calendar_id: str | None,
        summary: str,
        description: str,
        time_zone: str,
    ) -> Calendar:
        owned = self.calendars(account)
        cal_id = calendar_id or f"{self.rng.getrandbits(256):064x}@group.calendar.google.com"
        if cal_id in owned or cal_id == "primary":
            raise duplicate()
        return self._add(account, cal_id, summary, description, time_zone, primary=False)

    def _add(
        self,
        account: Account,
        cal_id: str,
        summary: str,
        description: str,
        time_zone: str,
        *,
        primary: bool,
    ) -> Calendar:
        key = f"{account.id}.{len(self.by_key) + 1}"
        cal = Calendar(
            key=key,
            id=cal_id,
            owner_id=account.id,
            owner_email=_email_of(account),
            summary=summary,
            description=description,
            time_zone=time_zone,
            primary=primary,
            resource_id=self.random_id(27),
            updated_us=self.stamp(),
        )
        self.users[account.id][cal_id] = cal
        self.by_key[key] = cal
        return cal

    def invalidate(self, cal: Calendar | None = None) -> int:
        if cal is not None:
            cal.epoch += 1
            return 1
        self.epoch += 1
        return len(self.by_key)

    # -- reading events -------------------------------------------------------------------

    def instances(self, parent: Event, until_us: int | None = None) -> Iterator[Event]:
        """A series' instances starting before ``until_us``, exceptions not substituted.
        A series without an end is expanded ``expand_horizon_days`` past now (or past its
        first instance, when that lies ahead)."""
        if parent.recurrence is None:
            return
        length = _duration(parent)
        days = self.settings.expand_horizon_days * 86_400_000_000
        open_us = max(self.now_us(), parent.start.us) + days
        for when in occurrences(parent.start, parent.recurrence, until_us, open_us):
            data = {k: v for k, v in parent.data.items() if k != "recurrence"}
            yield Event(
                id=f"{parent.id}_{instance_suffix(when)}",
                data=data,
                start=when,
                end=When(when.all_day, when.local + length, parent.end.tz_name),
                created_us=parent.created_us,
                updated_us=parent.updated_us,
                recurring_event_id=parent.id,
                original_start=when,
            )

    def exception_of(self, cal: Calendar, parent_id: str, original_us: int) -> Event | None:
        event_id = cal.exceptions.get(parent_id, {}).get(original_us)
        return cal.events.get(event_id) if event_id else None

    def resolve(self, cal: Calendar, event_id: str) -> Event | None:
        """A stored event, or an instance of a stored series named by Google's instance id."""
        found = cal.events.get(event_id)
        if found is not None and not found.ghost:
            return found
        parent_id, sep, _ = event_id.rpartition("_")
        parent = cal.events.get(parent_id) if sep else None
        if parent is None or parent.recurrence is None or parent.cancelled:
            return None
        for instance in self.instances(parent):
            if instance.id == event_id:
                return instance
        return None

    # -- writes ---------------------------------------------------------------------------

    def _commit(self, cal: Calendar, event: Event) -> Event:
        event.updated_us = self.stamp()
        cal.events[event.id] = event
        cal.events.move_to_end(event.id)
        cal.updated_us = event.updated_us
        if event.recurring_event_id and event.original_start is not None:
            cal.exceptions.setdefault(event.recurring_event_id, {})[event.original_start.us] = (
                event.id
            )
        return event

    def _build(
        self, cal: Calendar, data: dict[str, Any], base: Event | None
    ) -> tuple[When, When, Recurrence | None]:
        start = parse_when(data.get("start"), "start", cal.time_zone)
        end = parse_when(data.get("end"), "end", cal.time_zone)
        if start.all_day != end.all_day:
            raise invalid("Start and end times must either both be date or both be dateTime.")
        if end.us < start.us:
            raise GoogleError(400, "timeRangeEmpty", "The specified time range is empty.")
        recurrence = None
        if data.get("recurrence"):
            if base is not None and base.recurring_event_id:
                raise invalid("Invalid recurrence rule.")
            if not start.all_day and not (start.tz_name and end.tz_name):
                raise GoogleError(400, "required", "Missing time zone definition for start time.")
            recurrence = parse_recurrence(data["recurrence"], start)
        return start, end, recurrence

    def insert(self, cal: Calendar, body: dict[str, Any]) -> Event:
        data = validate_fields(body)
        event_id = body.get("id")
        if event_id is not None:
            if not isinstance(event_id, str) or not valid_event_id(event_id):
                raise invalid("Invalid resource id value.")
            if event_id in cal.events:
                raise duplicate()
        else:
            event_id = self.random_id()
        data.setdefault("status", "confirmed")
        data.setdefault("iCalUID", f"{event_id}@google.com")
        data.setdefault("sequence", 0)
        start, end, recurrence = self._build(cal, data, None)
        now = self.stamp()
        event = Event(event_id, data, start, end, now, now, recurrence)
        self._commit(cal, event)
        self.on_change(cal)
        return event

    def replace(self, cal: Calendar, current: Event, body: dict[str, Any]) -> Event:
        data = validate_fields(body)
        data.setdefault("status", "confirmed")
        data.setdefault("iCalUID", current.data.get("iCalUID", f"{current.id}@google.com"))
        return self._rewrite(cal, current, data)

    def patch(self, cal: Calendar, current: Event, body: dict[str, Any]) -> Event:
        data = merge(current.data, validate_fields(body, partial=True))
        return self._rewrite(cal, current, data)

    def _rewrite(self, cal: Calendar, current: Event, data: dict[str, Any]) -> Event:
        start, end, recurrence = self._build(cal, data, current)
        if "sequence" not in data or data["sequence"] == current.data.get("sequence"):
            moved = start.us != current.start.us or end.us != current.end.us
            data["sequence"] = int(current.data.get("sequence", 0)) + (1 if moved else 0)
        event = Event(
            current.id,
            data,
            start,
            end,
            current.created_us,
            current.updated_us,
            recurrence,
            current.recurring_event_id,
            current.original_start,
        )
        old_instances = self._instance_keys(cal, current)
        self._commit(cal, event)
        self._ghost_dropped(cal, event, old_instances)
        if event.cancelled:
            self._cancel_exceptions(cal, event)
        self.on_change(cal)
        return event

    def delete(self, cal: Calendar, current: Event) -> Event:
        if current.cancelled:
            raise deleted()
        data = dict(current.data, status="cancelled")
        event = Event(
            current.id,
            data,
            current.start,
            current.end,
            current.created_us,
            current.updated_us,
            current.recurrence,
            current.recurring_event_id,
            current.original_start,
        )
        self._commit(cal, event)
        self._cancel_exceptions(cal, event)
        self.on_change(cal)
        return event

    def _cancel_exceptions(self, cal: Calendar, parent: Event) -> None:
        if parent.recurrence is None:
            return
        for event_id in cal.exceptions.get(parent.id, {}).values():
            child = cal.events[event_id]
            if not child.cancelled:
                child.data = dict(child.data, status="cancelled")
                self._commit(cal, child)

    def _instance_keys(self, cal: Calendar, event: Event) -> dict[int, Event]:
        if event.recurrence is None or event.cancelled:
            return {}
        return {i.start.us: i for i in self.instances(event)}

    def _ghost_dropped(self, cal: Calendar, event: Event, before: dict[int, Event]) -> None:
        if not before:
            return
        after = self._instance_keys(cal, event)
        for stamp, old in before.items():
            if stamp in after or self.exception_of(cal, event.id, stamp) is not None:
                continue
            old.data = {"status": "cancelled"}
            old.ghost = True
            self._commit(cal, old)


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Google's patch semantics: objects merge, arrays and scalars replace, null clears.
    ``start``/``end`` are replaced whole, or a date would linger beside a dateTime."""
    out = dict(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif (
            isinstance(value, dict)
            and isinstance(out.get(key), dict)
            and key
            not in (
                "start",
                "end",
                "originalStartTime",
            )
        ):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _email_of(account: Account) -> str:
    email = account.profile.get("email") or account.login_hint or ""
    return email if "@" in email else f"user{account.id}@gmail.com"


def html_link(event_id: str, calendar_id: str) -> str:
    short = calendar_id.removesuffix(".calendar.google.com").replace("@group", "@g")
    eid = base64.b64encode(f"{event_id} {short}".encode()).decode().rstrip("=")
    return f"https://www.google.com/calendar/event?eid={eid}"


def render(cal: Calendar, event: Event, *, minimal: bool = False) -> dict[str, Any]:
    """An event as Google writes it; ``minimal`` for deletions in sync listings, which
    carry only the id (plus the series link for a cancelled instance). Callers must not
    mutate the body: it is cached on the event until its next write."""
    key = (event.updated_us, minimal)
    cached = event.rendered.get(key)
    if cached is None:
        cached = _render(cal, event, minimal)
        event.rendered.clear()
        event.rendered[key] = cached
    return cached


def render_json(cal: Calendar, event: Event, *, minimal: bool = False) -> str:
    key = (event.updated_us, minimal)
    cached = event.rendered_json.get(key)
    if cached is None:
        cached = json.dumps(render(cal, event, minimal=minimal))
        event.rendered_json.clear()
        event.rendered_json[key] = cached
    return cached


def _render(cal: Calendar, event: Event, minimal: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "calendar#event", "etag": event.etag, "id": event.id}
    if minimal:
        body["status"] = "cancelled"
        if event.recurring_event_id and event.original_start is not None:
            body["recurringEventId"] = event.recurring_event_id
            body["originalStartTime"] = event.original_start.render()
        return body
    data = event.data
    body["status"] = data.get("status", "confirmed")
    body["htmlLink"] = html_link(event.id, cal.id)
    body["created"] = format_ms(event.created_us)
    body["updated"] = format_ms(event.updated_us)
    for key in ("summary", "description", "location", "colorId"):
        if key in data:
            body[key] = data[key]
    body["creator"] = {"email": cal.owner_email, "self": True}
    if cal.primary:
        body["organizer"] = {"email": cal.owner_email, "self": True}
    else:
        body["organizer"] = {"email": cal.id, "displayName": cal.summary, "self": True}
    body["start"] = event.start.render()
    body["end"] = event.end.render()
    if event.recurrence is not None:
        body["recurrence"] = data["recurrence"]
    if event.recurring_event_id and event.original_start is not None:
        body["recurringEventId"] = event.recurring_event_id
        body["originalStartTime"] = event.original_start.render()
    for key, value in data.items():
        if key not in body and key not in ("start", "end", "reminders", "eventType"):
            body[key] = value
    body.setdefault("iCalUID", f"{event.id}@google.com")
    body.setdefault("sequence", 0)
    body["reminders"] = data.get("reminders", {"useDefault": True})
    body["eventType"] = data.get("eventType", "default")
    return body
