"""Google Calendar API v3 client (PROVIDERS.md §5): events list / get / insert / patch /
delete with ``If-Match``, watch and channels.stop. HTTP statuses become the error tree in
:func:`raise_for_status` and nowhere else; callers pass the access token per call (the
service asks token-service for it, and retries a 401 once with a forced refresh).
Google's event shape (§5.2) becomes the domain's content in :func:`from_google` and goes
back in :func:`to_google`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn
from urllib.parse import quote

import aiohttp
from syncplane_common.contracts import token_fingerprint
from syncplane_common.errors import (
    ConflictError,
    CursorInvalidError,
    NotFoundError,
    PermanentError,
    RetryableError,
    TokenRejectedError,
)
from syncplane_common.google import google_error
from syncplane_common.http import bearer, call

from calendar_sync.domain import Fields, Remote, instant

JsonDict = dict[str, Any]

# Private extended properties mark what we wrote (§5.2 "handy for marking events the
# platform created"): our local id, and the app's metadata, which Google has no field for.
PROP_ID = "syncplane_id"
PROP_METADATA = "syncplane_metadata"

# Workspace abuse limits: backing off for seconds does not clear them (§5.1).
QUOTA_PAUSE_SECONDS = 600.0
_RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
_CURSOR_REASONS = frozenset({"fullSyncRequired", "updatedMinTooLongAgo"})


@dataclass(frozen=True)
class Page:
    items: list[JsonDict]
    next_page_token: str | None
    next_sync_token: str | None


@dataclass(frozen=True)
class Channel:
    id: str
    resource_id: str
    expiration_ms: int | None


def _reason(body: Any) -> str:
    _, errors = google_error(body)
    return errors[0]["reason"] if errors else ""


def raise_for_status(status: int, body: Any, token: str, what: str) -> NoReturn:
    """The one place a Google Calendar answer becomes an exception (§5.1)."""
    reason = _reason(body)
    details: dict[str, object] = {"status": status, "reason": reason, "call": what}
    message = f"{what}: Google Calendar answered {status} {reason}".rstrip()
    if status == 401:
        raise TokenRejectedError(message, fingerprint=token_fingerprint(token), details=details)
    if status in (403, 429) and reason == "quotaExceeded":
        raise RetryableError(message, retry_after=QUOTA_PAUSE_SECONDS, details=details)
    if status == 429 or (status == 403 and reason in _RATE_REASONS):
        raise RetryableError(message, details=details)
    if status == 410 and reason in _CURSOR_REASONS:
        raise CursorInvalidError(message, details=details)
    if status in (404, 410):
        # 404 notFound, or 410 deleted (the event was deleted already).
        raise NotFoundError(message, details=details)
    if status in (409, 412):
        raise ConflictError(message, details=details)
    if status >= 500:
        raise RetryableError(message, details=details)
    raise PermanentError(message, details=details)


# -- Google's event shape <-> the domain's content --------------------------------------


def _when(value: str, all_day: bool, time_zone: str | None) -> JsonDict:
    if all_day:
        return {"date": value[:10]}
    out: JsonDict = {"dateTime": value}
    if time_zone:
        out["timeZone"] = time_zone
    return out


def to_google(fields: Fields, local_id: str) -> JsonDict:
    """An events.insert / events.patch body (patch: objects merge, the rest replaces)."""
    return {
        "summary": fields.title,
        "description": fields.description,
        "location": fields.location,
        "start": _when(fields.start, fields.all_day, fields.time_zone),
        "end": _when(fields.end, fields.all_day, fields.time_zone),
        "extendedProperties": {
            "private": {
                PROP_ID: local_id,
                PROP_METADATA: json.dumps(fields.metadata, sort_keys=True),
            }
        },
    }


def _metadata(props: JsonDict) -> JsonDict:
    raw = props.get(PROP_METADATA)
    if not isinstance(raw, str):
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def from_google(item: JsonDict) -> Remote:
    google_id = str(item["id"])
    etag = item.get("etag")
    updated_raw = item.get("updated")
    updated = instant(updated_raw, False) if isinstance(updated_raw, str) else None
    props = (item.get("extendedProperties") or {}).get("private") or {}
    local_id = props.get(PROP_ID) if isinstance(props.get(PROP_ID), str) else None
    # A deleted event is guaranteed to carry only its id (§5.2).
    if item.get("status") == "cancelled":
        # A sync listing reports a deletion as an id with no time, so a deletion read by
        # events.get (a 412 re-resolve) must not carry one either: otherwise the conflict
        # outcome would depend on which path saw the deletion first (DESIGN: untimed
        # Google deletions lose).
        return Remote(google_id, etag, None, None, local_id)
    if item.get("recurrence") or item.get("recurringEventId"):
        return Remote(google_id, etag, None, updated, local_id, unsupported="recurring")
    start, end = item.get("start") or {}, item.get("end") or {}
    all_day = "date" in start
    fields = Fields(
        title=str(item.get("summary", "")),
        description=str(item.get("description", "")),
        location=str(item.get("location", "")),
        all_day=all_day,
        start=str(start.get("date") if all_day else start.get("dateTime", "")),
        end=str(end.get("date") if all_day else end.get("dateTime", "")),
        time_zone=None if all_day else start.get("timeZone"),
        metadata=_metadata(props),
    )
    return Remote(google_id, etag, fields, updated, local_id)


class GoogleCalendarClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base = base_url.rstrip("/")

    def _events(self, calendar_id: str, event_id: str | None = None) -> str:
        url = f"{self.base}/calendars/{quote(calendar_id, safe='@')}/events"
        return url if event_id is None else f"{url}/{quote(event_id, safe='')}"

    async def _call(
        self,
        what: str,
        method: str,
        url: str,
        token: str,
        *,
        params: dict[str, str] | None = None,
        body: JsonDict | None = None,
        etag: str | None = None,
    ) -> Any:
        headers = bearer(token)
        if etag is not None:
            headers["If-Match"] = etag
        answer = await call(
            self.session,
            method,
            url,
            provider="google_calendar",
            operation=what,
            headers=headers,
            params=params,
            json_body=body,
        )
        if answer.status >= 400:
            raise_for_status(answer.status, answer.body, token, what)
        return answer.body

    # -- events --------------------------------------------------------------------------

    async def list_page(
        self,
        token: str,
        calendar_id: str,
        *,
        sync_token: str | None = None,
        page_token: str | None = None,
        time_min: datetime | None = None,
        time_max: datetime | None = None,
        max_results: int = 250,
    ) -> Page:
        """One page. With ``sync_token`` no filter may be sent (§5.2), and deletions come
        anyway; a full listing asks for them with ``showDeleted``, so a resync after a
        410 still learns what was deleted meanwhile."""
        params = {"maxResults": str(max_results), "showDeleted": "true"}
        if sync_token is not None:
            params["syncToken"] = sync_token
        else:
            if time_min is not None:
                params["timeMin"] = time_min.isoformat()
            if time_max is not None:
                params["timeMax"] = time_max.isoformat()
        if page_token is not None:
            params["pageToken"] = page_token
        body = await self._call(
            "events.list", "GET", self._events(calendar_id), token, params=params
        )
        return Page(
            items=list(body.get("items") or []),
            next_page_token=body.get("nextPageToken") or None,
            next_sync_token=body.get("nextSyncToken") or None,
        )

    async def get(self, token: str, calendar_id: str, event_id: str) -> JsonDict:
        result: JsonDict = await self._call(
            "events.get", "GET", self._events(calendar_id, event_id), token
        )
        return result

    async def insert(
        self, token: str, calendar_id: str, body: JsonDict, *, event_id: str | None = None
    ) -> JsonDict:
        """A client-chosen ``event_id`` makes a retried insert a 409, never a duplicate."""
        sent = dict(body, id=event_id) if event_id is not None else body
        result: JsonDict = await self._call(
            "events.insert", "POST", self._events(calendar_id), token, body=sent
        )
        return result

    async def patch(
        self, token: str, calendar_id: str, event_id: str, body: JsonDict, *, etag: str | None
    ) -> JsonDict:
        result: JsonDict = await self._call(
            "events.patch",
            "PATCH",
            self._events(calendar_id, event_id),
            token,
            body=body,
            etag=etag,
        )
        return result

    async def delete(
        self, token: str, calendar_id: str, event_id: str, *, etag: str | None
    ) -> None:
        await self._call(
            "events.delete", "DELETE", self._events(calendar_id, event_id), token, etag=etag
        )

    # -- channels ------------------------------------------------------------------------

    async def watch(
        self,
        token: str,
        calendar_id: str,
        *,
        channel_id: str,
        address: str,
        channel_token: str,
        ttl_seconds: int | None = None,
    ) -> Channel:
        body: JsonDict = {
            "id": channel_id,
            "type": "web_hook",
            "address": address,
            "token": channel_token,
        }
        if ttl_seconds is not None:
            body["params"] = {"ttl": str(ttl_seconds)}
        answer = await self._call(
            "events.watch", "POST", self._events(calendar_id) + "/watch", token, body=body
        )
        expiration = answer.get("expiration")
        return Channel(
            id=str(answer.get("id", channel_id)),
            resource_id=str(answer["resourceId"]),
            expiration_ms=int(expiration) if expiration is not None else None,
        )

    async def stop(self, token: str, channel_id: str, resource_id: str) -> None:
        await self._call(
            "channels.stop",
            "POST",
            f"{self.base}/channels/stop",
            token,
            body={"id": channel_id, "resourceId": resource_id},
        )
