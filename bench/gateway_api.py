"""App API figures: the gateway's authenticated request path and its progress stream, each
beside the same work done without the gateway's layers, in the same run.

- ``gateway_api.read_rate``: req/s of ``GET /api/v1/users/{id}/connections`` through the
  whole gateway app (route table, HS256 JWT check, path model, ``rpc.request`` to a
  responder answering two connections, typed JSON answer), 32 concurrent clients. The
  baseline is a bare aiohttp handler doing the same ``rpc.request`` and answering the
  reply's JSON, without auth or validation. Ours and bare take turns, A B B A twice.
- ``gateway_api.sse_p99_ms``: p99 from ``bus.publish`` of a ``SyncProgress`` to its frame
  reaching an SSE client, with 100 users' streams open and events for random users sent
  open-loop at 200/s. The baseline is a raw nats-py ordered consumer on the same subjects
  receiving the very same events (no HTTP hop, no per-user fan-out).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import aiohttp
from aiohttp import web
from aiohttp.test_utils import unused_port
from faststream.nats import NatsBroker
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy
from syncplane_common import bus, rpc, subjects
from syncplane_common.contracts import (
    ConnectionsList,
    ConnectionsListReply,
    ConnectionView,
    SyncProgress,
)
from syncplane_common.provision import provision
from syncplane_devstack.devjwt import mint_token
from webhook_gateway._api_events import EVENTS_OPTIONS, EventsOptions
from webhook_gateway.app import build
from webhook_gateway.settings import GatewaySettings

from bench.bus import embedded_nats, percentile
from bench.report import Bench, Figure

SECRET = "bench-jwt-secret-0123456789abcdef0123456789"
CONCURRENCY = 32
ROUND_SECONDS = 1.5
ROUNDS = 2  # of A B B A
WARMUP_SECONDS = 0.5
STREAMS = 100
EVENT_RATE = 200.0
EVENT_SECONDS = 4.0

# -- harness -------------------------------------------------------------------------------


@asynccontextmanager
async def _site(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = unused_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def _gateway(nats_url: str) -> AsyncIterator[tuple[str, web.Application]]:
    settings = GatewaySettings(
        nats_url=nats_url,
        api_jwt_secret=SECRET,
        oauth_state_secret="bench-state-secret-0123456789abcdef",
        log_level="WARNING",
    )
    runtime = build(settings)
    runtime.http[EVENTS_OPTIONS] = EventsOptions(heartbeat_seconds=15.0)
    await runtime.broker.start()
    gc.freeze()  # as ServiceRuntime.serve does once a service has started
    try:
        async with _site(runtime.http) as url:
            yield url, runtime.http
    finally:
        await runtime.broker.stop()


@asynccontextmanager
async def _token_service(nats_url: str) -> AsyncIterator[None]:
    broker = NatsBroker(nats_url, logger=None)
    now = datetime.now(UTC)
    views = tuple(
        ConnectionView(
            provider=p,
            status="active",
            provider_account_id="1234567",
            scopes=("read", "activity:read_all"),
            connected_at=now,
            updated_at=now,
        )
        for p in ("strava", "whoop")
    )

    @rpc.responder(
        broker, subjects.CONNECTIONS_LIST, ConnectionsList, ConnectionsListReply, queue="ts"
    )
    async def answer(_: ConnectionsList) -> ConnectionsListReply:
        return ConnectionsListReply(connections=views)

    await broker.start()
    await rpc.start_responders(broker)
    try:
        yield
    finally:
        await broker.stop()


@asynccontextmanager
async def _bare(nats_url: str) -> AsyncIterator[str]:
    broker = NatsBroker(nats_url, logger=None)
    await broker.start()

    async def handler(request: web.Request) -> web.Response:
        ask = ConnectionsList(user_id=request.match_info["user_id"])
        reply = await rpc.request(broker, subjects.CONNECTIONS_LIST, ask, ConnectionsListReply)
        return web.json_response(
            {"connections": [c.model_dump(mode="json") for c in reply.connections]}
        )

    app = web.Application()
    app.router.add_get("/api/v1/users/{user_id}/connections", handler)
    try:
        async with _site(app) as url:
            yield url
    finally:
        await broker.stop()


# -- read rate -------------------------------------------------------------------------------


async def _rate(http: aiohttp.ClientSession, base: str, seconds: float) -> float:
    done = 0
    deadline = time.monotonic() + seconds

    async def worker(n: int) -> None:
        nonlocal done
        user = f"user-{n}"
        headers = {"Authorization": f"Bearer {mint_token(SECRET, user)}"}
        url = f"{base}/api/v1/users/{user}/connections"
        while time.monotonic() < deadline:
            async with http.get(url, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{url} answered {resp.status}")
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(worker(n) for n in range(CONCURRENCY)))
    return done / (time.monotonic() - started)


async def read_rate() -> list[Figure]:
    async with (
        embedded_nats() as url,
        _token_service(url),
        _gateway(url) as (ours, _),
        _bare(url) as bare,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY * 2)) as http,
    ):
        await _rate(http, ours, WARMUP_SECONDS)
        await _rate(http, bare, WARMUP_SECONDS)
        rates: dict[str, list[float]] = {ours: [], bare: []}
        for base in (ours, bare, bare, ours) * ROUNDS:
            rates[base].append(await _rate(http, base, ROUND_SECONDS))
    value, baseline = (sum(rates[b]) / len(rates[b]) for b in (ours, bare))
    return [
        Figure.compare(
            "gateway_api.read_rate",
            round(value),
            "req/s",
            baseline_name="bare aiohttp handler, same rpc.request",
            baseline_value=round(baseline),
            at_least=0.5,
        )
    ]


# -- progress stream latency -----------------------------------------------------------------


class Arrivals:
    """Latencies per side, and events that fire when every stream is open and when both
    sides have seen every event."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.sent: dict[str, float] = {}
        self.ours: list[float] = []
        self.raw: list[float] = []
        self.open_streams = 0
        self.all_open = asyncio.Event()
        self.all_seen = asyncio.Event()

    def opened(self) -> None:
        self.open_streams += 1
        if self.open_streams == STREAMS:
            self.all_open.set()

    def arrived(self, side: list[float], session: str) -> None:
        side.append((time.perf_counter() - self.sent[session]) * 1000)
        if len(self.ours) >= self.expected and len(self.raw) >= self.expected:
            self.all_seen.set()


async def _sse_reader(
    http: aiohttp.ClientSession, base: str, user: str, arrivals: Arrivals
) -> None:
    url = f"{base}/api/v1/users/{user}/sync/events"
    headers = {"Authorization": f"Bearer {mint_token(SECRET, user)}"}
    async with http.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=None)) as resp:
        async for line in resp.content:
            if line.startswith(b": connected"):
                arrivals.opened()
            elif line.startswith(b"data: "):
                session = SyncProgress.model_validate_json(line[6:]).session_id
                arrivals.arrived(arrivals.ours, session)


async def sse_latency() -> list[Figure]:
    count = int(EVENT_RATE * EVENT_SECONDS)
    arrivals = Arrivals(count)
    async with embedded_nats() as url:
        await provision(url)
        async with (
            _gateway(url) as (base, _),
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=STREAMS + 10)) as http,
        ):
            readers = [
                asyncio.create_task(_sse_reader(http, base, f"user-{n}", arrivals))
                for n in range(STREAMS)
            ]
            await asyncio.wait_for(arrivals.all_open.wait(), 10)
            publisher = NatsBroker(url, logger=None)
            await publisher.start()

            async def on_raw(msg: Msg) -> None:
                session = SyncProgress.model_validate_json(msg.data).session_id
                arrivals.arrived(arrivals.raw, session)

            sub = await publisher.connection.jetstream().subscribe(
                "sync.>",
                stream=subjects.EVENTS.name,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.NEW,
                cb=on_raw,
            )
            rng = random.Random(7)
            try:
                start = time.perf_counter()
                pending = []
                for i in range(count):
                    await asyncio.sleep(max(0.0, start + i / EVENT_RATE - time.perf_counter()))
                    user = f"user-{rng.randrange(STREAMS)}"
                    pending.append(asyncio.create_task(_publish(publisher, user, i, arrivals)))
                await asyncio.gather(*pending)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(arrivals.all_seen.wait(), 5)
            finally:
                await sub.unsubscribe()
                await publisher.stop()
                for task in readers:
                    task.cancel()
                for task in readers:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
    ours, raw = arrivals.ours, arrivals.raw
    if len(ours) < count or len(raw) < count:
        raise RuntimeError(f"lost events: sse {len(ours)}, raw {len(raw)} of {count}")
    p99, raw_p99 = percentile(ours, 99), percentile(raw, 99)
    return [
        Figure.compare(
            "gateway_api.sse_p99_ms",
            round(p99, 2),
            "ms",
            baseline_name=f"raw ordered consumer p99, same events ({STREAMS} streams open)",
            baseline_value=round(raw_p99, 2),
            at_most=3.0,
        ),
        Figure.compare(
            "gateway_api.sse_p50_ms",
            round(percentile(ours, 50), 2),
            "ms",
            baseline_name="raw ordered consumer p50",
            baseline_value=round(percentile(raw, 50), 2),
        ),
    ]


async def _publish(broker: NatsBroker, user: str, i: int, arrivals: Arrivals) -> None:
    session = f"s-{i}"
    event = SyncProgress(
        session_id=session,
        user_id=user,
        provider="strava",
        phase="FETCHING",
        fetched=i,
        at=datetime.now(UTC),
    )
    arrivals.sent[session] = time.perf_counter()
    await bus.publish(broker, subjects.sync_event("progress", "strava"), event, msg_id=session)


BENCHES = (
    Bench("gateway_api.read_rate", read_rate),
    Bench("gateway_api.sse_latency", sse_latency),
)
