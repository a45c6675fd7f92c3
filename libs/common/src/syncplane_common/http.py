"""Outbound HTTP helpers: the shared client session, the one way to call a JSON API
(:func:`call` → :class:`Answer`), Retry-After, backoff and bounded retries.

Transport failures become :class:`~syncplane_common.errors.RetryableError` here, once;
Retry-After follows RFC 9110 §10.2.3 (delay-seconds or HTTP-date). What a status means is
never decided here: each provider module keeps its own mapping to the error tree.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, NoReturn, TypeVar

import aiohttp
from opentelemetry.instrumentation.aiohttp_client import (
    AioHttpClientInstrumentor,
    create_trace_config,
)

from syncplane_common import provider_metrics
from syncplane_common.clock import Clock
from syncplane_common.errors import CursorInvalidError, RetryableError

__all__ = [
    "Answer",
    "backoff_delay",
    "bearer",
    "call",
    "create_client_session",
    "parse_retry_after",
    "raise_for_transport",
    "retry_after",
    "with_retries",
]

T = TypeVar("T")

_DELAY_SECONDS = re.compile(r"\d+(\.\d+)?")
# 2**62 times any sane base is far past every cap, and keeps the float finite.
_MAX_EXPONENT = 62
_TRANSPORT_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)


def create_client_session(
    *,
    total_timeout: float = 30,
    connect_timeout: float = 5,
    read_timeout: float | None = None,
    user_agent: str = "syncplane/0.1",
    limit: int = 100,
    trace: bool = True,
) -> aiohttp.ClientSession:
    """The one way services build a ClientSession; call from inside the running loop.

    ``read_timeout`` bounds a stalled socket read (default: ``total_timeout``).
    """
    timeout = aiohttp.ClientTimeout(
        total=total_timeout,
        connect=connect_timeout,
        sock_read=total_timeout if read_timeout is None else read_timeout,
    )
    instrumented = AioHttpClientInstrumentor().is_instrumented_by_opentelemetry
    # The global instrumentor already adds its trace config to every new session.
    trace_configs = [create_trace_config()] if trace and not instrumented else None
    session = aiohttp.ClientSession(
        timeout=timeout,
        connector=aiohttp.TCPConnector(limit=limit),
        headers={"User-Agent": user_agent},
        trace_configs=trace_configs,
    )
    if not trace and instrumented:
        AioHttpClientInstrumentor.uninstrument_session(session)
    return session


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header; ``None`` when absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    # A date in the past means "now", never a negative wait.
    return max(0.0, (when - now).total_seconds())


def backoff_delay(attempt: int, base: float, maximum: float, jitter: float = 0.0) -> float:
    """Delay before retry number ``attempt`` (1-based): base, 2·base, 4·base … ≤ maximum.

    ``jitter`` is an already drawn fraction in [0, 1] that lengthens the delay by up to
    that fraction, so callers sharing a failure do not retry in lockstep.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    exponent = min(attempt - 1, _MAX_EXPONENT)
    fraction = min(max(jitter, 0.0), 1.0)
    return min(maximum, math.ldexp(base, exponent) * (1.0 + fraction))


async def with_retries(
    fn: Callable[[], Awaitable[T]],
    *,
    attempts: int = 3,
    base_delay: float = 0.5,
    max_delay: float = 30,
    clock: Clock,
    jitter: Callable[[], float] = random.random,
) -> T:
    """Call ``fn``, retrying :class:`RetryableError` up to ``attempts`` calls in all.

    A ``retry_after`` longer than ``max_delay`` is re-raised at once: the caller should
    nack with that delay rather than hold the message. Everything else propagates.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    for attempt in range(1, attempts + 1):
        try:
            return await fn()
        except CursorInvalidError:
            # Calling again with the same cursor fails the same way; the caller resyncs.
            raise
        except RetryableError as err:
            delay = _retry_delay(err, attempt, base_delay, max_delay, jitter)
            if attempt == attempts or delay is None:
                raise
            await clock.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _retry_delay(
    err: RetryableError,
    attempt: int,
    base_delay: float,
    max_delay: float,
    jitter: Callable[[], float],
) -> float | None:
    """How long to wait before the next attempt; ``None`` when waiting here is wrong."""
    if err.retry_after is None:
        return backoff_delay(attempt, base_delay, max_delay, jitter())
    if not math.isfinite(err.retry_after) or err.retry_after > max_delay:
        return None
    return max(0.0, err.retry_after)


def raise_for_transport(err: Exception) -> NoReturn:
    """Re-raise a network-level failure as :class:`RetryableError`; anything else unchanged.

    Use at a provider client's boundary::

        except (aiohttp.ClientError, TimeoutError) as err:
            raise_for_transport(err)
    """
    if isinstance(err, _TRANSPORT_ERRORS):
        kind = "timeout" if isinstance(err, asyncio.TimeoutError) else "connection"
        raise RetryableError(
            f"{kind} error talking to upstream: {type(err).__name__}: {err}",
            details={"cause": type(err).__name__},
        ) from err
    raise err


# -- calling a JSON API --------------------------------------------------------------------

Params = Mapping[str, str] | Sequence[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer, read to the end. ``body`` is the decoded JSON, ``None`` when the
    body was empty or not JSON (``decode_error`` then says why)."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    raw: bytes = b""
    decode_error: ValueError | None = None

    def header(self, name: str) -> str | None:
        """A header by name, of any case (providers send both)."""
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)

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
    provider: str,
    operation: str,
    headers: Mapping[str, str] | None = None,
    params: Params | None = None,
    json_body: Any = None,
    form: Mapping[str, str] | None = None,
    allow_redirects: bool = True,
) -> Answer:
    """One request and its whole answer; only a transport failure raises
    (:class:`RetryableError`), every status comes back for the caller to map.

    ``provider`` and ``operation`` label the call's count and latency on /metrics
    (:mod:`syncplane_common.provider_metrics`); ``operation`` names the endpoint, never
    a URL."""
    started = time.perf_counter()
    try:
        async with session.request(
            method,
            url,
            params=params,
            json=json_body,
            data=form,
            headers=headers,
            allow_redirects=allow_redirects,
        ) as response:
            raw = await response.read()
            status, received = response.status, dict(response.headers)
    except (aiohttp.ClientError, TimeoutError) as err:
        provider_metrics.observe(provider, operation, None, time.perf_counter() - started)
        raise_for_transport(err)
    # A cancelled call is neither an answer nor the provider's failure: not counted.
    provider_metrics.observe(provider, operation, status, time.perf_counter() - started)
    try:
        # json.loads, not a float-happy decoder: ids stay exact Python ints.
        body = json.loads(raw) if raw else None
    except ValueError as err:  # UnicodeDecodeError is a ValueError too
        return Answer(status, received, None, raw, err)
    return Answer(status, received, body, raw)


def retry_after(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds a ``Retry-After`` header (of any case) asks to wait; ``None`` without one."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    return parse_retry_after(value, now)
