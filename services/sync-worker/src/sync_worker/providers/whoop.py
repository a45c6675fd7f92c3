"""WHOOP API v2 client for sync: walk the recovery, sleep, cycle and workout collections
and fetch single records (PROVIDERS.md §7.3, §7.6).

Every answer carries the app's budget (:class:`WhoopUsage`). HTTP failures become the
error tree in :func:`raise_for_answer`, the one place that reads statuses::

    401                       TokenRejectedError (retry once with a token fetched by
                              force_refresh)
    429                       RetryableError, retry_after = X-RateLimit-Reset seconds
    5xx, 408, transport       RetryableError
    404                       NotFoundError (the record is gone or not the user's)
    400 after a nextToken     CursorInvalidError (the stored token is no longer accepted:
                              walk again from the start)
    other 4xx                 PermanentError with WHOOP's message in details

Cursor (the session checkpoint, :attr:`CursorPage.next_cursor`): where a collection walk
goes on, ``{"kind": "sleep", "next_token": "<WHOOP's opaque token>", "start": <RFC 3339 or
null>, "end": <RFC 3339 or null>, "limit": 25}``: the query the token belongs to travels
with it, since WHOOP's token is only meaningful with the same bounds. The last page has
no cursor: WHOOP gives no token for later changes, so the next incremental walk starts
from a ``start`` the engine picks (its newest stored record minus an overlap).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Literal, NoReturn, TypeAlias

import aiohttp
from syncplane_common.clock import Clock
from syncplane_common.errors import (
    CursorInvalidError,
    NotFoundError,
    PermanentError,
    RetryableError,
)
from syncplane_common.http import bearer, call, retry_after

from sync_worker.providers import TokenRejectedError, token_fingerprint
from sync_worker.providers._http import utc_millis
from sync_worker.providers._records import Cursor, CursorPage, parse_each, parse_one
from sync_worker.providers._whoop_model import (
    KINDS,
    Cycle,
    Kind,
    Recovery,
    Sleep,
    WhoopRecord,
    Workout,
    parse_record,
)
from sync_worker.providers._whoop_usage import Policy, WhoopUsage, parse_usage

__all__ = [
    "COLLECTIONS",
    "KINDS",
    "MAX_LIMIT",
    "Cycle",
    "FetchedRecord",
    "Kind",
    "Policy",
    "Recovery",
    "Sleep",
    "WhoopClient",
    "WhoopPage",
    "WhoopRecord",
    "WhoopUsage",
    "Workout",
    "parse_record",
    "parse_usage",
    "raise_for_answer",
]

MAX_LIMIT = 25
# No Retry-After and no reset header: the shortest WHOOP window is a minute.
DEFAULT_RATE_WAIT = 60.0
COLLECTIONS: dict[Kind, str] = {
    "recovery": "/v2/recovery",
    "sleep": "/v2/activity/sleep",
    "cycle": "/v2/cycle",
    "workout": "/v2/activity/workout",
}
Operation = Literal["list", "get"]
WhoopPage: TypeAlias = CursorPage[WhoopRecord, WhoopUsage]


@dataclass(frozen=True, slots=True)
class FetchedRecord:
    record: WhoopRecord
    usage: WhoopUsage | None


def _whoop_message(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("message", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
    return ""


def raise_for_answer(
    status: int,
    body: Any,
    headers: Mapping[str, str],
    *,
    operation: Operation,
    token: str,
    now: datetime,
    sent_next_token: bool = False,
) -> NoReturn:
    """WHOOP's error answer as the error tree (the one place statuses are read)."""
    message = _whoop_message(body)
    details: dict[str, object] = {"status": status, "operation": operation, "message": message}
    what = f"whoop {operation} answered {status} ({message or 'no details'})"
    if status == 401:
        raise TokenRejectedError(what, fingerprint=token_fingerprint(token), details=details)
    if status == 429:
        wait = retry_after(headers, now)
        if wait is None:
            usage = parse_usage(headers)
            wait = usage.reset_seconds if usage is not None else DEFAULT_RATE_WAIT
        raise RetryableError(what, retry_after=wait, details=details)
    if status >= 500 or status == 408:
        raise RetryableError(what, retry_after=retry_after(headers, now), details=details)
    if status == 404:
        raise NotFoundError(what, details=details)
    if status == 400 and sent_next_token:
        # Our own parameters are checked before sending; what WHOOP can refuse is the
        # stored token (expired, or issued for other bounds).
        raise CursorInvalidError(what, details=details)
    raise PermanentError(what, details=details)


def _instant(value: datetime | None) -> str | None:
    return None if value is None else utc_millis(value, "WHOOP bounds")


def _cursor_instant(cursor: Cursor, name: str) -> datetime | None:
    value = cursor.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise CursorInvalidError(f"whoop cursor {name} is not a date-time: {value!r}")
    try:
        return datetime.fromisoformat(value)
    except ValueError as err:
        raise CursorInvalidError(f"whoop cursor {name} is not a date-time: {value!r}") from err


def _record_id(kind: Kind, record_id: str | int) -> str | int:
    """The path id of a record: a cycle's int64, else a UUID; an int for a sleep or a
    workout (or a recovery, named by its sleep) is a v1 id, mapped before fetching."""
    text = str(record_id).strip()
    if text.isdigit():
        if int(text) >= 2**63:
            raise PermanentError(f"whoop {kind} id {text} is not an int64")
        return int(text)
    if kind == "cycle":
        raise PermanentError(f"whoop cycle ids are int64, got {record_id!r}")
    try:
        return str(uuid.UUID(text))
    except ValueError as err:
        raise PermanentError(f"whoop {kind} id {record_id!r} is not a UUID") from err


class WhoopClient:
    """Reads one WHOOP member's data with the access token the caller passes in.

    Tokens come from token-service per call; this client never stores or logs them.
    """

    def __init__(self, session: aiohttp.ClientSession, api_base: str, clock: Clock) -> None:
        self.session = session
        self.api_base = api_base.rstrip("/")
        self.clock = clock

    async def _get(
        self,
        path: str,
        token: str,
        params: Mapping[str, str],
        operation: Operation,
    ) -> tuple[dict[str, Any], WhoopUsage | None]:
        url = f"{self.api_base}{path}"
        answer = await call(
            self.session,
            "GET",
            url,
            provider="whoop",
            operation=operation,
            headers=bearer(token),
            params=params,
        )
        if answer.status >= 400:
            raise_for_answer(
                answer.status,
                answer.body,
                answer.headers,
                operation=operation,
                token=token,
                now=self.clock.now(),
                sent_next_token="nextToken" in params,
            )
        return answer.json_object(f"whoop {operation}"), parse_usage(answer.headers)

    async def list_page(
        self,
        token: str,
        kind: Kind,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        next_token: str | None = None,
        limit: int = MAX_LIMIT,
    ) -> WhoopPage:
        """One page of a collection, newest first; ``start`` inclusive, ``end`` exclusive
        (WHOOP's default: now)."""
        if kind not in COLLECTIONS:
            raise ValueError(f"unknown WHOOP collection {kind!r}; one of {KINDS}")
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be in 1..{MAX_LIMIT}, got {limit}")
        params = {"limit": str(limit)}
        bounds = {"start": _instant(start), "end": _instant(end)}
        params.update({k: v for k, v in bounds.items() if v is not None})
        if next_token:
            params["nextToken"] = next_token
        body, usage = await self._get(COLLECTIONS[kind], token, params, "list")
        items = body.get("records")
        if not isinstance(items, list):
            raise RetryableError("whoop list answered an object without a records array")
        records, invalid = parse_each(items, partial(parse_record, kind))
        # The last page has no next_token, or (as the live API seems to send) a null one.
        after = body.get("next_token")
        cursor: Cursor | None = None
        if isinstance(after, str) and after:
            cursor = {"kind": kind, "next_token": after, **bounds, "limit": limit}
        return CursorPage(
            items=tuple(records),
            next_cursor=cursor,
            is_last=cursor is None,
            invalid=tuple(invalid),
            usage=usage,
        )

    async def pages(
        self,
        token: str,
        kind: Kind,
        start: datetime | None = None,
        end: datetime | None = None,
        next_token: str | None = None,
        *,
        limit: int = MAX_LIMIT,
    ) -> AsyncIterator[WhoopPage]:
        """Every page from ``next_token`` (or the newest) on, until WHOOP gives no token."""
        while True:
            page = await self.list_page(
                token, kind, start=start, end=end, next_token=next_token, limit=limit
            )
            yield page
            if page.next_cursor is None:
                return
            next_token = page.next_cursor["next_token"]

    def resume(self, token: str, cursor: Cursor) -> AsyncIterator[WhoopPage]:
        """The pages after a stored checkpoint (a ``next_cursor`` of this client)."""
        kind = cursor.get("kind")
        next_token = cursor.get("next_token")
        limit = cursor.get("limit", MAX_LIMIT)
        if kind not in COLLECTIONS or not isinstance(next_token, str) or not next_token:
            raise CursorInvalidError(f"not a WHOOP collection cursor: {sorted(cursor)}")
        if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise CursorInvalidError(f"whoop cursor limit out of range: {limit!r}")
        return self.pages(
            token,
            kind,
            start=_cursor_instant(cursor, "start"),
            end=_cursor_instant(cursor, "end"),
            next_token=next_token,
            limit=limit,
        )

    async def get(self, token: str, kind: Kind, record_id: str | int) -> FetchedRecord:
        """One record, as a ``*.updated`` webhook asks: a cycle by its int64 id, a sleep or
        workout by UUID (or v1 integer id), a recovery by its **sleep's** UUID (the id its
        webhook carries). ``NotFoundError`` if it is gone or not this member's."""
        if kind not in COLLECTIONS:
            raise ValueError(f"unknown WHOOP record type {kind!r}; one of {KINDS}")
        key = _record_id(kind, record_id)
        if kind == "cycle":
            body, usage = await self._get(f"/v2/cycle/{key}", token, {}, "get")
            return FetchedRecord(_record_or_raise(kind, body), usage)
        if isinstance(key, int):
            key = await self._v2_id(token, key)
        if kind == "workout":
            body, usage = await self._get(f"/v2/activity/workout/{key}", token, {}, "get")
            return FetchedRecord(_record_or_raise(kind, body), usage)
        body, usage = await self._get(f"/v2/activity/sleep/{key}", token, {}, "get")
        sleep = _record_or_raise("sleep", body)
        if kind == "sleep":
            return FetchedRecord(sleep, usage)
        # There is no /v2/recovery/{id}: a recovery is reached through its sleep's cycle,
        # whose recovery belongs to the cycle's main sleep, not necessarily to this one.
        assert isinstance(sleep, Sleep)
        if sleep.cycle_id is None or sleep.nap:
            raise NotFoundError(f"whoop sleep {key} has no recovery", details={"sleep_id": key})
        body, usage = await self._get(f"/v2/cycle/{sleep.cycle_id}/recovery", token, {}, "get")
        recovery = _record_or_raise("recovery", body)
        if recovery.key != key:
            raise NotFoundError(
                f"whoop sleep {key} has no recovery of its own",
                details={"sleep_id": key, "cycle_id": sleep.cycle_id},
            )
        return FetchedRecord(recovery, usage)

    async def _v2_id(self, token: str, v1_id: int) -> str:
        body, _ = await self._get(f"/v1/activity-mapping/{v1_id}", token, {}, "get")
        value = body.get("v2_activity_id")
        try:
            return str(uuid.UUID(str(value)))
        except ValueError as err:
            raise PermanentError(
                f"whoop mapped v1 id {v1_id} to something other than a UUID: {value!r}"
            ) from err


def _record_or_raise(kind: Kind, body: dict[str, Any]) -> WhoopRecord:
    return parse_one(body, partial(parse_record, kind), f"whoop {kind}")
