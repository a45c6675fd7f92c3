"""The one way the sync-worker's outbound clients call a JSON API: send, read the whole
answer, turn a transport failure into the error tree (once, through
:func:`syncplane_common.http.raise_for_transport`) and decode the body with ``json.loads``
so int64 ids stay exact Python ints. What a status means is not decided here: each
provider module keeps its own ``raise_for_answer`` (or ``classify``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from syncplane_common.errors import RetryableError
from syncplane_common.http import parse_retry_after, raise_for_transport

__all__ = ["Answer", "bearer", "call", "retry_after", "utc_millis"]

Params = Mapping[str, str] | Sequence[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer, read to the end. ``body`` is the decoded JSON, ``None`` when the
    body was empty or not JSON (``decode_error`` then says why)."""

    status: int
    headers: Mapping[str, str]
    raw: bytes
    body: Any = None
    decode_error: ValueError | None = None

    @property
    def text(self) -> str:
        """The body as text, for an error message (an HTML error page is not JSON)."""
        return self.raw.decode("utf-8", errors="replace")

    def json(self, what: str) -> Any:
        """The decoded body of a successful answer. A 2xx whose body does not decode is a
        truncated or proxied answer: try again later."""
        if self.decode_error is not None:
            raise RetryableError(
                f"{what} answered {self.status} with a body that is not JSON"
            ) from self.decode_error
        return self.body

    def json_object(self, what: str) -> dict[str, Any]:
        """:meth:`json`, for APIs that always answer an object."""
        if self.decode_error is not None or not isinstance(self.body, dict):
            raise RetryableError(
                f"{what} answered {self.status} with a body that is not a JSON object"
            ) from self.decode_error
        return self.body


def bearer(token: str) -> dict[str, str]:
    """Headers of a call with an access token; the token is never logged or kept."""
    return {"Authorization": f"Bearer {token}", "Accept": "application/json"}


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    params: Params | None = None,
    json_body: Any = None,
) -> Answer:
    """One request and its whole answer; only a transport failure raises
    (:class:`RetryableError`), every status comes back for the caller to map."""
    try:
        async with session.request(
            method, url, params=params, json=json_body, headers=headers
        ) as response:
            raw = await response.read()
            status, received = response.status, dict(response.headers)
    except (aiohttp.ClientError, TimeoutError) as err:
        raise_for_transport(err)
    try:
        # json.loads, not a float-happy decoder: ids stay exact Python ints.
        return Answer(status, received, raw, json.loads(raw) if raw else None)
    except ValueError as err:
        return Answer(status, received, raw, None, err)


def retry_after(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds a ``Retry-After`` header (of any case) asks to wait; ``None`` without one."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    return parse_retry_after(value, now)


def utc_millis(value: datetime, what: str) -> str:
    """An instant as a query parameter: RFC 3339 in UTC with milliseconds and ``Z``, the
    form WHOOP and Google document. A naive ``value`` has no instant: ValueError."""
    if value.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware")
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
