"""The in-memory counter store and budget: unit tests and a single process. The same
engine as the shared budget (_budget_engine), so only compare-and-set is simulated."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

from syncplane_common.clock import Clock

from sync_worker._budget_engine import DEFAULT_CLOCK_SKEW, CountingBudget
from sync_worker._budget_policy import Counts, Slot, Window

__all__ = ["MemoryCounterStore", "MemoryRateBudget"]


class MemoryCounterStore:
    """The in-memory store: one process, so compare-and-set is a dictionary lookup."""

    def __init__(self) -> None:
        self._slots: dict[Slot, tuple[Counts, int]] = {}
        self._revisions = itertools.count(1)

    async def read(self, slot: Slot) -> tuple[Counts | None, int | None]:
        entry = self._slots.get(slot)
        return (None, None) if entry is None else entry

    async def write(self, slot: Slot, counts: Counts, revision: int | None) -> bool:
        entry = self._slots.get(slot)
        if (None if entry is None else entry[1]) != revision:
            return False
        if entry is None:
            # A new window: the ones it follows are over (the KV bucket expires them by TTL).
            for old in [s for s in self._slots if _same_series(s, slot) and s.end <= slot.start]:
                del self._slots[old]
        self._slots[slot] = (counts, next(self._revisions))
        return True


def _same_series(a: Slot, b: Slot) -> bool:
    return a.provider == b.provider and a.window == b.window


class MemoryRateBudget(CountingBudget):
    """The in-memory budget: for unit tests and a single process."""

    def __init__(
        self,
        limits: Mapping[str, Sequence[Window]],
        clock: Clock,
        background_share: float = 0.8,
        *,
        clock_skew: float = DEFAULT_CLOCK_SKEW,
    ) -> None:
        super().__init__(
            MemoryCounterStore(), limits, clock, background_share, clock_skew=clock_skew
        )
