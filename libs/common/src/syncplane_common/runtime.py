"""The process shell every service runs in: broker, pool, health/metrics HTTP, shutdown.

A service's ``app.py`` (its composition root) builds a :class:`ServiceRuntime`, registers
its subscribers and routes on it, and ``python -m <package>`` calls :func:`run`.
``/healthz`` says the process is alive; ``/readyz`` says NATS and Postgres are reachable
right now, so it turns red while either is down and green again when it returns,
without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
from aiohttp import web
from faststream.nats import NatsBroker
from nats.js import JetStreamContext
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest

from syncplane_common import db, queue_lag, rpc, subjects
from syncplane_common.acks import ErrorPolicy
from syncplane_common.dlq import watch_exhausted
from syncplane_common.logs import setup_logging
from syncplane_common.settings import DatabaseSettings, ServiceSettings
from syncplane_common.telemetry import nats_telemetry_middleware, setup_telemetry

log = logging.getLogger(__name__)

READY = Gauge("syncplane_ready", "1 when the dependency is reachable", ["dependency"])
POOL_IN_USE = Gauge("syncplane_db_pool_in_use", "Postgres connections checked out of the pool")
POOL_MAX = Gauge("syncplane_db_pool_max", "Postgres pool size limit")
UP_SINCE = Gauge("syncplane_process_start_time_seconds", "Unix time the service started")

Hook = Callable[["ServiceRuntime"], Awaitable[None]]


@dataclass
class ServiceRuntime:
    service: str
    settings: ServiceSettings
    schema: str | None
    broker: NatsBroker = field(init=False)
    http: web.Application = field(init=False)
    pool: asyncpg.Pool | None = field(default=None, init=False)
    on_start: list[Hook] = field(default_factory=list)
    on_stop: list[Hook] = field(default_factory=list)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event, init=False)

    def __post_init__(self) -> None:
        setup_logging(self.service, self.settings.log_level)
        provider = setup_telemetry(
            self.service, self.settings.otel_exporter, self.settings.otel_exporter_otlp_endpoint
        )
        self.error_policy = ErrorPolicy(
            self.jetstream,
            default_max_deliver=self.settings.max_deliver,
            backoff_base=self.settings.retry_backoff_base,
            backoff_max=self.settings.retry_backoff_max,
        )
        self.broker = NatsBroker(
            [u.strip() for u in self.settings.nats_url.split(",") if u.strip()],
            name=self.service,
            inbox_prefix=subjects.inbox_prefix(self.service),
            # Never give up reconnecting: readiness reports the outage instead.
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            connect_timeout=2,
            graceful_timeout=self.settings.broker_graceful_timeout,
            # FastStream's per-message access lines go through our JSON logs, at DEBUG:
            # at INFO they would double the log volume of every consumer.
            logger=logging.getLogger(f"{self.service}.broker"),
            log_level=logging.DEBUG,
            middlewares=[nats_telemetry_middleware(provider), self.error_policy],
        )
        self.http = web.Application()
        self.http.router.add_get("/healthz", self._healthz)
        self.http.router.add_get("/readyz", self._readyz)
        self.http.router.add_get("/metrics", self._metrics)

    def jetstream(self) -> JetStreamContext:
        return self.broker.connection.jetstream()

    @property
    def db(self) -> asyncpg.Pool:
        if self.pool is None:
            raise RuntimeError(f"{self.service} has no database")
        return self.pool

    # -- health ------------------------------------------------------------------------

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "service": self.service})

    async def readiness(self) -> dict[str, bool]:
        checks = {"nats": await self._nats_ready()}
        if self.schema is not None:
            checks["postgres"] = self.pool is not None and await db.check(self.pool)
        for name, ok in checks.items():
            READY.labels(name).set(1 if ok else 0)
        return checks

    async def _nats_ready(self) -> bool:
        try:
            return self.broker.connection.is_connected
        except Exception:
            return False  # not connected yet

    async def _readyz(self, _: web.Request) -> web.Response:
        checks = await self.readiness()
        ready = all(checks.values())
        return web.json_response(
            {"status": "ready" if ready else "unavailable", "checks": checks},
            status=200 if ready else 503,
        )

    async def _metrics(self, _: web.Request) -> web.Response:
        checks = await self.readiness()
        durables = _consumed(self.service)
        if durables and checks["nats"]:
            await queue_lag.observe(self.jetstream(), durables)
        if self.pool is not None:
            POOL_IN_USE.set(self.pool.get_size() - self.pool.get_idle_size())
            POOL_MAX.set(self.pool.get_max_size())
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    # -- lifecycle ---------------------------------------------------------------------

    async def _retry_until_stopped(self, what: str, attempt: Callable[[], Awaitable[None]]) -> bool:
        delay = 0.2
        while not self._stopping.is_set():
            try:
                return await self._unless_stopped(attempt())
            except Exception as err:
                log.warning("%s not reachable yet: %s", what, err)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(delay * 2, 5.0)
        return False

    async def _unless_stopped(self, work: Awaitable[None]) -> bool:
        """Run ``work`` unless SIGTERM comes first: a connect to an unreachable NATS can
        wait a long time, and an orchestrator's stop must not wait for it."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self._stopping.wait())
        done, _ = await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            stop.cancel()
            task.result()
            return True
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return False

    async def _connect_pool(self) -> None:
        assert self.schema is not None
        if not isinstance(self.settings, DatabaseSettings):
            raise TypeError(f"{self.service} owns schema {self.schema} but has no DATABASE_URL")
        self.pool = await db.create_pool(
            self.settings.database_url,
            self.schema,
            min_size=self.settings.db_pool_min_size,
            max_size=self.settings.db_pool_max_size,
        )

    async def _watch_exhausted(self) -> None:
        with contextlib.suppress(LookupError):
            durables = subjects.service_channels(self.service).consumes
            await watch_exhausted(
                self.broker.connection, self.jetstream(), durables, f"{self.service}-advisories"
            )

    async def serve(self) -> None:
        UP_SINCE.set(time.time())
        runner = web.AppRunner(self.http, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.http_host, self.settings.http_port)
        await site.start()
        log.info("%s http on %s", self.service, site.name)
        try:
            # A dependency that is down at start is waited for, not fatal: the process
            # stays up, /readyz stays red, and the orchestrator does not crash-loop it.
            if self.schema is not None:
                await self._retry_until_stopped("postgres", self._connect_pool)
            if await self._retry_until_stopped("nats", self.broker.start):
                await rpc.start_responders(self.broker)
                await self._watch_exhausted()
                for hook in self.on_start:
                    await hook(self)
                log.info("%s started", self.service)
            await self._stopping.wait()
        finally:
            await self._shutdown(runner)

    async def _shutdown(self, runner: web.AppRunner) -> None:
        log.info("%s stopping", self.service)
        # broker.stop() waits up to graceful_timeout for in-flight handlers; only then are
        # the hooks' resources (HTTP sessions, caches) closed under them.
        with contextlib.suppress(Exception):
            await rpc.stop_responders(self.broker, self.settings.broker_graceful_timeout)
        with contextlib.suppress(Exception):
            await self.broker.stop()
        for hook in reversed(self.on_stop):
            with contextlib.suppress(Exception):
                await hook(self)
        if self.pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pool.close(), 5)
        await runner.cleanup()
        log.info("%s stopped", self.service)

    def stop(self) -> None:
        self._stopping.set()


def _consumed(service: str) -> tuple[str, ...]:
    try:
        return subjects.service_channels(service).consumes
    except LookupError:
        return ()  # a runtime outside the four services (tests, tools)


def periodic(
    name: str,
    run: Callable[[], Awaitable[object]],
    wait: Callable[[], Awaitable[object]],
    *,
    run_first: bool = True,
) -> asyncio.Task[None]:
    """A background pass for ever: ``run``, then ``wait`` (or the other way round). A pass
    that fails is logged and the next one still comes: one bad pass must not silently
    stop an outbox, a scheduler or a keep-alive. Cancel the task to stop it."""

    async def loop() -> None:
        if not run_first:
            await wait()
        while True:
            try:
                await run()
            except Exception:
                log.exception("%s pass failed", name)
            await wait()

    return asyncio.get_running_loop().create_task(loop(), name=name)


def run(build: Callable[[], ServiceRuntime]) -> None:
    """Entry point of ``python -m <service>``: run until SIGTERM / SIGINT."""

    async def main() -> None:
        runtime = build()
        runtime.on_start.append(_freeze_heap)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, runtime.stop)
        await runtime.serve()

    asyncio.run(main())


async def _freeze_heap(_: ServiceRuntime) -> None:
    """What exists once a service has started (modules, schemas, pools, apps) lives as
    long as the process: out of the collector's sight, a full collection walks only what
    came later. sync-worker paused 75 ms for each at 1,000 reads/s before. Only in the
    service's own process: a test running services in its process keeps its collector."""
    gc.freeze()
