"""The enrichment cache port and its in-memory TTL implementation (a Postgres-backed one
can sit behind the same Protocol later)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

from syncplane_common.clock import Clock

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
K_contra = TypeVar("K_contra", bound=Hashable, contravariant=True)


class Cache(Protocol[K_contra, V]):
    def get(self, key: K_contra) -> V | None:
        """The fresh value for ``key``, or None when absent or expired."""
        ...

    def put(self, key: K_contra, value: V) -> None: ...


class TtlCache(Generic[K, V]):
    """Entries live ``ttl_seconds`` on the clock's monotonic time; past ``max_entries``
    the least recently written entry goes first."""

    def __init__(self, clock: Clock, ttl_seconds: float, max_entries: int = 100_000) -> None:
        if ttl_seconds <= 0 or max_entries < 1:
            raise ValueError("ttl_seconds and max_entries must be positive")
        self._clock = clock
        self._ttl = ttl_seconds
        self._max = max_entries
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if self._clock.monotonic() >= expires:
            del self._entries[key]
            return None
        return value

    def put(self, key: K, value: V) -> None:
        self._entries.pop(key, None)
        self._entries[key] = (self._clock.monotonic() + self._ttl, value)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
