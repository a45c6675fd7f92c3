"""Shared per-provider rate budgets (ARCHITECTURE §4 "Rate budgets"; PROVIDERS.md §3.2
Strava, §7.2 WHOOP, §8.2 Open-Meteo).

Provider limits are per application, so every sync-worker replica draws on one budget
per provider and window. Before each provider call a worker ``acquire``s; a refusal comes
with the seconds to the window boundary that could admit it, and the caller delays the
work (nak with that delay) instead of calling into a 429. After each answer it
``observe``s the provider's usage headers, which raise the shared counts to what the
provider counted (calls made outside the budget, refused calls that still count) and
replace a configured limit the provider no longer applies.

Background work (backfills, scheduled syncs) may use at most ``background_share`` of a
window, counted on its own; interactive work (webhooks, on demand, smart reads) may use
all of it, so a backfill can never starve it.

    RateBudget (Protocol)
     └── CountingBudget      the one mechanism (_budget_engine), over a CounterStore
          ├── MemoryRateBudget   in-process dictionary: unit tests, one process (_budget_memory)
          └── KvRateBudget       NATS KV ``rate_budgets``: all replicas (_budget_kv)

A provider call, as the sync engine makes it::

    wait = await budget.acquire("strava", Priority.BACKGROUND)
    if wait > 0:
        raise RetryableError("strava budget spent", retry_after=wait)  # nak with delay
    sent = clock.now()
    page = await strava.list_activities(token, after=..., before=None, page=n)
    await budget.observe("strava", strava_observed(page.usage), at=sent)

Google has sliding per-minute quotas per user and per project and no usage headers
(§5.1). Google Fit publishes no numbers (§6.1), so its one window is a setting
(:func:`google_fit_windows`); Calendar has no limits here, and ``acquire`` admits at once
for a provider without windows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol

from sync_worker._budget_engine import CounterStore, CountingBudget
from sync_worker._budget_kv import BUCKET, KvCounterStore, KvRateBudget, slot_key
from sync_worker._budget_memory import MemoryCounterStore, MemoryRateBudget
from sync_worker._budget_policy import Counts, Observed, Priority, Slot, Window
from sync_worker._budget_usage import (
    WhoopUsage,
    parse_whoop_usage,
    strava_observed,
    whoop_client_observed,
    whoop_observed,
)
from sync_worker.settings import parse_pair

if TYPE_CHECKING:
    from sync_worker.settings import SyncWorkerSettings

__all__ = [
    "BUCKET",
    "DEFAULT_BACKGROUND_SHARE",
    "DEFAULT_LIMITS",
    "GOOGLE_FIT_WINDOWS",
    "OPEN_METEO_WINDOWS",
    "STRAVA_WINDOWS",
    "WHOOP_WINDOWS",
    "CounterStore",
    "CountingBudget",
    "Counts",
    "KvCounterStore",
    "KvRateBudget",
    "MemoryCounterStore",
    "MemoryRateBudget",
    "Observed",
    "Priority",
    "RateBudget",
    "Slot",
    "WhoopUsage",
    "Window",
    "configured_limits",
    "default_limits",
    "google_fit_windows",
    "open_meteo_windows",
    "parse_whoop_usage",
    "slot_key",
    "strava_observed",
    "strava_windows",
    "whoop_client_observed",
    "whoop_observed",
    "whoop_windows",
]

QUARTER_HOUR = 900
MINUTE = 60
HOUR = 3_600
DAY = 86_400

DEFAULT_BACKGROUND_SHARE = 0.8


class RateBudget(Protocol):
    async def acquire(self, provider: str, priority: Priority, cost: int = 1) -> float:
        """Reserve ``cost`` calls in every window of ``provider``. Returns 0.0 when reserved;
        otherwise the seconds until the earliest window boundary that could admit it, and
        nothing is reserved (the caller naks with that delay / sleeps).

        The wait counts from the moment ``acquire`` read the clock. Several callers
        refused in one window all get the same boundary: wait for the boundary, not for
        "now + wait" taken after other work has moved time on."""
        ...

    async def observe(
        self, provider: str, observed: Sequence[Observed], *, at: datetime | None = None
    ) -> None:
        """Correct the shared counters from the provider's usage headers (never lowers a
        counter below what was reserved; raises it to what the provider counted, and adopts
        the provider's limit if it differs).

        ``at`` is when the request was sent (default: now). Pass it: an answer that
        arrives after a window boundary speaks of the window before, and must not be
        applied to the new one."""
        ...


def strava_windows(
    overall: tuple[int, int] = (200, 2_000), read: tuple[int, int] = (100, 1_000)
) -> tuple[Window, ...]:
    """Strava's per-app limits (§3.2), ``(15 min, daily)`` per bucket: quarter hours on the
    clock and 00:00 UTC, both epoch-aligned. Every call we make is a read, so each one
    counts in all four windows; the read bucket is the one that binds."""
    return (
        Window("15min", QUARTER_HOUR, overall[0]),
        Window("daily", DAY, overall[1]),
        Window("read_15min", QUARTER_HOUR, read[0]),
        Window("read_daily", DAY, read[1]),
    )


def whoop_windows(per_minute: int = 100, per_day: int = 10_000) -> tuple[Window, ...]:
    """WHOOP's per-app limits (§7.2); fixed windows as the sandbox keeps them (the docs do
    not say fixed or sliding)."""
    return (Window("minute", MINUTE, per_minute), Window("day", DAY, per_day))


def open_meteo_windows(
    per_minute: int = 600, per_hour: int = 5_000, per_day: int = 10_000
) -> tuple[Window, ...]:
    """Open-Meteo's free tier (§8.2): counted per client IP, so the shared budget is right
    only while the replicas share one egress address. Heavy requests weigh more than one
    call: pass their weight, rounded up, as ``cost``."""
    return (
        Window("minute", MINUTE, per_minute),
        Window("hour", HOUR, per_hour),
        Window("day", DAY, per_day),
    )


def google_fit_windows(per_minute: int = 5_000) -> tuple[Window, ...]:
    """Google Fit (§6.1): no published quota, Google's windows slide over a minute. A
    fixed window admits up to twice its limit within one sliding minute across a
    boundary, so the default is half of Calendar's 10,000/min per project (§5.1)."""
    return (Window("minute", MINUTE, per_minute),)


STRAVA_WINDOWS = strava_windows()
GOOGLE_FIT_WINDOWS = google_fit_windows()
WHOOP_WINDOWS = whoop_windows()
OPEN_METEO_WINDOWS = open_meteo_windows()


def default_limits(
    *,
    strava: Sequence[Window] = STRAVA_WINDOWS,
    whoop: Sequence[Window] = WHOOP_WINDOWS,
    open_meteo: Sequence[Window] = OPEN_METEO_WINDOWS,
    google_fit: Sequence[Window] = GOOGLE_FIT_WINDOWS,
) -> Mapping[str, Sequence[Window]]:
    """The limits by provider name, any of them replaced (e.g. from settings)."""
    return MappingProxyType(
        {
            "strava": tuple(strava),
            "whoop": tuple(whoop),
            "open_meteo": tuple(open_meteo),
            "google_fit": tuple(google_fit),
        }
    )


DEFAULT_LIMITS = default_limits()


def configured_limits(settings: SyncWorkerSettings) -> Mapping[str, Sequence[Window]]:
    """The limits the settings give: the one reading of them that the budget enforces and
    the admin console reports, so the two cannot disagree."""
    return default_limits(
        strava=strava_windows(
            parse_pair(settings.strava_rate_limit), parse_pair(settings.strava_read_rate_limit)
        ),
        whoop=whoop_windows(*parse_pair(settings.whoop_rate_limit)),
        google_fit=google_fit_windows(settings.google_fit_rate_limit_per_minute),
    )
