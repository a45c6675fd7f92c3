"""Every outbound provider call, counted and timed (ARCHITECTURE §7: provider call counts,
latencies, 429s), recorded once in :func:`syncplane_common.http.call`, which every
provider client in every service goes through.

``status`` is the HTTP status as sent (``429`` stays its own series, so throttling is
one selector away) or ``error`` when no answer came (connection refused, timeout).
``operation`` is the caller's name for the endpoint, never a URL: paths carry ids.
"""

from __future__ import annotations

import functools

from prometheus_client import Counter, Histogram

__all__ = ["PROVIDER_CALLS", "PROVIDER_CALL_SECONDS", "observe"]

PROVIDER_CALLS = Counter(
    "syncplane_provider_calls_total",
    "Calls to provider APIs, by provider, operation and HTTP status (error: no answer)",
    ["provider", "operation", "status"],
)
PROVIDER_CALL_SECONDS = Histogram(
    "syncplane_provider_call_seconds",
    "Seconds from sending a provider call to having read its whole answer",
    ["provider", "operation"],
    # Provider APIs answer in tens to hundreds of ms; the tail up to the client's timeout.
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


# Bound children, looked up once: labels() takes a lock and builds a key per call.
@functools.cache
def _count(provider: str, operation: str, status: str) -> Counter:
    return PROVIDER_CALLS.labels(provider, operation, status)


@functools.cache
def _timing(provider: str, operation: str) -> Histogram:
    return PROVIDER_CALL_SECONDS.labels(provider, operation)


def observe(provider: str, operation: str, status: int | None, seconds: float) -> None:
    """One call: its answer's status (``None``: no answer) and how long it took."""
    _count(provider, operation, "error" if status is None else str(status)).inc()
    _timing(provider, operation).observe(seconds)
