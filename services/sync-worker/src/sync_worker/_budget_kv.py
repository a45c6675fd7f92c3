"""The counter store shared by every sync-worker replica: the NATS KV bucket
``rate_budgets`` (subjects.BUCKETS; TTL 2 days, so finished windows expire by themselves).

One key per slot, ``<provider>.<window>.<window start, epoch s>`` (e.g.
``strava.read_15min.1767225600``), holding ``{"reserved", "background", "limit"}`` as
JSON. Writes are compare-and-set on the key's revision: ``create`` for a new window,
``update(last=revision)`` after; a wrong-last-sequence answer means another replica wrote
first, and the engine reads again.

Why KV rather than Postgres: the bucket exists already, a compare-and-set is one
JetStream round trip with no connection from the pool held, and every window is a fresh
key that the bucket's TTL removes, so nothing needs cleaning up. A budget is a few
hundred small counters per day; it needs atomicity per counter, not transactions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from syncplane_common import subjects
from syncplane_common.clock import Clock
from syncplane_common.errors import RetryableError

from sync_worker._budget_engine import DEFAULT_CLOCK_SKEW, CountingBudget
from sync_worker._budget_policy import Counts, Slot, Window

__all__ = ["BUCKET", "KvCounterStore", "KvRateBudget", "slot_key"]


def _bucket(name: str) -> str:
    if name not in {bucket.name for bucket in subjects.BUCKETS}:
        raise LookupError(f"no KV bucket {name!r} in subjects.BUCKETS")
    return name


BUCKET = _bucket("rate_budgets")


def slot_key(slot: Slot) -> str:
    return f"{slot.provider}.{slot.window}.{slot.start}"


def _encode(counts: Counts) -> bytes:
    return json.dumps(
        {"reserved": counts.reserved, "background": counts.background, "limit": counts.limit},
        separators=(",", ":"),
    ).encode()


def _decode(raw: bytes | None) -> Counts | None:
    try:
        data = json.loads(raw or b"")
        counts = Counts(int(data["reserved"]), int(data["background"]), int(data["limit"]))
    except (ValueError, TypeError, KeyError):
        return None
    return counts if min(counts.reserved, counts.background, counts.limit) >= 0 else None


class KvCounterStore:
    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def read(self, slot: Slot) -> tuple[Counts | None, int | None]:
        try:
            entry = await self._kv.get(slot_key(slot))
        except KeyNotFoundError:
            return None, None
        except (nats.errors.Error, TimeoutError) as err:
            raise RetryableError(f"rate budget unreadable: {err!r}", retry_after=1.0) from err
        # An unreadable value is overwritten at its revision (counting restarts) rather
        # than blocking the provider's work until the window ends.
        return _decode(entry.value), entry.revision

    async def write(self, slot: Slot, counts: Counts, revision: int | None) -> bool:
        key, value = slot_key(slot), _encode(counts)
        try:
            if revision is None:
                await self._kv.create(key, value)
            else:
                await self._kv.update(key, value, last=revision)
        except KeyWrongLastSequenceError:
            return False
        except (nats.errors.Error, TimeoutError) as err:
            raise RetryableError(f"rate budget unwritable: {err!r}", retry_after=1.0) from err
        return True


class KvRateBudget(CountingBudget):
    """The budget every replica shares through the ``rate_budgets`` bucket."""

    def __init__(
        self,
        js_kv: KeyValue,
        limits: Mapping[str, Sequence[Window]],
        clock: Clock,
        background_share: float = 0.8,
        *,
        clock_skew: float = DEFAULT_CLOCK_SKEW,
    ) -> None:
        super().__init__(
            KvCounterStore(js_kv), limits, clock, background_share, clock_skew=clock_skew
        )

    @classmethod
    async def bind(
        cls,
        js: JetStreamContext,
        limits: Mapping[str, Sequence[Window]],
        clock: Clock,
        background_share: float = 0.8,
        *,
        clock_skew: float = DEFAULT_CLOCK_SKEW,
    ) -> KvRateBudget:
        """Bind to the provisioned bucket (services never create it; ``syncplane provision``
        does)."""
        try:
            kv = await js.key_value(BUCKET)
        except (nats.errors.Error, TimeoutError) as err:
            raise RetryableError(f"KV bucket {BUCKET} unavailable: {err!r}") from err
        return cls(kv, limits, clock, background_share, clock_skew=clock_skew)
