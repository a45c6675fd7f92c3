"""Google Fit REST v1 client for sync: per-day aggregates over ``dataset:aggregate`` and
sessions over ``sessions.list`` (PROVIDERS.md §6).

Google's JSON error envelope becomes the error tree in :func:`raise_for_answer`, the one
place that reads statuses::

    401                                  TokenRejectedError (force_refresh, retry once)
    429; 403 usageLimits rate reasons    RetryableError, retry_after = Retry-After, else
                                         60 s (Google's windows slide over a minute)
    5xx, 408, transport                  RetryableError
    403 insufficientPermissions          ReauthRequiredError (only a new consent adds a
                                         scope)
    404, 410, 403 accessNotConfigured    ProviderDiscontinuedError (a NotFoundError): Fit
                                         is being turned down, so an endpoint that is gone
                                         is a state to show, not to retry forever (§6.5)
    400 after a pageToken                CursorInvalidError (start the sessions sync over)
    other 4xx                            PermanentError with Google's errors[] in details

Cursors (the session checkpoint, :attr:`CursorPage.next_cursor`):

* daily aggregates: ``{"stream": "daily", "next_day": "2026-01-08", "last_day":
  "2026-01-14", "time_zone": "Europe/Berlin", "days_per_request": 89}``; ``None`` after
  the last window. Days are local calendar days in the user's zone: one request covers
  at most :data:`MAX_DAYS_PER_REQUEST` of them (Google's 90-day span limit, minus the
  hour a DST change can add), and there is no other pagination.
* sessions: ``{"stream": "sessions", "page_token": "<Google's sync token>"}``, on every
  page *including the last*: the last page's token is where the next incremental run
  starts (changes and deletions since). A time-bounded list has no cursor: Google
  answers it in one page and ignores tokens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any, Literal, NoReturn, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiohttp
from syncplane_common.clock import Clock
from syncplane_common.errors import (
    CursorInvalidError,
    NotFoundError,
    PermanentError,
    ReauthRequiredError,
    RetryableError,
)
from syncplane_common.google import google_error
from syncplane_common.http import bearer, call, retry_after

from sync_worker.providers import TokenRejectedError, token_fingerprint
from sync_worker.providers._google_fit_model import (
    AGGREGATE_BY,
    Bucket,
    FitDay,
    FitSession,
    aggregate_request,
    fit_day,
)
from sync_worker.providers._http import utc_millis
from sync_worker.providers._records import Cursor, CursorPage, parse_each

__all__ = [
    "AGGREGATE_BY",
    "DEFAULT_RATE_WAIT",
    "MAX_DAYS_PER_REQUEST",
    "FitDay",
    "FitDaysPage",
    "FitSession",
    "FitSessionsPage",
    "GoogleFitClient",
    "ProviderDiscontinuedError",
    "raise_for_answer",
]

# 90 days is 7,776,000,000 ms, Google's limit; 90 local days across a DST change in
# autumn are an hour longer, so one day less is the most that always fits.
MAX_DAYS_PER_REQUEST = 89
DEFAULT_RATE_WAIT = 60.0
Operation = Literal["aggregate", "sessions"]
FitDaysPage: TypeAlias = CursorPage[FitDay, None]
FitSessionsPage: TypeAlias = CursorPage[FitSession, None]

_RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"})


class ProviderDiscontinuedError(NotFoundError):
    """The provider's API is no longer served (Google Fit's turndown): stop syncing this
    provider and show it as discontinued; retrying cannot bring it back."""

    code = "provider_discontinued"


def raise_for_answer(
    status: int,
    body: Any,
    headers: Mapping[str, str],
    *,
    operation: Operation,
    token: str,
    now: datetime,
    sent_page_token: bool = False,
) -> NoReturn:
    """Google's error answer as the error tree (the one place statuses are read)."""
    message, errors = google_error(body)
    reasons = {e["reason"] for e in errors}
    domains = {e["domain"] for e in errors}
    details: dict[str, object] = {"status": status, "errors": errors, "operation": operation}
    what = f"google fit {operation} answered {status} ({message or 'no details'})"
    wait = retry_after(headers, now)
    if status == 401:
        raise TokenRejectedError(what, fingerprint=token_fingerprint(token), details=details)
    if status in (404, 410) or (status == 403 and "accessNotConfigured" in reasons):
        raise ProviderDiscontinuedError(what, details=details)
    if status == 429 or (status == 403 and (reasons & _RATE_REASONS or "usageLimits" in domains)):
        raise RetryableError(
            what, retry_after=DEFAULT_RATE_WAIT if wait is None else wait, details=details
        )
    if status >= 500 or status == 408:
        raise RetryableError(what, retry_after=wait, details=details)
    if status == 403 and "insufficientPermissions" in reasons:
        # A refresh keeps the granted scopes: only the user consenting again adds one.
        raise ReauthRequiredError(what, details=details)
    if status == 400 and sent_page_token:
        raise CursorInvalidError(what, details=details)
    raise PermanentError(what, details=details)


def zone_of(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise PermanentError(f"{name!r} is not an IANA time zone") from err


class GoogleFitClient:
    """Reads one Google user's Fit data with the access token the caller passes in.

    Tokens come from token-service per call; this client never stores or logs them.
    """

    def __init__(self, session: aiohttp.ClientSession, api_base: str, clock: Clock) -> None:
        self.session = session
        self.api_base = api_base.rstrip("/")
        self.clock = clock

    async def _call(
        self,
        method: str,
        path: str,
        token: str,
        operation: Operation,
        *,
        params: Sequence[tuple[str, str]] = (),
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        url = f"{self.api_base}{path}"
        answer = await call(
            self.session,
            method,
            url,
            provider="google_fit",
            operation=operation,
            headers=bearer(token),
            params=params,
            json_body=body,
        )
        if answer.status >= 400:
            raise_for_answer(
                answer.status,
                answer.body,
                answer.headers,
                operation=operation,
                token=token,
                now=self.clock.now(),
                sent_page_token=any(k == "pageToken" for k, _ in params),
            )
        return answer.json_object(f"google fit {operation}")

    # -- daily aggregates ------------------------------------------------------------------

    async def aggregate_days(
        self, token: str, first: date, last: date, time_zone: str
    ) -> tuple[list[FitDay], list[Any]]:
        """Days ``first``..``last`` (local, inclusive) in one request: the parsed days,
        and the raw buckets that did not match the wire model."""
        if last < first:
            raise ValueError(f"last day {last} is before first day {first}")
        if (last - first).days + 1 > MAX_DAYS_PER_REQUEST:
            raise ValueError(f"at most {MAX_DAYS_PER_REQUEST} days per request")
        zone = zone_of(time_zone)
        answer = await self._call(
            "POST",
            "/users/me/dataset:aggregate",
            token,
            "aggregate",
            body=aggregate_request(first, last, zone),
        )
        buckets = answer.get("bucket", [])
        if not isinstance(buckets, list):
            raise RetryableError("google fit aggregate answered a bucket that is not an array")
        return parse_each(buckets, lambda item: fit_day(Bucket.model_validate(item), item, zone))

    async def daily_pages(
        self,
        token: str,
        first: date,
        last: date,
        time_zone: str,
        *,
        days_per_request: int = MAX_DAYS_PER_REQUEST,
    ) -> AsyncIterator[FitDaysPage]:
        """Days ``first``..``last`` in windows of ``days_per_request``, oldest first, each
        window one page whose cursor names the next window."""
        if not 1 <= days_per_request <= MAX_DAYS_PER_REQUEST:
            raise ValueError(f"days_per_request must be in 1..{MAX_DAYS_PER_REQUEST}")
        start = first
        while start <= last:
            stop = min(last, start + timedelta(days=days_per_request - 1))
            days, invalid = await self.aggregate_days(token, start, stop, time_zone)
            following = stop + timedelta(days=1)
            cursor: Cursor | None = None
            if following <= last:
                cursor = {
                    "stream": "daily",
                    "next_day": following.isoformat(),
                    "last_day": last.isoformat(),
                    "time_zone": time_zone,
                    "days_per_request": days_per_request,
                }
            yield CursorPage(tuple(days), cursor, cursor is None, tuple(invalid))
            start = following

    def resume_daily(self, token: str, cursor: Cursor) -> AsyncIterator[FitDaysPage]:
        """The windows after a stored daily checkpoint."""
        try:
            if cursor.get("stream") != "daily":
                raise ValueError("not a daily cursor")
            first = date.fromisoformat(cursor["next_day"])
            last = date.fromisoformat(cursor["last_day"])
            time_zone = str(cursor["time_zone"])
            size = int(cursor.get("days_per_request", MAX_DAYS_PER_REQUEST))
        except (KeyError, TypeError, ValueError) as err:
            raise CursorInvalidError(f"not a Google Fit daily cursor: {cursor!r}") from err
        return self.daily_pages(token, first, last, time_zone, days_per_request=size)

    # -- sessions --------------------------------------------------------------------------

    async def list_sessions(
        self,
        token: str,
        *,
        page_token: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        activity_types: tuple[int, ...] = (),
    ) -> FitSessionsPage:
        """One sessions.list answer. With ``start``/``end``: the sessions that *end* in
        that range, in one page. Without: the sync mode, changes (and deletions) since
        ``page_token``, or over the past 30 days when there is none."""
        bounded = start is not None or end is not None
        if bounded and page_token is not None:
            raise ValueError("Google ignores pageToken when a time bound is given")
        params: list[tuple[str, str]] = [("activityType", str(t)) for t in activity_types]
        if start is not None:
            params.append(("startTime", utc_millis(start, "session bounds")))
        if end is not None:
            params.append(("endTime", utc_millis(end, "session bounds")))
        if not bounded:
            # Deletions are only reported in the sync mode, and only when asked for.
            params.append(("includeDeleted", "true"))
            if page_token:
                params.append(("pageToken", page_token))
        answer = await self._call("GET", "/users/me/sessions", token, "sessions", params=params)
        # Google leaves the array out when there are no sessions.
        items = answer.get("session")
        sessions, invalid = parse_each(items if isinstance(items, list) else [], _session)
        deleted = _deleted_ids(answer.get("deletedSession"))
        next_token = answer.get("nextPageToken")
        cursor: Cursor | None = None
        if not bounded and isinstance(next_token, str) and next_token:
            cursor = {"stream": "sessions", "page_token": next_token}
        # Google documents hasMoreData as never set; a server that pages sets it, and then
        # the same call with the new token continues.
        more = not bounded and cursor is not None and answer.get("hasMoreData") is True
        return CursorPage(
            items=tuple(sessions),
            next_cursor=cursor,
            is_last=not more,
            invalid=tuple(invalid),
            deleted=deleted,
        )

    async def session_pages(
        self, token: str, page_token: str | None = None
    ) -> AsyncIterator[FitSessionsPage]:
        """The sync mode to its end: every change since ``page_token``. The last page's
        cursor is the token for the next run."""
        while True:
            page = await self.list_sessions(token, page_token=page_token)
            yield page
            if page.is_last or page.next_cursor is None:
                return
            page_token = page.next_cursor["page_token"]

    def resume_sessions(self, token: str, cursor: Cursor) -> AsyncIterator[FitSessionsPage]:
        page_token = cursor.get("page_token")
        if cursor.get("stream") != "sessions" or not isinstance(page_token, str):
            raise CursorInvalidError(f"not a Google Fit sessions cursor: {sorted(cursor)}")
        return self.session_pages(token, page_token)


def _session(item: dict[str, Any]) -> FitSession:
    return FitSession.model_validate({**item, "raw": item})


def _deleted_ids(items: Any) -> tuple[str, ...]:
    # Only the id matters for a deletion: a tombstone that misses other fields still counts.
    return tuple(
        item["id"]
        for item in (items if isinstance(items, list) else [])
        if isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"]
    )
