"""Reading what other services registered for the gateway in JetStream KV buckets
(Calendar push channels, the Strava subscription id), behind a short cache.

The gateway keeps no database: a KV read is a NATS request, so hot keys are cached for
``ttl`` seconds. A caller whose check fails against a cached value may ask again with a
smaller ``max_age`` (a channel just re-registered, a subscription just created), which
re-reads at most once per ``refresh_floor`` seconds so a flood of bad deliveries cannot
turn into a flood of KV reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, InvalidKeyError, KeyNotFoundError
from nats.js.kv import KeyValue
from syncplane_common.clock import Clock


class KvUnavailable(Exception):
    """The bucket could not be read right now (NATS down or slow)."""


@dataclass
class _Cached:
    value: bytes | None
    read_at: float


class KvCache:
    def __init__(
        self,
        jetstream: Callable[[], JetStreamContext],
        bucket: str,
        *,
        ttl: float,
        clock: Clock,
        max_entries: int = 10_000,
        refresh_floor: float = 1.0,
        timeout: float = 2.0,
    ) -> None:
        self._jetstream = jetstream
        self.bucket = bucket
        self.ttl = ttl
        self.clock = clock
        self.max_entries = max_entries
        self.refresh_floor = refresh_floor
        self.timeout = timeout
        self._kv: KeyValue | None = None
        self._cache: dict[str, _Cached] = {}
        self._reading: dict[str, asyncio.Future[bytes | None]] = {}

    async def get(self, key: str, *, max_age: float | None = None) -> bytes | None:
        """The value under ``key`` (None when absent or deleted), at most ``max_age``
        (default ``ttl``) seconds old; raises :class:`KvUnavailable`."""
        age_limit = self.ttl if max_age is None else max(max_age, self.refresh_floor)
        cached = self._cache.get(key)
        now = self.clock.monotonic()
        if cached is not None and now - cached.read_at < min(age_limit, self.ttl):
            return cached.value
        # One read per key at a time: a burst of deliveries for a cold key (a gateway just
        # started, a flood for one channel) waits for the same answer.
        pending = self._reading.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._read(key))
            self._reading[key] = pending
            pending.add_done_callback(lambda _: self._reading.pop(key, None))
        value = await asyncio.shield(pending)
        if self.ttl > 0:
            self._remember(key, _Cached(value, now))
        return value

    def _remember(self, key: str, entry: _Cached) -> None:
        self._cache.pop(key, None)
        if len(self._cache) >= self.max_entries:
            # Oldest insertion first: dicts keep order, and a re-read re-inserts.
            del self._cache[next(iter(self._cache))]
        self._cache[key] = entry

    async def _read(self, key: str) -> bytes | None:
        try:
            async with asyncio.timeout(self.timeout):
                if self._kv is None:
                    self._kv = await self._jetstream().key_value(self.bucket)
                entry = await self._kv.get(key)
        except (KeyNotFoundError, InvalidKeyError):
            # Deleted and purged keys are not found too; a key no one could have written
            # (it came from a request header) is simply not registered.
            return None
        except BucketNotFoundError:
            # Not provisioned (yet): nothing is registered, which is an answer, not an outage.
            self._kv = None
            return None
        except Exception as err:
            raise KvUnavailable(f"{self.bucket}: {type(err).__name__}") from err
        return entry.value
