"""Smart-read figures (issue 7), each beside a baseline measured in the same run:

- ``smart_read.cached_p99_ms`` / ``_p50_ms``: ``GET /api/v1/users/{id}/data/whoop/<type>``
  answered from the cache, the whole path as in production (gateway: route table, HS256
  JWT, path model, ``data.query`` over NATS; sync-worker as its own process: the sync log
  and the rows from Postgres), sent open-loop at 1,000 requests/s over 40 users x 4 types.
  The baseline is the gateway's bare ``/healthz`` at the same rate, on the same server, in
  turns with ours (A B B A). Latency counts from the moment a request was due, so a stall
  shows in the tail instead of lowering the rate.
- ``smart_read.provider_calls_vs_fetch_every_read``: WHOOP calls made by smart reads of
  all four types for users who open the app about four times an hour (Poisson), over 12
  simulated hours on a ManualClock and the sandbox's virtual clock, beside the calls the
  very same opens cost when every read fetches from WHOOP (``force_refresh``). Counted by
  the sandbox (``/_sandbox/stats``).

The load generator runs in its own process (see ``bench.loadgen``) so it never shares a
core with the gateway.
"""

from __future__ import annotations

import asyncio
import collections
import multiprocessing
import random
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.test_utils import TestServer
from nats.aio.client import Client as NatsClient
from provider_sandbox.app import SANDBOX_KEY, create_app
from provider_sandbox.config import AppCredentials, SandboxConfig
from sync_worker import queries
from sync_worker.engine import Engine, Sources
from sync_worker.providers.whoop import WhoopClient
from sync_worker.settings import DEFAULT_THRESHOLDS, parse_thresholds
from sync_worker.whoop_source import whoop_sources
from syncplane_common.clock import ManualClock
from syncplane_common.contracts import DataQuery, SyncRequested
from syncplane_common.db import create_pool
from syncplane_common.migrations import migrate
from syncplane_common.tokens import AccessToken
from syncplane_devstack.devjwt import mint_token

from bench.bus import percentile
from bench.gateway_api import SECRET, _gateway
from bench.report import Bench, Figure
from bench.sync import MIGRATIONS, control, sync_stack, worker_running
from bench.tokens import CREDS, consent_and_exchange, embedded_postgres, wait_until

TYPES = ("recovery", "sleep", "cycle", "workout")
SCOPES = "offline read:profile read:recovery read:sleep read:cycles read:workout"
USERS = 40
DAYS = 30
RATE = 1000.0
PHASE_SECONDS = 3.0
WARMUP_SECONDS = 1.0
CONNECTIONS = 64
P99_TARGET_MS = 15.0
# The access pattern of the calls bench.
SIM_USERS = 8
SIM_HOURS = 12
OPENS_PER_HOUR = 4.0
SAVED_TARGET = 0.20  # at most this share of the fetch-every-read calls: >= 80 % fewer

# -- open-loop load ------------------------------------------------------------------------


class _Client(asyncio.Protocol):
    """One keep-alive connection of the load generator: a request written, its response
    framed by Content-Length in ``data_received``. Callbacks instead of a task and a
    StreamReader per request, so the generator costs the two shared cores as little as
    it can (it runs beside the servers it measures)."""

    def __init__(self, load: _Load) -> None:
        self.load = load
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.due = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, raw: bytes, due: float) -> None:
        assert self.transport is not None
        self.due = due
        self.transport.write(raw)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        length = 0
        for line in bytes(self.buffer[:end]).split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if len(self.buffer) < end + 4 + length:
            return
        status = int(self.buffer[9:12])
        del self.buffer[: end + 4 + length]
        self.load.answered(self, status, self.due)

    def connection_lost(self, exc: Exception | None) -> None:
        self.load.lost(exc)


class _Load:
    """Open loop: request i is due at ``started + i / rate`` whether or not earlier ones
    were answered; one waits for a free connection when all are busy, and its latency
    still counts from when it was due, so a stall shows in the tail."""

    def __init__(self, requests: Sequence[bytes], total: int) -> None:
        self.requests, self.total = requests, total
        self.free: list[_Client] = []
        self.backlog: collections.deque[tuple[bytes, float]] = collections.deque()
        self.latencies: list[float] = []
        self.failures = 0
        self.done = asyncio.get_running_loop().create_future()
        self.error: BaseException | None = None

    def submit(self, raw: bytes, due: float) -> None:
        if self.free:
            self.free.pop().send(raw, due)
        else:
            self.backlog.append((raw, due))

    def answered(self, client: _Client, status: int, due: float) -> None:
        self.latencies.append(time.monotonic() - due)
        if status != 200:
            self.failures += 1
        if self.backlog:
            client.send(*self.backlog.popleft())
        else:
            self.free.append(client)
        if len(self.latencies) == self.total and not self.done.done():
            self.done.set_result(None)

    def lost(self, exc: Exception | None) -> None:
        if len(self.latencies) < self.total and not self.done.done():
            self.done.set_exception(ConnectionError(f"load connection lost: {exc}"))


async def _paced(
    host: str, port: int, requests: Sequence[bytes], rate: float, seconds: float
) -> list[float]:
    """Send ``requests`` round-robin at ``rate``/s for ``seconds`` over keep-alive
    connections; each latency counts from the moment the request was due."""
    loop = asyncio.get_running_loop()
    total = int(rate * seconds)
    load = _Load(requests, total)
    clients = []
    for _ in range(CONNECTIONS):
        _, client = await loop.create_connection(lambda: _Client(load), host, port)
        clients.append(client)
    load.free = list(clients)
    started = time.monotonic()
    sent = 0
    while sent < total:
        now = time.monotonic()
        # Everything due by now goes out at once: one wake-up for several requests when
        # the generator itself was held up, never a burst ahead of its time.
        while sent < total and started + sent / rate <= now:
            load.submit(requests[sent % len(requests)], started + sent / rate)
            sent += 1
        if sent < total:
            await asyncio.sleep(started + sent / rate - time.monotonic())
    await load.done
    for client in clients:
        if client.transport is not None:
            client.transport.close()
    if load.failures:
        raise RuntimeError(f"{load.failures} of {total} requests failed")
    return load.latencies


def _phases(
    args: tuple[str, int, list[tuple[str, list[bytes]]], float, float],
) -> dict[str, list[float]]:
    host, port, phases, rate, seconds = args

    async def run() -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for label, requests in phases:
            if label == "warmup":
                await _paced(host, port, requests, rate, WARMUP_SECONDS)
                continue
            out.setdefault(label, []).extend(await _paced(host, port, requests, rate, seconds))
        return out

    return asyncio.run(run())


def _raw(host: str, port: int, path: str, token: str | None = None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# -- 1. cached smart reads -----------------------------------------------------------------


async def connect_whoop(
    nc: NatsClient, http: aiohttp.ClientSession, sandbox_url: str, user_id: str, hint: str
) -> None:
    await consent_and_exchange(
        nc,
        http,
        f"{sandbox_url}/whoop/oauth/oauth2/auth",
        provider="whoop",
        client_id=CREDS.whoop.client_id,
        user_id=user_id,
        hint=hint,
        scopes=tuple(SCOPES.split()),
    )


async def _whoop_members(
    http: aiohttp.ClientSession, sandbox_url: str, users: int, days: int, prefix: str
) -> list[dict[str, Any]]:
    """``users`` sandbox WHOOP members with ``days`` of history each, the sandbox's
    per-app limits lifted first: they are not what these figures measure."""
    await control(
        http,
        sandbox_url,
        "POST",
        "/_sandbox/whoop/config",
        {"rate_limit_per_minute": 10**7, "rate_limit_per_day": 10**8},
    )
    body = {"users": users, "days": days, "login_hint_prefix": prefix}
    seeded = await control(http, sandbox_url, "POST", "/_sandbox/whoop/seed", body)
    members: list[dict[str, Any]] = seeded["users"]
    return members


async def cached_latency() -> list[Figure]:
    async with sync_stack() as (nc, admin_dsn, sandbox_url, logs), aiohttp.ClientSession() as http:
        members = await _whoop_members(http, sandbox_url, USERS, DAYS, "bench-whoop-")
        hints = [u["login_hint"] for u in members]
        users = [f"bench-reader-{i}" for i in range(USERS)]
        extra = {"WHOOP_RATE_LIMIT": "10000000,100000000", "WEATHER_ENABLED": "false"}
        async with worker_running(nc, admin_dsn, sandbox_url, logs, **extra):
            gate = asyncio.Semaphore(8)

            async def one(user: str, hint: str) -> None:
                async with gate:
                    await connect_whoop(nc, http, sandbox_url, user, hint)

            await asyncio.gather(*(one(u, h) for u, h in zip(users, hints, strict=True)))
            await wait_until("backfills", lambda: _synced(admin_dsn, users), within=120)
            nats_url = nc.connected_url.geturl() if nc.connected_url else ""
            async with _gateway(nats_url) as (url, _):
                parts = urlsplit(url)
                host, port = parts.hostname or "127.0.0.1", parts.port or 80
                reads = [
                    _raw(host, port, f"/api/v1/users/{u}/data/whoop/{t}?limit=10", _token(u))
                    for u in users
                    for t in TYPES
                ]
                health = [_raw(host, port, "/healthz")]
                phases = [
                    ("warmup", reads),
                    ("ours", reads),
                    ("bare", health),
                    ("bare", health),
                    ("ours", reads),
                ]
                ctx = multiprocessing.get_context("spawn")
                loop = asyncio.get_running_loop()
                with ctx.Pool(1) as pool:
                    result = await loop.run_in_executor(
                        None,
                        pool.apply,
                        _phases,
                        ((host, port, phases, RATE, PHASE_SECONDS),),
                    )
    ours = [s * 1000 for s in result["ours"]]
    bare = [s * 1000 for s in result["bare"]]
    p99, p50 = percentile(ours, 99), percentile(ours, 50)
    bare99, bare50 = percentile(bare, 99), percentile(bare, 50)
    rate = f"{RATE:,.0f} req/s"
    return [
        Figure(
            name="smart_read.cached_p99_ms",
            value=round(p99, 2),
            unit="ms",
            baseline_name=f"gateway /healthz p99 at the same {rate}",
            baseline_value=round(bare99, 2),
            ratio=round(p99 / bare99, 2),
            target=f"p99 <= {P99_TARGET_MS:.0f} ms at {rate}",
            meets=p99 <= P99_TARGET_MS,
        ),
        Figure.compare(
            "smart_read.cached_p50_ms",
            p50,
            "ms",
            baseline_name=f"gateway /healthz p50 at the same {rate}",
            baseline_value=bare50,
        ),
    ]


def _token(user: str) -> str:
    return mint_token(SECRET, user)


async def _synced(admin_dsn: str, users: list[str]) -> bool:
    import asyncpg

    conn = await asyncpg.connect(admin_dsn)
    try:
        done = await conn.fetchval(
            "SELECT count(*) FROM sync.sync_log WHERE user_id = ANY($1::text[]) "
            "AND status = 'success'",
            users,
        )
    finally:
        await conn.close()
    return bool(done == len(users) * len(TYPES))


# -- 2. provider calls saved ---------------------------------------------------------------


class SandboxTokens:
    """Fresh WHOOP tokens minted by the sandbox's control API whenever the one in hand is
    close to expiry on the sandbox's clock (token-service does this in production)."""

    def __init__(self, http: aiohttp.ClientSession, sandbox_url: str, clock: ManualClock):
        self.http, self.sandbox_url, self.clock = http, sandbox_url, clock
        self.accounts: dict[str, str] = {}
        self.held: dict[str, tuple[str, datetime]] = {}

    async def get(
        self, user_id: str, provider: str, *, rejected_fingerprint: str | None = None
    ) -> AccessToken:
        held = self.held.get(user_id)
        now = self.clock.now()
        if held is None or rejected_fingerprint or (now - held[1]).total_seconds() > 1800:
            account = self.accounts[user_id]
            minted = await control(
                self.http, self.sandbox_url, "POST", f"/_sandbox/whoop/users/{account}/tokens"
            )
            held = (minted["access_token"], now)
            self.held[user_id] = held
        return AccessToken(held[0], self.accounts[user_id])


async def _nothing(subject: str, message: Any, msg_id: str) -> None:
    return None


@asynccontextmanager
async def _sandbox() -> AsyncIterator[tuple[Any, str]]:
    config = SandboxConfig(strava=AppCredentials("1", "s"), whoop=AppCredentials("w", "s"), seed=7)
    app = create_app(config)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield app[SANDBOX_KEY], str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def _opens(rng: random.Random, users: Sequence[str]) -> list[tuple[float, str]]:
    """Each user's app opens over the simulated hours, a Poisson process per user."""
    opens: list[tuple[float, str]] = []
    for user in users:
        at = rng.expovariate(OPENS_PER_HOUR / 3600)
        while at < SIM_HOURS * 3600:
            opens.append((at, user))
            at += rng.expovariate(OPENS_PER_HOUR / 3600)
    return sorted(opens)


async def _calls(http: aiohttp.ClientSession, sandbox_url: str) -> int:
    stats = await control(http, sandbox_url, "GET", "/_sandbox/stats")
    return sum(n for key, n in stats["calls"].items() if key.startswith("whoop GET /v2/"))


async def calls_saved() -> list[Figure]:
    async with (
        embedded_postgres() as admin_dsn,
        _sandbox() as (box, sandbox_url),
        aiohttp.ClientSession() as http,
    ):
        await migrate(admin_dsn, "sync-worker", MIGRATIONS)
        pool = await create_pool(admin_dsn, "sync", min_size=1, max_size=10)
        members = await _whoop_members(http, sandbox_url, SIM_USERS, 14, "sim-")
        clock = ManualClock(datetime.fromtimestamp(box.clock.time(), UTC))
        tokens = SandboxTokens(http, sandbox_url, clock)
        users = []
        for entry in members:
            user = f"sim-user-{entry['user_id']}"
            tokens.accounts[user] = str(entry["user_id"])
            users.append(user)
        client = WhoopClient(http, f"{sandbox_url}/whoop/developer", clock)
        engine = Engine(
            pool=pool,
            tokens=tokens,
            publish=_nothing,
            clock=clock,
            sources=Sources(whoop_sources(client)),
        )
        freshness = queries.Freshness(parse_thresholds(DEFAULT_THRESHOLDS))
        flights = queries.Flights()
        answered = queries.Answered()
        try:
            for user in users:
                await engine.run(
                    SyncRequested(
                        request_id=f"sim-backfill-{user}",
                        user_id=user,
                        provider="whoop",
                        kind="backfill",
                        requested_at=clock.now(),
                    )
                )
            rng = random.Random(42)
            opens = _opens(rng, users)

            async def walk(force: bool) -> int:
                before = await _calls(http, sandbox_url)
                origin = clock.now()
                for at, user in opens:
                    ahead = (origin - clock.now()).total_seconds() + at
                    if ahead > 0:
                        clock.advance(ahead)
                        box.clock.advance(ahead)
                    for data_type in TYPES:
                        ask = DataQuery(
                            user_id=user,
                            provider="whoop",
                            data_type=data_type,
                            limit=10,
                            force_refresh=force,
                        )
                        await queries.data_json(engine, ask, freshness, flights, answered)
                rest = (origin - clock.now()).total_seconds() + SIM_HOURS * 3600
                clock.advance(rest)
                box.clock.advance(rest)
                return await _calls(http, sandbox_url) - before

            smart = await walk(force=False)
            every = await walk(force=True)
        finally:
            await pool.close()
    opened = len(opens)
    return [
        Figure.compare(
            "smart_read.provider_calls_vs_fetch_every_read",
            smart,
            "calls",
            baseline_name=f"fetch on every read ({opened} opens x 4 types, {SIM_USERS} users,"
            f" {SIM_HOURS} h, ~{OPENS_PER_HOUR:.0f} opens/h)",
            baseline_value=every,
            at_most=SAVED_TARGET,
        )
    ]


BENCHES = (
    Bench("smart_read.cached_latency", cached_latency, timeout=240),
    Bench("smart_read.provider_calls", calls_saved, timeout=240),
)
