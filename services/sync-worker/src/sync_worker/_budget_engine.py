"""The one reservation mechanism behind every rate budget, over a counter store port.

Both implementations (``MemoryRateBudget`` in _budget_memory, ``KvRateBudget`` in _budget_kv)
are this engine over a different :class:`CounterStore`, so the behaviour the shared suite
tests is the behaviour production runs; only compare-and-set differs.

A reservation spans every window of the provider. The store can only compare-and-set one
slot at a time, so every window is reserved on its own and, when one refuses (another
replica got there first), the others are released again. In between, a
slot may briefly count a call that is never made: that only ever refuses too early, never
admits too much, which is the side a budget has to err on.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Protocol

from syncplane_common.clock import Clock
from syncplane_common.errors import RetryableError

from sync_worker import _budget_metrics as metrics
from sync_worker._budget_policy import (
    Counts,
    Observed,
    Priority,
    Slot,
    Window,
    admits,
    allowance,
    corrected,
    released,
    reserved,
    slot_of,
)

__all__ = ["DEFAULT_CLOCK_SKEW", "CounterStore", "CountingBudget"]

# Compare-and-set attempts on one slot before giving up. Each retry means another replica
# wrote the same slot in between; dozens in a row means the store is misbehaving.
MAX_ATTEMPTS = 64
# Observations this close after a window's start are not trusted to raise its count: with
# our clock a little ahead of the provider's, the provider may still be reporting the
# window before, and applying its (full) count to ours would block a whole window.
DEFAULT_CLOCK_SKEW = 2.0


class CounterStore(Protocol):
    """Shared counters per slot with compare-and-set. ``revision`` None means "absent"."""

    async def read(self, slot: Slot) -> tuple[Counts | None, int | None]:
        """The slot's counts (None if absent or unreadable) and the revision to write over."""
        ...

    async def write(self, slot: Slot, counts: Counts, revision: int | None) -> bool:
        """Store ``counts`` if the slot is still at ``revision``; False if it moved on."""
        ...


class CountingBudget:
    """Reserve calls in every window of a provider; see :class:`~sync_worker.budget.RateBudget`."""

    def __init__(
        self,
        store: CounterStore,
        limits: Mapping[str, Sequence[Window]],
        clock: Clock,
        background_share: float = 0.8,
        *,
        clock_skew: float = DEFAULT_CLOCK_SKEW,
    ) -> None:
        if not 0.0 < background_share <= 1.0:
            raise ValueError(f"background_share must be in (0, 1], got {background_share}")
        for provider, windows in limits.items():
            names = [w.name for w in windows]
            if len(set(names)) != len(names):
                raise ValueError(f"{provider}: window names must be unique, got {names}")
        self._store = store
        self._limits = {provider: tuple(windows) for provider, windows in limits.items()}
        self._clock = clock
        self._share = background_share
        self._skew = clock_skew
        # Limits the provider told us (usage headers), replacing the configured ones.
        self._adopted: dict[tuple[str, str], int] = {}
        # One reservation per provider at a time in this process: tasks of one replica
        # racing for the same keys only make each other retry (measured: ~15
        # compare-and-set conflicts per acquire with 3 replicas x 4 tasks, unserialized).
        self._locks: dict[str, asyncio.Lock] = {}

    def windows(self, provider: str) -> tuple[Window, ...]:
        """The provider's windows with the limits currently in force."""
        return tuple(
            replace(w, limit=self._adopted.get((provider, w.name), w.limit))
            for w in self._limits.get(provider, ())
        )

    def _now(self) -> float:
        return self._clock.now().timestamp()

    async def acquire(self, provider: str, priority: Priority, cost: int = 1) -> float:
        async with self._locks.setdefault(provider, asyncio.Lock()):
            return await self._acquire(provider, priority, cost)

    async def _acquire(self, provider: str, priority: Priority, cost: int) -> float:
        if cost < 1:
            raise ValueError(f"cost must be at least 1, got {cost}")
        windows = self.windows(provider)
        for window in windows:
            if cost > allowance(window.limit, priority, self._share):
                raise ValueError(
                    f"{provider} {window.name}: cost {cost} exceeds what {priority} work "
                    f"may ever use of a window ({window.limit} x share)"
                )
        now = self._now()
        slots = [slot_of(provider, window, now) for window in windows]
        states = await asyncio.gather(*(self._read(s) for s in slots))
        refused = [
            slot
            for slot, (counts, _) in zip(slots, states, strict=True)
            if not admits(counts, priority, cost, self._share)
        ]
        if refused:
            return self._wait(priority, refused, now)
        # All windows at once: one round trip however many windows the provider has.
        results = await asyncio.gather(
            *(
                self._update(slot, self._reserving(priority, cost), state)
                for slot, state in zip(slots, states, strict=True)
            )
        )
        lost = [slot for slot, result in zip(slots, results, strict=True) if result is None]
        if lost:
            # Another replica took the room between our read and our write: give back
            # what we did get, so the windows keep counting only calls that are made.
            release = functools.partial(released, priority=priority, cost=cost)
            won = [slot for slot, result in zip(slots, results, strict=True) if result is not None]
            await asyncio.gather(*(self._update(slot, release) for slot in won))
            return self._wait(priority, lost, now)
        metrics.acquired(provider, priority, cost)
        return 0.0

    def _reserving(self, priority: Priority, cost: int) -> Callable[[Counts], Counts | None]:
        def change(counts: Counts) -> Counts | None:
            if not admits(counts, priority, cost, self._share):
                return None
            return reserved(counts, priority, cost)

        return change

    def _wait(self, priority: Priority, refused: list[Slot], now: float) -> float:
        # The latest boundary among the refusing windows is the earliest moment all of
        # them could admit: a spent daily window outranks the next quarter hour.
        wait = max(slot.end for slot in refused) - now
        metrics.waited(refused[0].provider, priority, [s.window for s in refused], wait)
        return wait

    async def observe(
        self, provider: str, observed: Sequence[Observed], *, at: datetime | None = None
    ) -> None:
        now = self._now()
        t = now if at is None else at.timestamp()
        configured = {w.name: w for w in self._limits.get(provider, ())}
        corrections: list[tuple[Slot, Observed]] = []
        for seen in observed:
            if seen.window not in configured:
                continue  # a window we do not budget (yet): nothing to correct
            if seen.limit > 0:
                self._adopt(provider, seen.window, seen.limit)
            slot = slot_of(provider, configured[seen.window], t)
            if slot.start < slot_of(provider, configured[seen.window], now).start:
                continue  # that window is over; its count no longer matters
            if t - slot.start < self._skew:
                seen = replace(seen, used=0)  # keep the limit, distrust the count
            corrections.append((slot, seen))
        before = await asyncio.gather(
            *(
                self._update(slot, functools.partial(corrected, observed=seen))
                for slot, seen in corrections
            )
        )
        for (slot, seen), counts in zip(corrections, before, strict=True):
            if counts is not None:
                metrics.corrected(provider, slot.window, seen.used - counts.reserved)

    def _adopt(self, provider: str, window: str, limit: int, *, told: bool = True) -> None:
        """Use ``limit`` from now on. Only the provider itself (``told``) brings us back to
        the configured limit: a slot created by a replica that has not heard from the
        provider yet carries the configured one, and must not undo what we learnt."""
        configured = next(w.limit for w in self._limits[provider] if w.name == window)
        if limit != configured:
            self._adopted[(provider, window)] = limit
        elif told:
            self._adopted.pop((provider, window), None)

    async def usage(self, provider: str) -> list[tuple[Slot, Counts]]:
        """The current windows of ``provider`` and their shared counts."""
        now = self._now()
        slots = [slot_of(provider, w, now) for w in self.windows(provider)]
        states = await asyncio.gather(*(self._read(s) for s in slots))
        return [(slot, counts) for slot, (counts, _) in zip(slots, states, strict=True)]

    async def _read(self, slot: Slot) -> tuple[Counts, int | None]:
        counts, revision = await self._store.read(slot)
        if counts is None:
            limit = next(w.limit for w in self.windows(slot.provider) if w.name == slot.window)
            counts = Counts(reserved=0, background=0, limit=limit)
        elif counts.limit > 0:
            # Another replica may have learnt a new limit from the provider: follow it.
            self._adopt(slot.provider, slot.window, counts.limit, told=False)
        metrics.slot_seen(slot, counts)
        return counts, revision

    async def _update(
        self,
        slot: Slot,
        change: Callable[[Counts], Counts | None],
        state: tuple[Counts, int | None] | None = None,
    ) -> Counts | None:
        """Compare-and-set ``change`` onto the slot; None when ``change`` declines. Returns
        the counts it changed (so callers can tell how much was added)."""
        for _ in range(MAX_ATTEMPTS):
            counts, revision = state if state is not None else await self._read(slot)
            state = None
            new = change(counts)
            if new is None:
                return None
            if new == counts:
                return counts
            if await self._store.write(slot, new, revision):
                metrics.slot_seen(slot, new)
                return counts
            metrics.conflict(slot.provider)
        raise RetryableError(
            f"rate budget {slot.provider} {slot.window}: no compare-and-set succeeded in "
            f"{MAX_ATTEMPTS} attempts",
            retry_after=1.0,
        )
