"""Backoff, Retry-After parsing and bounded retries, on a ManualClock (nothing sleeps)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from syncplane_common.clock import ManualClock
from syncplane_common.errors import (
    CursorInvalidError,
    PermanentError,
    ReauthRequiredError,
    RetryableError,
)
from syncplane_common.http import (
    backoff_delay,
    parse_retry_after,
    raise_for_transport,
    with_retries,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def no_jitter() -> float:
    return 0.0


def failing(
    errors: list[Exception], result: str = "ok"
) -> tuple[Callable[[], Awaitable[str]], list[int]]:
    """A call that raises ``errors`` in order, then returns ``result``; counts its calls."""
    calls: list[int] = []

    async def fn() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result

    return fn, calls


@pytest.mark.parametrize(
    ("attempt", "base", "maximum", "jitter", "expected"),
    [
        (1, 0.5, 30, 0.0, 0.5),
        (2, 0.5, 30, 0.0, 1.0),
        (3, 0.5, 30, 0.0, 2.0),
        (4, 1.0, 30, 0.0, 8.0),
        (6, 1.0, 30, 0.0, 30.0),
        (1, 1.0, 30, 0.5, 1.5),
        (3, 1.0, 30, 1.0, 8.0),
        (5, 1.0, 20, 1.0, 20.0),
        (1, 1.0, 30, 7.0, 2.0),
        (1, 1.0, 30, -1.0, 1.0),
        (10_000, 1.0, 300, 0.0, 300.0),
    ],
)
def test_backoff_delay(
    attempt: int, base: float, maximum: float, jitter: float, expected: float
) -> None:
    assert backoff_delay(attempt, base, maximum, jitter) == expected


def test_backoff_delay_counts_attempts_from_one() -> None:
    with pytest.raises(ValueError):
        backoff_delay(0, 1.0, 10.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("Thu, 01 Jan 2026 12:00:30 GMT", 30.0),
        ("Thu, 01 Jan 2026 13:00:00 GMT", 3600.0),
        ("Thu, 01 Jan 2026 11:00:00 GMT", 0.0),
        ("Wed, 31 Dec 2025 23:59:59 GMT", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("nan", None),
        ("inf", None),
        ("1e3", None),
        ("Thu, 99 Foo 2026 12:00:30 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


async def test_honours_retry_after_exactly() -> None:
    clock = ManualClock(NOW)
    fn, calls = failing([RetryableError("429", retry_after=7.25)])

    assert await with_retries(fn, clock=clock, jitter=no_jitter) == "ok"

    assert len(calls) == 2
    assert clock.now() - NOW == timedelta(seconds=7.25)


async def test_exponential_backoff_without_retry_after() -> None:
    clock = ManualClock(NOW)
    fn, calls = failing([RetryableError("503"), RetryableError("503"), RetryableError("503")])

    result = await with_retries(fn, attempts=4, base_delay=0.5, clock=clock, jitter=no_jitter)

    assert result == "ok"
    assert len(calls) == 4
    assert clock.monotonic() == 0.5 + 1.0 + 2.0


async def test_jitter_lengthens_the_backoff() -> None:
    clock = ManualClock(NOW)
    fn, _ = failing([RetryableError("503")])

    await with_retries(fn, base_delay=2.0, clock=clock, jitter=lambda: 0.25)

    assert clock.monotonic() == 2.5


async def test_gives_up_after_attempts_with_the_last_error() -> None:
    clock = ManualClock(NOW)
    errors: list[Exception] = [RetryableError(f"fail {n}") for n in range(3)]
    fn, calls = failing(errors)

    with pytest.raises(RetryableError) as caught:
        await with_retries(fn, attempts=3, base_delay=1.0, clock=clock, jitter=no_jitter)

    assert caught.value is errors[-1]
    assert len(calls) == 3
    assert clock.monotonic() == 1.0 + 2.0


@pytest.mark.parametrize(
    "error",
    [
        PermanentError("404"),
        ReauthRequiredError("invalid_grant"),
        CursorInvalidError("410"),
        KeyError("bug"),
    ],
)
async def test_does_not_retry_other_errors(error: Exception) -> None:
    clock = ManualClock(NOW)
    fn, calls = failing([error])

    with pytest.raises(type(error)):
        await with_retries(fn, clock=clock, jitter=no_jitter)

    assert len(calls) == 1
    assert clock.monotonic() == 0.0


async def test_retry_after_beyond_max_delay_is_reraised_without_sleeping() -> None:
    clock = ManualClock(NOW)
    error = RetryableError("429", retry_after=120.0)
    fn, calls = failing([error])

    with pytest.raises(RetryableError) as caught:
        await with_retries(fn, max_delay=30, clock=clock, jitter=no_jitter)

    assert caught.value is error
    assert caught.value.retry_after == 120.0
    assert len(calls) == 1
    assert clock.monotonic() == 0.0


async def test_retry_after_equal_to_max_delay_is_waited() -> None:
    clock = ManualClock(NOW)
    fn, _ = failing([RetryableError("429", retry_after=30.0)])

    assert await with_retries(fn, max_delay=30, clock=clock, jitter=no_jitter) == "ok"
    assert clock.monotonic() == 30.0


@pytest.mark.parametrize(
    "error",
    [
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientConnectionError("refused"),
        TimeoutError(),
        aiohttp.ClientPayloadError("truncated"),
    ],
)
def test_raise_for_transport_maps_to_retryable(error: Exception) -> None:
    with pytest.raises(RetryableError) as caught:
        raise_for_transport(error)

    assert caught.value.__cause__ is error
    assert caught.value.retry_after is None


def test_raise_for_transport_passes_other_errors_through() -> None:
    error = ValueError("not a transport problem")

    with pytest.raises(ValueError) as caught:
        raise_for_transport(error)

    assert caught.value is error
