"""Composition root of sync-worker: sync sessions and provider data.

Builds the provider clients, the enrichment, the engine with its sources, the scheduler,
and wires the handlers to the runtime's broker. The HTTP session and the engine need the
running loop and the pool, so they are made when the process starts; a message that
arrives before that is retried (``unavailable``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp
from pydantic import BaseModel
from syncplane_common import bus
from syncplane_common.clock import Clock, SystemClock
from syncplane_common.errors import RetryableError
from syncplane_common.http import create_client_session
from syncplane_common.runtime import ServiceRuntime, periodic
from syncplane_common.settings import load_settings
from syncplane_common.tokens import NatsTokenSource

from sync_worker import admin, fit_api, handlers
from sync_worker.budget import (
    KvRateBudget,
    RateBudget,
    configured_limits,
)
from sync_worker.engine import Engine, Sources
from sync_worker.enrichment import CircuitBreaker, GeocodingClient, TtlCache, WeatherClient
from sync_worker.enrichment.activities import ActivityEnricher
from sync_worker.fit_api import FitApi
from sync_worker.fit_run import FitRun
from sync_worker.fit_source import GoogleFitDaily, GoogleFitSessions
from sync_worker.fit_store import PgTimeZones
from sync_worker.providers.google_fit import GoogleFitClient
from sync_worker.providers.strava import StravaClient
from sync_worker.providers.whoop import WhoopClient
from sync_worker.scheduler import Scheduler
from sync_worker.settings import SyncWorkerSettings
from sync_worker.strava_source import StravaActivities
from sync_worker.whoop_source import whoop_sources

SERVICE = "sync-worker"
SCHEMA: str | None = "sync"

log = logging.getLogger(__name__)


@dataclass
class SyncApp:
    runtime: ServiceRuntime
    settings: SyncWorkerSettings
    clock: Clock
    budget: RateBudget | None = None
    scheduler_enabled: bool = True
    worker: handlers.Worker | None = None
    scheduler: Scheduler | None = None
    fit_run: FitRun | None = None
    fit_queries: FitApi | None = None
    _sessions: list[aiohttp.ClientSession] = field(default_factory=list)
    _loops: list[asyncio.Task[None]] = field(default_factory=list)

    def require(self) -> handlers.Worker:
        if self.worker is None:
            raise RetryableError("sync-worker is starting or stopping", retry_after=0.5)
        return self.worker

    def require_fit(self) -> FitApi:
        if self.fit_queries is None:
            raise RetryableError("sync-worker is starting or stopping", retry_after=0.5)
        return self.fit_queries

    async def publish(self, subject: str, message: BaseModel, msg_id: str) -> None:
        await bus.publish(self.runtime.broker, subject, message, msg_id=msg_id)

    async def start(self, runtime: ServiceRuntime) -> None:
        s = self.settings
        session = create_client_session(
            total_timeout=s.provider_timeout_seconds,
            connect_timeout=s.provider_connect_timeout_seconds,
        )
        self._sessions = [session]
        enricher = build_enricher(s, session, self.clock)
        budget = self.budget
        if budget is None and s.rate_budget_enabled:
            budget = await KvRateBudget.bind(
                runtime.jetstream(), configured_limits(s), self.clock, s.rate_background_share
            )
        fit_client = GoogleFitClient(session, s.google_fit_api_base, self.clock)
        zones = PgTimeZones(runtime.db, s.default_time_zone)
        fit_daily = GoogleFitDaily(
            fit_client,
            zones,
            days_back=s.google_fit_days_back,
            backfill_days=s.google_fit_backfill_days,
        )
        fit_sessions = GoogleFitSessions(
            fit_client, days_back=s.google_fit_days_back, backfill_days=s.google_fit_backfill_days
        )
        sources = Sources(
            [
                StravaActivities(
                    StravaClient(session, s.strava_api_base, self.clock),
                    enricher,
                    per_page=s.strava_per_page,
                    backfill_since=s.strava_backfill_since,
                    overlap=timedelta(seconds=s.strava_incremental_overlap_seconds),
                    sport_types=s.strava_sport_type_filter,
                    budget=budget,
                ),
                *whoop_sources(
                    WhoopClient(session, s.whoop_api_base, self.clock),
                    backfill_since=s.whoop_backfill_since,
                    overlap=timedelta(seconds=s.whoop_incremental_overlap_seconds),
                    budget=budget,
                ),
                fit_daily,
                fit_sessions,
            ]
        )
        engine = Engine(
            pool=runtime.db,
            tokens=NatsTokenSource(
                runtime.broker,
                timeout=s.token_request_timeout_seconds,
                cache_seconds=s.token_cache_seconds,
                clock=self.clock,
            ),
            publish=self.publish,
            clock=self.clock,
            sources=sources,
            budget=budget,
            app_focus_min_age=timedelta(seconds=s.app_focus_min_age_seconds),
            inline_wait=s.rate_inline_wait_seconds,
        )
        intervals = s.schedule_interval_seconds
        # Google Fit is scheduled by its own unified run, not queued per connection.
        fit_every = intervals.pop("google_fit", None)
        self.scheduler = Scheduler(
            engine,
            intervals,
            s.scheduler_batch_size,
            enricher=enricher,
            enrichment_batch=s.enrichment_pass_batch,
        )
        self.worker = handlers.Worker(
            engine=engine,
            heartbeat_seconds=s.sync_heartbeat_seconds,
            max_deliver=s.max_deliver,
            intervals=s.schedule_interval_seconds,
            thresholds=s.freshness_thresholds,
            delete_data_on_revoke=s.delete_data_on_revoke,
        )
        if fit_every is not None:
            self.fit_run = FitRun(
                pool=runtime.db,
                tokens=engine.tokens,
                daily=fit_daily,
                sessions=fit_sessions,
                publish=self.publish,
                clock=self.clock,
                interval=timedelta(seconds=fit_every),
                budget=budget,
                days_back=s.google_fit_days_back,
                batch_size=s.google_fit_run_batch_size,
                concurrency=s.google_fit_run_concurrency,
                pause_seconds=s.google_fit_run_pause_seconds,
                worker=f"{socket.gethostname()}:{os.getpid()}",
            )
        self.fit_queries = FitApi(runtime.db, self.clock, zones)
        if self.scheduler_enabled:
            self._loops.append(
                periodic(
                    "sync-worker scheduler",
                    self.scheduler.run_once,
                    lambda: asyncio.sleep(s.scheduler_tick_seconds),
                )
            )
            if self.fit_run is not None:
                self._loops.append(
                    periodic(
                        "google fit run",
                        self.fit_run.run_once,
                        lambda: asyncio.sleep(s.scheduler_tick_seconds),
                    )
                )

    async def stop(self, _: ServiceRuntime) -> None:
        self.worker = None
        self.fit_queries = None
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for session in self._sessions:
            await session.close()


def build_enricher(
    s: SyncWorkerSettings, session: aiohttp.ClientSession, clock: Clock
) -> ActivityEnricher | None:
    if not (s.weather_enabled or s.geocoding_enabled):
        return None

    def breaker() -> CircuitBreaker:
        return CircuitBreaker(
            s.enrichment_breaker_failures, s.enrichment_breaker_cooldown_seconds, clock
        )

    weather = None
    if s.weather_enabled:
        # Archive weather never changes once published: a day's cache is plenty.
        weather = WeatherClient(
            session, s.weather_api_base, clock, breaker(), TtlCache(clock, 86400)
        )
    geocoding = None
    if s.geocoding_enabled:
        geocoding = GeocodingClient(
            session,
            s.geocoding_api_base,
            clock,
            breaker(),
            TtlCache(clock, 30 * 86400),
            s.geocoding_user_agent,
            s.geocoding_min_interval_seconds,
        )
    return ActivityEnricher(weather, geocoding, inline_lookups=s.geocoding_inline_per_page)


def build_app(
    settings: SyncWorkerSettings | None = None,
    *,
    clock: Clock | None = None,
    budget: RateBudget | None = None,
    scheduler: bool = True,
) -> SyncApp:
    settings = settings or load_settings(SyncWorkerSettings, SERVICE)
    runtime = ServiceRuntime(SERVICE, settings, SCHEMA)
    app = SyncApp(
        runtime, settings, clock or SystemClock(), budget=budget, scheduler_enabled=scheduler
    )
    handlers.register(
        runtime.broker,
        app.require,
        sync_concurrency=settings.sync_concurrency,
        webhook_concurrency=settings.webhook_concurrency,
    )
    admin.register(runtime.broker, app.require, settings, runtime.jetstream)
    fit_api.register(runtime.broker, app.require_fit, queue=handlers.QUEUE)
    runtime.on_start.append(app.start)
    runtime.on_stop.append(app.stop)
    return app


def build(settings: SyncWorkerSettings | None = None) -> ServiceRuntime:
    return build_app(settings).runtime
