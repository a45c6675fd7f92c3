"""The rate budget's decisions, without I/O: which window a moment falls in, whether a
window admits a reservation for a priority, how long to wait, and how a provider's usage
headers correct a counter (ARCHITECTURE §4 "Rate budgets", PROVIDERS.md §3.2, §7.2, §8.2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum

__all__ = [
    "Counts",
    "Observed",
    "Priority",
    "Slot",
    "Window",
    "admits",
    "allowance",
    "corrected",
    "released",
    "reserved",
    "slot_of",
]


class Priority(StrEnum):
    INTERACTIVE = "interactive"  # webhooks, on demand, smart reads
    BACKGROUND = "background"  # backfill, scheduled


@dataclass(frozen=True, slots=True)
class Window:
    """One provider limit window. Windows are fixed and aligned to the epoch (Strava:
    quarter hours and 00:00 UTC; WHOOP and Open-Meteo: minute, hour, day), so a window
    starts at ``floor(t / seconds) * seconds``."""

    name: str
    seconds: int
    limit: int

    def __post_init__(self) -> None:
        if self.seconds <= 0 or self.limit <= 0:
            raise ValueError(f"window {self.name!r} needs positive seconds and limit")


@dataclass(frozen=True, slots=True)
class Observed:
    """What a provider said about usage of one window in one answer. ``used`` is a lower
    bound on what it counted (exact for Strava; see ``whoop_observed`` for WHOOP)."""

    window: str
    limit: int
    used: int


@dataclass(frozen=True, slots=True)
class Slot:
    """One window instance: the counters of ``provider``'s ``window`` starting at ``start``."""

    provider: str
    window: str
    start: int
    seconds: int

    @property
    def end(self) -> int:
        return self.start + self.seconds


@dataclass(frozen=True, slots=True)
class Counts:
    """A slot's shared counters. ``reserved`` counts every call of the window (both
    priorities, and raised to what the provider counted); ``background`` only the
    background reservations, which are capped at their share. ``limit`` is the limit the
    slot is held to: the configured one until a provider answer says otherwise."""

    reserved: int
    background: int
    limit: int


def slot_of(provider: str, window: Window, t: float) -> Slot:
    start = math.floor(t / window.seconds) * window.seconds
    return Slot(provider, window.name, int(start), window.seconds)


def allowance(limit: int, priority: Priority, background_share: float) -> int:
    """How much of ``limit`` the priority may use; interactive work may use all of it."""
    if priority is Priority.INTERACTIVE:
        return limit
    return math.floor(limit * background_share)


def admits(counts: Counts, priority: Priority, cost: int, background_share: float) -> bool:
    """Background work is held to its share of the window on its own count, so whatever
    it does, ``limit - share * limit`` stays for interactive work; every call, of either
    priority, is held to the whole limit."""
    if counts.reserved + cost > counts.limit:
        return False
    if priority is Priority.BACKGROUND:
        share = allowance(counts.limit, priority, background_share)
        return counts.background + cost <= share
    return True


def reserved(counts: Counts, priority: Priority, cost: int) -> Counts:
    background = counts.background + (cost if priority is Priority.BACKGROUND else 0)
    return replace(counts, reserved=counts.reserved + cost, background=background)


def released(counts: Counts, priority: Priority, cost: int) -> Counts:
    """Undo a reservation (the call was never made because another window refused)."""
    background = counts.background - (cost if priority is Priority.BACKGROUND else 0)
    return replace(counts, reserved=max(counts.reserved - cost, 0), background=max(background, 0))


def corrected(counts: Counts, observed: Observed) -> Counts:
    """Raise ``reserved`` to what the provider counted, never below what we reserved (our
    own calls may still be in flight), and take the provider's limit as the truth."""
    limit = observed.limit if observed.limit > 0 else counts.limit
    return replace(counts, reserved=max(counts.reserved, observed.used), limit=limit)
