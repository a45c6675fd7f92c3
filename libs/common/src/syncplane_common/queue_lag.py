"""Queue lag on /metrics (ARCHITECTURE §7): for each durable consumer a service binds to,
what JetStream holds for it, read from the consumer's info at scrape time.

Read at scrape rather than kept up to date: the server already counts, and a scrape
every few seconds is all the freshness an operator or an autoscaler needs. A consumer
whose info cannot be read right now has no sample (rather than a stale one), so an
alert sees "unknown" instead of an old "fine".
"""

from __future__ import annotations

import asyncio
import contextlib

from nats.js import JetStreamContext
from prometheus_client import Gauge

from syncplane_common import subjects

__all__ = ["CONSUMER_ACK_PENDING", "CONSUMER_PENDING", "observe"]

CONSUMER_PENDING = Gauge(
    "syncplane_consumer_pending_messages",
    "Messages on the stream that the durable consumer has not been handed yet (queue lag)",
    ["consumer"],
)
CONSUMER_ACK_PENDING = Gauge(
    "syncplane_consumer_ack_pending_messages",
    "Messages handed to the durable consumer and not acknowledged yet (in flight)",
    ["consumer"],
)
CONSUMER_REDELIVERED = Gauge(
    "syncplane_consumer_redelivered_messages",
    "Messages in flight on the durable consumer that were delivered more than once",
    ["consumer"],
)
_GAUGES = (CONSUMER_PENDING, CONSUMER_ACK_PENDING, CONSUMER_REDELIVERED)


# A scrape must answer even while NATS is slow: Prometheus times out at 10 s by default.
INFO_TIMEOUT = 1.0


async def observe(js: JetStreamContext, durables: tuple[str, ...]) -> None:
    """Refresh the gauges of ``durables`` (each a name in :data:`subjects.CONSUMERS`)."""
    await asyncio.gather(*(_one(js, durable) for durable in durables))


async def _one(js: JetStreamContext, durable: str) -> None:
    stream = subjects.consumer(durable).stream
    try:
        info = await js.consumer_info(stream, durable, timeout=INFO_TIMEOUT)
    except Exception:
        for gauge in _GAUGES:
            with contextlib.suppress(KeyError):
                gauge.remove(durable)
        return
    CONSUMER_PENDING.labels(durable).set(info.num_pending or 0)
    CONSUMER_ACK_PENDING.labels(durable).set(info.num_ack_pending or 0)
    CONSUMER_REDELIVERED.labels(durable).set(info.num_redelivered or 0)
