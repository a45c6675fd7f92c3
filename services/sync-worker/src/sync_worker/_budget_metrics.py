"""The rate budget's Prometheus series (served by the runtime's /metrics, ARCHITECTURE §7).

Gauges hold what this replica last saw of the current window; replicas share one budget,
so ``max by (provider, window)`` over replicas is the cluster's view (the
``SyncplaneProviderQuotaHigh`` alert in deploy/prometheus reads the ratio that way).
"""

from __future__ import annotations

import functools

from prometheus_client import Counter, Gauge

from sync_worker._budget_policy import Counts, Priority, Slot

BUDGET_RESERVED = Gauge(
    "syncplane_provider_budget_reserved",
    "Calls reserved (or counted by the provider) in the provider's current window",
    ["provider", "window"],
)
BUDGET_LIMIT = Gauge(
    "syncplane_provider_budget_limit",
    "The provider's limit for the window (configured, or as its usage headers said)",
    ["provider", "window"],
)
BUDGET_USED_RATIO = Gauge(
    "syncplane_provider_budget_used_ratio",
    "Reserved calls over the limit in the provider's current window",
    ["provider", "window"],
)
BUDGET_ACQUIRED = Counter(
    "syncplane_provider_budget_acquired_total",
    "Calls reserved in the shared budget, by priority",
    ["provider", "priority"],
)
BUDGET_WAITS = Counter(
    "syncplane_provider_budget_waits_total",
    "Reservations refused until a window boundary, by the window that refused",
    ["provider", "priority", "window"],
)
BUDGET_WAIT_SECONDS = Counter(
    "syncplane_provider_budget_wait_seconds_total",
    "Seconds of delay handed to callers whose reservation was refused",
    ["provider", "priority"],
)
BUDGET_CORRECTIONS = Counter(
    "syncplane_provider_budget_corrections_total",
    "Calls the provider counted beyond our reservations (added from its usage headers)",
    ["provider", "window"],
)
BUDGET_CONFLICTS = Counter(
    "syncplane_provider_budget_conflicts_total",
    "Compare-and-set retries on the shared counters (contention between replicas)",
    ["provider"],
)


# Bound children, looked up once: labels() takes a lock and builds a key per call, and
# every provider call goes through the budget.
@functools.cache
def _slot_gauges(provider: str, window: str) -> tuple[Gauge, Gauge, Gauge]:
    return (
        BUDGET_RESERVED.labels(provider, window),
        BUDGET_LIMIT.labels(provider, window),
        BUDGET_USED_RATIO.labels(provider, window),
    )


def slot_seen(slot: Slot, counts: Counts) -> None:
    reserved, limit, ratio = _slot_gauges(slot.provider, slot.window)
    reserved.set(counts.reserved)
    limit.set(counts.limit)
    ratio.set(counts.reserved / counts.limit if counts.limit else 0.0)


def acquired(provider: str, priority: Priority, cost: int) -> None:
    BUDGET_ACQUIRED.labels(provider, priority.value).inc(cost)


def waited(provider: str, priority: Priority, windows: list[str], seconds: float) -> None:
    for window in windows:
        BUDGET_WAITS.labels(provider, priority.value, window).inc()
    BUDGET_WAIT_SECONDS.labels(provider, priority.value).inc(seconds)


def corrected(provider: str, window: str, added: int) -> None:
    if added > 0:
        BUDGET_CORRECTIONS.labels(provider, window).inc(added)


def conflict(provider: str) -> None:
    BUDGET_CONFLICTS.labels(provider).inc()
