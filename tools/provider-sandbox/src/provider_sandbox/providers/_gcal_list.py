"""``events.list`` and the sync protocol (PROVIDERS.md §5.2): filters, ``singleEvents``
expansion, opaque page tokens (keyed cursors, so deletions never shift a page), and sync
tokens that point into the store's change sequence and expire with 410."""

from __future__ import annotations

import base64
import binascii
import json
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from random import Random
from typing import Any

from multidict import MultiMapping

from provider_sandbox.providers._gcal_config import GcalSettings
from provider_sandbox.providers._gcal_errors import (
    bad_request,
    full_sync_required,
    invalid_parameter,
    updated_min_too_old,
)
from provider_sandbox.providers._gcal_events import matches_properties, matches_text
from provider_sandbox.providers._gcal_store import Calendar, Event, Store, render_json
from provider_sandbox.providers._gcal_times import (
    check_range,
    format_ms,
    parse_rfc3339,
    to_us,
    zone,
)

DEFAULT_MAX_RESULTS = 250
MAX_RESULTS = 2500
FORBIDDEN_WITH_SYNC = (
    "iCalUID",
    "orderBy",
    "privateExtendedProperty",
    "q",
    "sharedExtendedProperty",
    "timeMin",
    "timeMax",
    "updatedMin",
)
_MAX_ARTIFACT_PAGES = 3

Key = tuple[int, str]


@dataclass(frozen=True)
class Listing:
    """One page: the collection fields (tokens included) and each item's JSON, kept as
    text because re-encoding unchanged events dominated the cost of a list call."""

    head: dict[str, Any]
    items: list[str]

    def text(self) -> str:
        return json.dumps(self.head)[:-1] + ', "items": [' + ", ".join(self.items) + "]}"

    def body(self) -> dict[str, Any]:
        return {**self.head, "items": [json.loads(item) for item in self.items]}


@dataclass(frozen=True)
class ListQuery:
    max_results: int = DEFAULT_MAX_RESULTS
    page_token: str | None = None
    sync_token: str | None = None
    show_deleted: bool = False
    single_events: bool = False
    order_by: str | None = None
    time_min: int | None = None
    time_max: int | None = None
    updated_min: int | None = None
    q: str | None = None
    ical_uid: str | None = None
    private_props: tuple[tuple[str, str], ...] = ()
    shared_props: tuple[tuple[str, str], ...] = ()
    time_zone: str | None = None


def _bool(query: Mapping[str, str], name: str) -> bool | None:
    raw = query.get(name)
    if raw is None:
        return None
    if raw.lower() not in ("true", "false"):
        raise invalid_parameter(name)
    return raw.lower() == "true"


def _time(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None:
        return None
    moment = parse_rfc3339(raw)
    if moment is None:
        raise bad_request()
    return to_us(moment)


def _props(query: MultiMapping[str], name: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for raw in query.getall(name, []):
        key, sep, value = raw.partition("=")
        if not sep or not key:
            raise invalid_parameter(name)
        pairs.append((key, value))
    return tuple(pairs)


def parse_query(query: MultiMapping[str]) -> ListQuery:
    sync_token = query.get("syncToken") or None
    show_deleted = _bool(query, "showDeleted")
    if sync_token is not None:
        for name in FORBIDDEN_WITH_SYNC:
            if name in query:
                raise invalid_parameter(name)
        if show_deleted is False:
            raise invalid_parameter("showDeleted")
    raw_max = query.get("maxResults")
    max_results = DEFAULT_MAX_RESULTS
    if raw_max is not None:
        try:
            max_results = int(raw_max)
        except ValueError:
            raise invalid_parameter("maxResults") from None
        if max_results < 1:
            raise invalid_parameter("maxResults")
    single = bool(_bool(query, "singleEvents"))
    order_by = query.get("orderBy")
    if order_by is not None and order_by not in ("startTime", "updated"):
        raise invalid_parameter("orderBy")
    if order_by == "startTime" and not single:
        raise bad_request("The requested ordering is not available for the particular query.")
    time_min, time_max = _time(query, "timeMin"), _time(query, "timeMax")
    check_range(time_min, time_max, "timeMax")
    time_zone = query.get("timeZone")
    if time_zone is not None and zone(time_zone) is None:
        raise invalid_parameter("timeZone")
    return ListQuery(
        max_results=min(max_results, MAX_RESULTS),
        page_token=query.get("pageToken") or None,
        sync_token=sync_token,
        show_deleted=bool(show_deleted),
        single_events=single,
        order_by=order_by,
        time_min=time_min,
        time_max=time_max,
        updated_min=_time(query, "updatedMin"),
        q=query.get("q") or None,
        ical_uid=query.get("iCalUID") or None,
        private_props=_props(query, "privateExtendedProperty"),
        shared_props=_props(query, "sharedExtendedProperty"),
        time_zone=time_zone,
    )


# -- tokens -------------------------------------------------------------------------------


def _encode(payload: list[Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode(token: str) -> list[Any] | None:
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, binascii.Error, UnicodeError):
        return None
    return payload if isinstance(payload, list) else None


@dataclass(frozen=True)
class Cursor:
    """Where a listing stands: ``since`` > 0 for an incremental one, ``snapshot`` the
    change stamp the final sync token will carry, ``after`` the last key served."""

    since: int
    snapshot: int
    cal_epoch: int
    store_epoch: int
    after: Key | None = None
    artifacts: int = 0


def sync_token(store: Store, cal: Calendar, snapshot: int) -> str:
    return _encode(["s", cal.key, snapshot, cal.epoch, store.epoch, store.now_us()])


def _from_sync_token(token: str, store: Store, cal: Calendar, settings: GcalSettings) -> Cursor:
    payload = _decode(token)
    # A garbled token is answered like an expired one: Google only says "full sync".
    if payload is None or len(payload) != 6 or payload[0] != "s" or payload[1] != cal.key:
        raise full_sync_required()
    _, _, since, cal_epoch, store_epoch, issued = payload
    if not all(isinstance(v, int) for v in (since, cal_epoch, store_epoch, issued)):
        raise full_sync_required()
    if cal_epoch != cal.epoch or store_epoch != store.epoch:
        raise full_sync_required()
    max_age = settings.sync_token_max_age_seconds
    if max_age is not None and store.now_us() - issued > max_age * 1_000_000:
        raise full_sync_required()
    return Cursor(max(since, 1), store.last_stamp, cal_epoch, store_epoch)


def _page_token(cal: Calendar, cursor: Cursor) -> str:
    after = list(cursor.after) if cursor.after else None
    return _encode(
        [
            "p",
            cal.key,
            cursor.since,
            cursor.snapshot,
            cursor.cal_epoch,
            cursor.store_epoch,
            after,
            cursor.artifacts,
        ]
    )


def _from_page_token(token: str, store: Store, cal: Calendar) -> Cursor:
    payload = _decode(token)
    if payload is None or len(payload) != 8 or payload[0] != "p" or payload[1] != cal.key:
        raise invalid_parameter("pageToken")
    _, _, since, snapshot, cal_epoch, store_epoch, after, artifacts = payload
    ints = (since, snapshot, cal_epoch, store_epoch, artifacts)
    if not all(isinstance(v, int) for v in ints):
        raise invalid_parameter("pageToken")
    if after is not None and not (
        isinstance(after, list)
        and len(after) == 2
        and isinstance(after[0], int)
        and isinstance(after[1], str)
    ):
        raise invalid_parameter("pageToken")
    if since and (cal_epoch != cal.epoch or store_epoch != store.epoch):
        raise full_sync_required()
    key = (after[0], after[1]) if after else None
    return Cursor(since, snapshot, cal_epoch, store_epoch, key, artifacts)


# -- selection ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    key: Key
    event: Event
    minimal: bool


class Lister:
    def __init__(self, store: Store, settings: GcalSettings, rng: Random) -> None:
        self.store = store
        self.settings = settings
        self.rng = rng

    def page(self, cal: Calendar, query: ListQuery) -> Listing:
        store = self.store
        if query.page_token is not None:
            cursor = _from_page_token(query.page_token, store, cal)
        elif query.sync_token is not None:
            cursor = _from_sync_token(query.sync_token, store, cal, self.settings)
        else:
            cursor = Cursor(0, store.last_stamp, cal.epoch, store.epoch)
        if query.updated_min is not None:
            max_age = self.settings.updated_min_max_age_seconds * 1_000_000
            if query.updated_min < store.now_us() - max_age:
                raise updated_min_too_old()
        if cursor.since:
            rows = self._incremental(cal, query, cursor)
            keys = [row.key for row in rows]
        else:
            rows, keys = self._full_cached(cal, query)
        begin = bisect_right(keys, cursor.after) if cursor.after is not None else 0
        remaining = len(rows) - begin
        size, artifact = self._page_size(query.max_results, remaining, cursor.artifacts)
        page = rows[begin : begin + size]
        body = self._collection(cal, query)
        if begin + size < len(rows) or artifact:
            after = page[-1].key if page else cursor.after
            nxt = Cursor(
                cursor.since,
                cursor.snapshot,
                cursor.cal_epoch,
                cursor.store_epoch,
                after,
                cursor.artifacts + 1 if artifact else 0,
            )
            body["nextPageToken"] = _page_token(cal, nxt)
        else:
            body["nextSyncToken"] = sync_token(store, cal, cursor.snapshot)
        items = [render_json(cal, row.event, minimal=row.minimal) for row in page]
        return Listing(body, items)

    def _page_size(self, max_results: int, remaining: int, artifacts: int) -> tuple[int, bool]:
        """Google may answer short or empty pages while results remain (§5.2)."""
        settings = self.settings
        if remaining <= 0 or artifacts >= _MAX_ARTIFACT_PAGES:
            return max_results, False
        if not settings.empty_page_rate and not settings.short_page_rate:
            return max_results, False
        draw = self.rng.random()
        if draw < settings.empty_page_rate:
            return 0, True
        if draw < settings.empty_page_rate + settings.short_page_rate:
            size = self.rng.randint(1, max(1, min(max_results, remaining) - 1))
            return size, True
        return max_results, False

    def _collection(self, cal: Calendar, query: ListQuery) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "calendar#events",
            "etag": cal.etag,
            "summary": cal.summary,
        }
        if cal.description:
            body["description"] = cal.description
        body.update(
            updated=format_ms(cal.updated_us),
            timeZone=query.time_zone or cal.time_zone,
            accessRole="owner",
            defaultReminders=[],
        )
        return body

    def _incremental(self, cal: Calendar, query: ListQuery, cursor: Cursor) -> list[Row]:
        changed: list[Event] = []
        for event in reversed(cal.events.values()):
            if event.updated_us <= cursor.since:
                break
            if event.updated_us <= cursor.snapshot:
                changed.append(event)
        changed.reverse()
        horizon = query.time_max
        rows: list[Row] = []
        for event in changed:
            if event.recurrence is not None and query.single_events:
                for instance in self.store.instances(event, horizon):
                    if self.store.exception_of(cal, event.id, instance.start.us) is None:
                        key = (event.updated_us, instance.id)
                        rows.append(Row(key, instance, event.cancelled))
            elif not event.ghost or query.single_events:
                rows.append(Row((event.updated_us, event.id), event, event.cancelled))
        rows.sort(key=lambda row: row.key)
        return rows

    def _full_cached(self, cal: Calendar, query: ListQuery) -> tuple[list[Row], list[Key]]:
        """Full listings are reused until the calendar changes: list calls must stay cheap
        (thousands per second), and most repeat the same filters over unchanged data."""
        signature = (
            query.single_events,
            query.show_deleted,
            query.order_by,
            query.time_min,
            query.time_max,
            query.updated_min,
            query.q,
            query.ical_uid,
            query.private_props,
            query.shared_props,
        )
        # Open-ended series expand relative to today: a new day refreshes them.
        day = self.store.now_us() // 86_400_000_000
        cached = cal.listings.get(signature)
        if cached is not None and cached[0] == cal.updated_us and cached[1] == day:
            result: tuple[list[Row], list[Key]] = cached[2]
            return result
        rows = self._full(cal, query)
        result = (rows, [row.key for row in rows])
        if len(cal.listings) >= 16:
            cal.listings.clear()
        cal.listings[signature] = (cal.updated_us, day, result)
        return result

    def _full(self, cal: Calendar, query: ListQuery) -> list[Row]:
        horizon = query.time_max
        by_updated = query.order_by == "updated"
        rows: list[Row] = []
        for event in cal.events.values():
            if event.ghost:
                continue
            if event.recurrence is not None and query.single_events:
                if event.cancelled:
                    continue
                for instance in self.store.instances(event, horizon):
                    overridden = self.store.exception_of(cal, event.id, instance.start.us)
                    if overridden is None and self._visible(cal, instance, query, horizon):
                        rows.append(self._row(instance, by_updated))
            elif self._visible(cal, event, query, horizon):
                rows.append(self._row(event, by_updated))
        rows.sort(key=lambda row: row.key)
        return rows

    @staticmethod
    def _row(event: Event, by_updated: bool) -> Row:
        primary = event.updated_us if by_updated else event.start.us
        return Row((primary, event.id), event, event.cancelled)

    def _visible(self, cal: Calendar, event: Event, query: ListQuery, horizon: int | None) -> bool:
        if query.updated_min is not None and event.updated_us < query.updated_min:
            return False
        if event.cancelled:
            # Deletions since updatedMin are always listed; cancelled instances of a series
            # show up even without showDeleted when series are not expanded (§5.2).
            shown = (
                query.show_deleted
                or query.updated_min is not None
                or (event.recurring_event_id is not None and not query.single_events)
            )
            if not shown:
                return False
        if not self._in_window(cal, event, query, horizon):
            return False
        data = event.data
        if query.ical_uid is not None and data.get("iCalUID") != query.ical_uid:
            return False
        if query.q is not None and not matches_text(data, query.q):
            return False
        if query.private_props and not matches_properties(data, "private", query.private_props):
            return False
        return not query.shared_props or matches_properties(data, "shared", query.shared_props)

    def _in_window(
        self, cal: Calendar, event: Event, query: ListQuery, horizon: int | None
    ) -> bool:
        low, high = query.time_min, query.time_max
        if low is None and high is None:
            return True
        spans = (
            [(i.start.us, i.end.us) for i in self.store.instances(event, horizon)]
            if event.recurrence is not None
            else [(event.start.us, event.end.us)]
        )
        # timeMin bounds the end and timeMax the start, both exclusive (§5.2).
        return any(
            (low is None or end > low) and (high is None or start < high) for start, end in spans
        )
