"""Bus figures: syncplane's publish and consume paths beside raw nats-py on the same server.

Each bench starts its own embedded nats-server in a temp dir, so no other traffic shares
it and nothing carries over from another bench. Ours and raw take turns in A B B A
rounds, so drift on a noisy machine falls on both sides alike.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import nats
from faststream import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, StreamConfig
from syncplane_common import bus, subjects
from syncplane_common.acks import ErrorPolicy
from syncplane_common.contracts import SyncRequested
from syncplane_common.dlq import MSG_ID
from syncplane_common.provision import provision_js
from syncplane_devstack.embedded import EmbeddedNats

from bench.report import Bench, Figure

T = TypeVar("T")
Send = Callable[[], Awaitable[None]]
Samples = list[float]

CONCURRENCY = 32
PUBLISH_COUNT = 20_000
CONSUME_COUNT = 20_000
PUBLISH_ROUNDS = 8
CONSUME_ROUNDS = 4
WARMUP = 500
# bus.durable_subscriber's default, i.e. what every service consumes with.
BATCH = 10
# A pull request outlives the subscriber that made it by up to this long; the next
# round waits it out so no message is delivered to a subscriber that is gone.
PULL_EXPIRES = 0.25
PACE_RATE = 500.0
PACE_SECONDS = 4.0

SUBJECT = subjects.sync_requested("strava")
CONSUME_STREAM = "BENCH_CONSUME"
CONSUME_SUBJECT = "bench.consume.sync"
OURS_DURABLE = "bench-ours"
RAW_DURABLE = "bench-raw"


# -- harness -------------------------------------------------------------------------------


@asynccontextmanager
async def embedded_nats() -> AsyncIterator[str]:
    workdir = Path(tempfile.mkdtemp(prefix="syncplane-bench-"))
    server = EmbeddedNats(workdir)
    try:
        await asyncio.to_thread(server.start)
        yield server.url
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(workdir, ignore_errors=True)


def _broker(url: str) -> NatsBroker:
    # FastStream's access log writes two lines per message to stdout; off here so the
    # figures measure the bus path, not the terminal (README: what is not measured).
    return NatsBroker(url, logger=None)


@asynccontextmanager
async def clients(url: str) -> AsyncIterator[tuple[JetStreamContext, NatsBroker]]:
    """A raw nats-py JetStream context and a FastStream broker, on separate connections."""
    nc = await nats.connect(url)
    broker = _broker(url)
    try:
        await broker.connect()
        yield nc.jetstream(), broker
    finally:
        await broker.stop()
        await nc.drain()


def request() -> SyncRequested:
    return SyncRequested(
        request_id="bench",
        user_id="bench-user",
        provider="strava",
        kind="incremental",
        data_types=("activities",),
        requested_at=datetime.now(UTC),
    )


def ours_publisher(broker: NatsBroker, message: SyncRequested) -> Send:
    ids = itertools.count()

    async def send() -> None:
        await bus.publish(broker, SUBJECT, message, msg_id=f"ours-{next(ids)}")

    return send


def raw_publisher(js: JetStreamContext, message: SyncRequested, subject: str = SUBJECT) -> Send:
    ids = itertools.count()

    async def send() -> None:
        # Serialising here too: a service without FastStream still has to encode the
        # contract, so the ratio isolates FastStream's publish path.
        await js.publish(subject, message.to_bytes(), headers={MSG_ID: f"raw-{next(ids)}"})

    return send


async def burst(send: Send, count: int, concurrency: int = CONCURRENCY) -> float:
    """Seconds for ``concurrency`` tasks to send ``count`` messages, each awaiting its ack."""
    remaining = iter(range(count))

    async def worker() -> None:
        for _ in remaining:
            await send()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def alternate(
    ours: Callable[[], Awaitable[T]],
    raw: Callable[[], Awaitable[T]],
    rounds: int,
    before_round: Callable[[], Awaitable[object]] | None = None,
) -> tuple[list[T], list[T]]:
    """Run both sides ``rounds`` times in A B B A order; results per side, in run order."""
    results: tuple[list[T], list[T]] = ([], [])
    for index in range(rounds):
        if before_round is not None:
            await before_round()
        turns = [(raw, results[1]), (ours, results[0])]
        for side, out in turns if index % 2 == 0 else reversed(turns):
            out.append(await side())
    return results


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: always one of the samples, never an interpolation."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    return ordered[max(math.ceil(q / 100 * len(ordered)), 1) - 1]


# -- 1. durable publish throughput ---------------------------------------------------------


async def publish_durable_rate() -> list[Figure]:
    async with embedded_nats() as url, clients(url) as (js, broker):
        await provision_js(js)
        message = request()
        ours, raw = ours_publisher(broker, message), raw_publisher(js, message)
        await burst(raw, WARMUP)
        await burst(ours, WARMUP)
        per_round = PUBLISH_COUNT // PUBLISH_ROUNDS
        ours_s, raw_s = await alternate(
            lambda: burst(ours, per_round), lambda: burst(raw, per_round), PUBLISH_ROUNDS
        )
    count = per_round * PUBLISH_ROUNDS
    return [
        Figure.compare(
            "bus.publish_durable_rate",
            count / sum(ours_s),
            "msg/s",
            baseline_name="raw nats-py js.publish",
            baseline_value=count / sum(raw_s),
            at_least=0.6,
        )
    ]


# -- 2. consume through FastStream + ErrorPolicy -------------------------------------------


async def _setup_consume_stream(js: JetStreamContext) -> None:
    await js.add_stream(StreamConfig(name=CONSUME_STREAM, subjects=["bench.consume.>"]))
    for durable in (OURS_DURABLE, RAW_DURABLE):
        await js.add_consumer(
            CONSUME_STREAM,
            ConsumerConfig(durable_name=durable, name=durable, ack_wait=60.0, max_deliver=5),
        )


async def _last_seq(js: JetStreamContext) -> int:
    return (await js.stream_info(CONSUME_STREAM)).state.last_seq


async def _acked_through(js: JetStreamContext, durable: str, seq: int) -> None:
    # Both sides are timed to the same event, the server's ack floor, since an ack is a
    # fire-and-forget publish and "handler returned" would stop the clock early.
    while True:
        info = await js.consumer_info(CONSUME_STREAM, durable)
        if info.ack_floor.stream_seq >= seq:
            return
        await asyncio.sleep(0.01)


async def consume_ours(url: str, js: JetStreamContext) -> float:
    broker = _broker(url)
    broker.add_middleware(ErrorPolicy(lambda: broker.connection.jetstream()))

    @broker.subscriber(
        "bench.consume.>",
        stream=JStream(CONSUME_STREAM, declare=False),
        durable=OURS_DURABLE,
        pull_sub=PullSub(batch_size=BATCH, timeout=PULL_EXPIRES),
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def handle(_: SyncRequested) -> None:
        return None

    last = await _last_seq(js)
    await broker.connect()
    try:
        started = time.perf_counter()
        await broker.start()
        await _acked_through(js, OURS_DURABLE, last)
        return time.perf_counter() - started
    finally:
        await broker.stop()
        await asyncio.sleep(PULL_EXPIRES * 2)


async def consume_raw(js: JetStreamContext) -> float:
    last = await _last_seq(js)
    started = time.perf_counter()
    sub = await js.pull_subscribe("bench.consume.>", durable=RAW_DURABLE, stream=CONSUME_STREAM)

    async def loop() -> None:
        while True:
            with suppress(NatsTimeoutError):
                for msg in await sub.fetch(BATCH, timeout=PULL_EXPIRES):
                    # Parsed like FastStream parses for a typed handler: same work per message.
                    SyncRequested.model_validate_json(msg.data)
                    await msg.ack()

    task = asyncio.create_task(loop())
    try:
        await _acked_through(js, RAW_DURABLE, last)
        return time.perf_counter() - started
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await sub.unsubscribe()
        await asyncio.sleep(PULL_EXPIRES * 2)


async def consume_with_error_policy_rate() -> list[Figure]:
    async with embedded_nats() as url, clients(url) as (js, _):
        await _setup_consume_stream(js)
        fill = raw_publisher(js, request(), CONSUME_SUBJECT)
        per_round = CONSUME_COUNT // CONSUME_ROUNDS
        ours_s, raw_s = await alternate(
            lambda: consume_ours(url, js),
            lambda: consume_raw(js),
            CONSUME_ROUNDS,
            before_round=lambda: burst(fill, per_round),
        )
    count = per_round * CONSUME_ROUNDS
    return [
        Figure.compare(
            "bus.consume_with_error_policy_rate",
            count / sum(ours_s),
            "msg/s",
            baseline_name="raw nats-py fetch + ack",
            baseline_value=count / sum(raw_s),
            at_least=0.5,
        )
    ]


# -- 3. single publish latency at a steady pace --------------------------------------------


async def paced(ours: Send, raw: Send, rate: float, seconds: float) -> tuple[Samples, Samples]:
    """Latencies (ms) of sends started on a fixed schedule, ``rate`` per second per side.

    Open loop: a slow send does not push the next one back, so a stall shows in the tail
    instead of quietly lowering the rate. The two sides take turns message by message
    (A B B A), so a burst of load from elsewhere on the machine hits both alike; taking
    turns by the second let one such burst decide the p99 ratio.
    """
    samples: tuple[Samples, Samples] = ([], [])

    async def timed(send: Send, into: Samples) -> None:
        started = time.perf_counter()
        await send()
        into.append((time.perf_counter() - started) * 1000)

    tasks: list[asyncio.Task[None]] = []
    period = 1 / (2 * rate)
    start = time.perf_counter()
    for index in range(2 * int(rate * seconds)):
        delay = start + index * period - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        side = (index + index // 2) % 2
        tasks.append(asyncio.create_task(timed((ours, raw)[side], samples[side])))
    await asyncio.gather(*tasks)
    return samples


async def publish_latency() -> list[Figure]:
    async with embedded_nats() as url, clients(url) as (js, broker):
        await provision_js(js)
        message = request()
        ours, raw = ours_publisher(broker, message), raw_publisher(js, message)
        await paced(ours, raw, PACE_RATE, 0.2)
        ours_ms, raw_ms = await paced(ours, raw, PACE_RATE, PACE_SECONDS)
    return [
        Figure.compare(
            "bus.publish_p99_ms",
            percentile(ours_ms, 99),
            "ms",
            baseline_name="raw js.publish p99",
            baseline_value=percentile(raw_ms, 99),
            at_most=3.0,
        ),
        Figure.compare(
            "bus.publish_p50_ms",
            percentile(ours_ms, 50),
            "ms",
            baseline_name="raw js.publish p50",
            baseline_value=percentile(raw_ms, 50),
        ),
    ]


BENCHES: tuple[Bench, ...] = (
    Bench("bus.publish_durable_rate", publish_durable_rate),
    Bench("bus.consume_with_error_policy_rate", consume_with_error_policy_rate),
    Bench("bus.publish_latency", publish_latency),
)
