"""Single flight inside one process: concurrent callers for one key share one in-flight
call instead of each starting its own (and each holding a database connection while
waiting for the cluster-wide row lock)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class SingleFlight(Generic[K, T]):
    def __init__(self) -> None:
        self._flights: dict[K, asyncio.Task[T]] = {}

    def busy(self, key: K) -> bool:
        return key in self._flights

    async def run(self, key: K, call: Callable[[], Awaitable[T]]) -> T:
        """Join the flight for ``key``, or start one with ``call``.

        The flight is a task of its own: a caller that gives up (its request timed out)
        does not cancel a refresh the provider may already have answered.
        """
        task = self._flights.get(key)
        if task is None:
            task = asyncio.ensure_future(call())
            self._flights[key] = task
            task.add_done_callback(lambda done: self._landed(key, done))
        return await asyncio.shield(task)

    def _landed(self, key: K, task: asyncio.Task[T]) -> None:
        if self._flights.get(key) is task:
            del self._flights[key]
        if not task.cancelled():
            # Every waiter may have gone; the outcome was still seen.
            with contextlib.suppress(BaseException):
                task.exception()

    async def drain(self) -> None:
        """Wait for the flights in progress (shutdown: let refreshes persist)."""
        if self._flights:
            await asyncio.gather(*self._flights.values(), return_exceptions=True)
