"""Strava API v3 client for sync: list and fetch activities (PROVIDERS.md §3.3, §3.6).

Every answer carries the app's rate usage (:class:`StravaUsage`) so the shared budget can
be corrected from what Strava counted. HTTP failures become the error tree in
:func:`raise_for_answer`, the one place that reads statuses::

    401                 TokenRejectedError (retry once with a token fetched by force_refresh)
    401 scope missing   ReauthRequiredError (a refresh cannot add scopes)
    429                 RetryableError, retry_after = next quarter hour / 00:00 UTC
    5xx, transport      RetryableError
    404 on an activity  NotFoundError
    other 4xx           PermanentError with Strava's ``errors[]`` in details
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NoReturn

import aiohttp
from syncplane_common.clock import Clock
from syncplane_common.errors import (
    NotFoundError,
    PermanentError,
    ReauthRequiredError,
    RetryableError,
)
from syncplane_common.http import bearer, call, retry_after

from sync_worker.providers import TokenRejectedError, token_fingerprint
from sync_worker.providers._records import parse_each, parse_one
from sync_worker.providers._strava_model import Activity, iana_timezone, parse_local_datetime
from sync_worker.providers._strava_usage import (
    StravaUsage,
    UsageWindow,
    parse_usage,
    retry_after_seconds,
)

__all__ = [
    "MAX_PER_PAGE",
    "Activity",
    "FetchedActivity",
    "Page",
    "StravaClient",
    "StravaUsage",
    "UsageWindow",
    "iana_timezone",
    "parse_local_datetime",
    "parse_usage",
    "raise_for_answer",
    "retry_after_seconds",
]

MAX_PER_PAGE = 200
Operation = Literal["list", "get"]


@dataclass(frozen=True, slots=True)
class Page:
    """One page of ``athlete/activities``. Empty means the end; short does not (§3.3).

    ``invalid`` holds the raw items that did not validate, so the caller can count them as
    failed instead of losing the rest of the page to one odd activity.
    """

    number: int
    per_page: int
    activities: tuple[Activity, ...]
    invalid: tuple[Any, ...]
    usage: StravaUsage | None

    @property
    def is_last(self) -> bool:
        return not self.activities and not self.invalid


@dataclass(frozen=True, slots=True)
class FetchedActivity:
    activity: Activity
    usage: StravaUsage | None


def _strava_errors(body: Any) -> list[dict[str, str]]:
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return []
    return [
        {k: str(e.get(k, "")) for k in ("resource", "field", "code")}
        for e in errors
        if isinstance(e, dict)
    ]


def raise_for_answer(
    status: int,
    body: Any,
    headers: Mapping[str, str],
    *,
    operation: Operation,
    token: str,
    now: datetime,
) -> NoReturn:
    """Strava's error answer as the error tree (the one place statuses are read)."""
    errors = _strava_errors(body)
    described = ", ".join("/".join(e.values()) for e in errors) or "no details"
    details: dict[str, object] = {"status": status, "errors": errors, "operation": operation}
    what = f"strava {operation} answered {status} ({described})"
    if status == 401:
        # A valid token without activity:read gets a 401 naming the missing permission:
        # refreshing keeps the same scopes, only a new consent can fix it.
        if any(e["code"] == "missing" and e["field"].endswith("_permission") for e in errors):
            raise ReauthRequiredError(what, details=details)
        raise TokenRejectedError(what, fingerprint=token_fingerprint(token), details=details)
    if status == 429:
        # No Retry-After is documented (§3.2); the windows are fixed, so compute the wait.
        wait = retry_after(headers, now)
        if wait is None:
            wait = retry_after_seconds(parse_usage(headers), now)
        raise RetryableError(what, retry_after=wait, details=details)
    if status >= 500 or status == 408:
        raise RetryableError(what, retry_after=retry_after(headers, now), details=details)
    if status == 404 and operation == "get":
        raise NotFoundError(what, details=details)
    raise PermanentError(what, details=details)


class StravaClient:
    """Reads one athlete's activities with the access token the caller passes in.

    Tokens come from token-service per call; this client never stores or logs them.
    """

    def __init__(self, session: aiohttp.ClientSession, api_base: str, clock: Clock) -> None:
        self.session = session
        self.api_base = api_base.rstrip("/")
        self.clock = clock

    async def _get(
        self, path: str, token: str, params: Mapping[str, str], operation: Operation
    ) -> tuple[Any, StravaUsage | None]:
        url = f"{self.api_base}{path}"
        answer = await call(
            self.session,
            "GET",
            url,
            provider="strava",
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
            )
        return answer.json(f"strava {operation}"), parse_usage(answer.headers)

    async def list_activities(
        self,
        token: str,
        *,
        after: int | None,
        before: int | None,
        page: int,
        per_page: int = MAX_PER_PAGE,
    ) -> Page:
        """One page of the athlete's activities, newest first (``after``/``before`` epoch s)."""
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise ValueError(f"per_page must be in 1..{MAX_PER_PAGE}, got {per_page}")
        if page < 1:
            raise ValueError(f"pages count from 1, got {page}")
        params = {"page": str(page), "per_page": str(per_page)}
        if after is not None:
            params["after"] = str(after)
        if before is not None:
            params["before"] = str(before)
        body, usage = await self._get("/athlete/activities", token, params, "list")
        if not isinstance(body, list):
            raise RetryableError("strava list answered something other than a JSON array")
        activities, invalid = parse_each(body, Activity.from_raw)
        return Page(page, per_page, tuple(activities), tuple(invalid), usage)

    async def pages(
        self,
        token: str,
        *,
        after: int | None = None,
        before: int | None = None,
        first_page: int = 1,
        per_page: int = MAX_PER_PAGE,
    ) -> AsyncIterator[Page]:
        """Every page from ``first_page`` on, the last one empty (its usage counts too).

        A short page is not the end (§3.3): only an empty array is. Resuming from a
        checkpoint is ``first_page`` = the page after the last one stored.
        """
        number = first_page
        while True:
            page = await self.list_activities(
                token, after=after, before=before, page=number, per_page=per_page
            )
            yield page
            if page.is_last:
                return
            number += 1

    async def get_activity(self, token: str, activity_id: int) -> FetchedActivity:
        """One activity (DetailedActivity); ``NotFoundError`` if gone or not the athlete's."""
        body, usage = await self._get(f"/activities/{int(activity_id)}", token, {}, "get")
        if not isinstance(body, dict):
            raise RetryableError("strava get answered something other than a JSON object")
        activity = parse_one(body, Activity.from_raw, f"strava activity {activity_id}")
        return FetchedActivity(activity, usage)
