"""Composition root of calendar-sync: bidirectional Google Calendar sync (issue 8).

Builds the Google client, the engine, the channels and the publisher when the process
starts (they need the running loop and the pool), and runs these loops: the senders
(``OUTBOX_CONCURRENCY`` of them, each woken by local writes and on a timer for retries,
each idle only when it found nothing due, so a quiet moment does not leave one sender
carrying a backlog alone), the publisher of the message
outbox, and maintenance (channel renewal, polling, outbox cleanup). A request that
arrives before the engine exists is answered ``unavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp
from nats.js.kv import KeyValue
from syncplane_common.clock import Clock, SystemClock
from syncplane_common.errors import RetryableError
from syncplane_common.http import create_client_session
from syncplane_common.runtime import ServiceRuntime, periodic
from syncplane_common.settings import load_settings
from syncplane_common.tokens import NatsTokenSource, TokenSource

from calendar_sync import admin, handlers, store
from calendar_sync.channels import BUCKET, ChannelConfig, Channels
from calendar_sync.domain import Policy
from calendar_sync.ports import Ids, RandomIds
from calendar_sync.providers.google_calendar import GoogleCalendarClient
from calendar_sync.publisher import Publisher
from calendar_sync.settings import CalendarSyncSettings
from calendar_sync.sync import Engine, EngineConfig

SERVICE = "calendar-sync"
SCHEMA: str | None = "calendar"

log = logging.getLogger(__name__)


@dataclass
class Wakeable:
    """A loop that runs when woken or every ``interval`` seconds, whichever is first."""

    interval: float
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self) -> None:
        self.event.set()

    async def wait(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), self.interval)
        self.event.clear()


@dataclass
class CalendarApp:
    runtime: ServiceRuntime
    settings: CalendarSyncSettings
    clock: Clock
    ids: Ids
    tokens: TokenSource | None = None
    engine: Engine | None = None
    channels: Channels | None = None
    publisher: Publisher | None = None
    _session: aiohttp.ClientSession | None = None
    _loops: list[asyncio.Task[None]] = field(default_factory=list)
    _kv: KeyValue | None = None

    def require(self) -> Engine:
        if self.engine is None:
            raise RetryableError("calendar-sync is starting or stopping", retry_after=0.5)
        return self.engine

    def require_channels(self) -> Channels:
        if self.channels is None:
            raise RetryableError("calendar-sync is starting or stopping", retry_after=0.5)
        return self.channels

    async def kv(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self.runtime.jetstream().key_value(BUCKET)
        return self._kv

    async def start(self, runtime: ServiceRuntime) -> None:
        s = self.settings
        self._session = create_client_session(total_timeout=s.provider_timeout_seconds)
        senders = [Wakeable(s.outbox_interval_seconds) for _ in range(s.outbox_concurrency)]

        def wake_senders() -> None:
            for sender in senders:
                sender.wake()

        publishing = Wakeable(max(s.outbox_interval_seconds, 1.0))
        engine = Engine(
            runtime.db,
            GoogleCalendarClient(self._session, s.google_calendar_api_base),
            self.tokens or NatsTokenSource(runtime.broker, cache_seconds=0, clock=self.clock),
            self.clock,
            self.ids,
            engine_config(s),
            wake_sender=wake_senders,
            wake_publisher=publishing.wake,
        )
        self.publisher = Publisher(runtime.db, runtime.broker, self.clock)
        self.channels = Channels(engine, self.kv, channel_config(s))
        self.engine = engine
        # Maintenance's first pass (channels of calendars connected while we were down)
        # starts first, before the senders' first passes queue for pool connections.
        self._loops = [
            periodic(
                "calendar-sync maintenance",
                self.maintain,
                Wakeable(s.maintenance_interval_seconds).wait,
            ),
            periodic("calendar-sync publisher", self.publisher.flush, publishing.wait),
            *(
                periodic(f"calendar-sync sender {i}", engine.flush_outbox, sender.wait)
                for i, sender in enumerate(senders)
            ),
        ]

    async def maintain(self) -> None:
        channels, engine = self.require_channels(), self.require()
        await channels.renew_due()
        await channels.poll_due()
        retention = timedelta(days=self.settings.outbox_retention_days)
        async with engine.pool.acquire() as conn:
            await store.clean_outbox(conn, engine.clock.now() - retention)
            await store.clean_messages(conn, engine.clock.now() - retention)

    async def stop(self, _: ServiceRuntime) -> None:
        self.engine = None
        self.channels = None
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()


def engine_config(s: CalendarSyncSettings) -> EngineConfig:
    return EngineConfig(
        policy=Policy(s.conflict_policy),
        rate_per_user=s.google_rate_per_user,
        max_retries=s.outbox_max_retries,
        retry_base_seconds=s.outbox_retry_base_seconds,
        window_past_days=s.sync_window_past_days,
        window_future_days=s.sync_window_future_days,
    )


def channel_config(s: CalendarSyncSettings) -> ChannelConfig:
    return ChannelConfig(
        webhook_url=s.gcal_webhook_url,
        ttl_seconds=s.channel_ttl_seconds,
        renew_margin_seconds=s.channel_renew_margin_seconds,
        renew_retries=s.channel_renew_retries,
        poll_interval_seconds=s.poll_interval_seconds,
        backstop_interval_seconds=s.backstop_interval_seconds,
    )


def build_app(
    settings: CalendarSyncSettings | None = None,
    *,
    clock: Clock | None = None,
    ids: Ids | None = None,
    tokens: TokenSource | None = None,
) -> CalendarApp:
    settings = settings or load_settings(CalendarSyncSettings, SERVICE)
    runtime = ServiceRuntime(SERVICE, settings, SCHEMA)
    app = CalendarApp(runtime, settings, clock or SystemClock(), ids or RandomIds(), tokens)
    handlers.register(
        runtime.broker, app.require, app.require_channels, max_workers=settings.rpc_max_workers
    )
    admin.register(runtime.broker, app.require)
    runtime.on_start.append(app.start)
    runtime.on_stop.append(app.stop)
    return app


def build(settings: CalendarSyncSettings | None = None) -> ServiceRuntime:
    return build_app(settings).runtime
