"""What the sync-worker tests share: the token-service stack of ``token_harness`` (real
token-service, sandbox, NATS, Postgres) plus sync-worker itself, in-process or as a
process, migrated and reached as its own role; helpers to seed Strava athletes, connect
them, and wait for sessions and rows."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import nats
import sync_worker
from provider_sandbox.config import provider_urls
from sync_worker.app import SyncApp, build_app
from sync_worker.settings import SyncWorkerSettings
from syncplane_common.db import create_pool
from syncplane_common.migrations import migrate, migrate_all
from syncplane_common.migrations_registry import service_migrations

from tests.integration.token_harness import Events, Stack, eventually, role_dsn, serving

MIGRATIONS = Path(sync_worker.__file__).parent / "migrations"

# What the Fit daily aggregate reads (steps, calories, distance, heart rate, active
# minutes) and sleep sessions, which Google lists only with the sleep scope.
FIT_SCOPES = tuple(
    f"https://www.googleapis.com/auth/fitness.{kind}.read"
    for kind in ("activity", "body", "heart_rate", "location", "sleep")
)


async def migrated(admin_dsn: str) -> None:
    await migrate(admin_dsn, "sync-worker", MIGRATIONS)


def settings_for(stack: Stack, database_url: str, **overrides: Any) -> SyncWorkerSettings:
    values: dict[str, Any] = {
        "nats_url": stack.app.settings.nats_url,
        "database_url": role_dsn(database_url, "sync_worker"),
        "http_port": 0,
        "provider_timeout_seconds": 5.0,
        "geocoding_min_interval_seconds": 0.0,
        "geocoding_user_agent": "syncplane-tests/1.0 (tests@syncplane.invalid)",
        "sync_heartbeat_seconds": 1.0,
        "retry_backoff_base": 0.2,
        "retry_backoff_max": 2.0,
        **{name.lower(): url for name, url in provider_urls(stack.sandbox_url).items()},
    }
    values.update(overrides)
    return SyncWorkerSettings(**values)


async def whoop_settings(stack: Stack, database_url: str) -> SyncWorkerSettings:
    """A worker for many WHOOP backfills in one module. The sandbox's per-app limits (and
    our budget that follows them) would pace them by the minute; the budget's own pacing
    has tests of its own. No weather or geocoding, no scheduler tick during a test."""
    await stack.control(
        "POST",
        "/_sandbox/whoop/config",
        {"rate_limit_per_minute": 100_000, "rate_limit_per_day": 1_000_000},
    )
    return settings_for(
        stack,
        database_url,
        scheduler_tick_seconds=3600,
        whoop_rate_limit="100000,1000000",
        weather_enabled=False,
        geocoding_enabled=False,
    )


@contextlib.asynccontextmanager
async def running(app: SyncApp, within: float = 15.0) -> AsyncIterator[SyncApp]:
    async with serving(app.runtime, lambda: app.worker is not None, within):
        yield app


@contextlib.asynccontextmanager
async def recorder(nats_url: str, *subjects: str) -> AsyncIterator[Events]:
    """Every message on ``subjects`` (core subscriptions see JetStream publishes too)."""
    nc = await nats.connect(nats_url)
    events = Events()
    for subject in subjects:
        await nc.subscribe(subject, cb=events.on_message)
    try:
        yield events
    finally:
        await nc.drain()


async def seed_strava(stack: Stack, hint: str, count: int, **extra: Any) -> int:
    """A sandbox athlete with ``count`` generated activities; its id."""
    athlete = int(stack.sandbox.accounts.get_or_create("strava", hint).id)
    if count:
        await stack.control(
            "POST",
            f"/_sandbox/strava/athletes/{athlete}/activities",
            {"generate": count, **extra},
        )
    return athlete


async def activity_count(stack: Stack, user_id: str) -> int:
    value: int = await stack.admin.fetchval(
        "SELECT count(*) FROM sync.strava_activities WHERE user_id = $1", user_id
    )
    return value


async def sessions_of(stack: Stack, user_id: str) -> list[dict[str, Any]]:
    records = await stack.admin.fetch(
        "SELECT * FROM sync.sessions WHERE user_id = $1 ORDER BY created_at", user_id
    )
    return [dict(r) for r in records]


def process_env(settings: SyncWorkerSettings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "DATABASE_"))}
    for name, value in settings.model_dump().items():
        env[name.upper()] = "" if value is None else str(value)
    return env


async def start_process(settings: SyncWorkerSettings) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sync_worker",
        env=process_env(settings),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


__all__ = [
    "FIT_SCOPES",
    "Events",
    "activity_count",
    "build_app",
    "eventually",
    "migrated",
    "recorder",
    "running",
    "seed_strava",
    "sessions_of",
    "settings_for",
    "start_process",
    "whoop_settings",
]


@contextlib.asynccontextmanager
async def sync_pool(
    admin_dsn: str, *, min_size: int = 1, max_size: int = 3
) -> AsyncIterator[asyncpg.Pool]:
    """Every service's migrations applied, then a pool as sync-worker's own role on its
    schema: what the store tests write through."""
    await migrate_all(admin_dsn, service_migrations())
    pool = await create_pool(
        role_dsn(admin_dsn, "sync_worker"), "sync", min_size=min_size, max_size=max_size
    )
    try:
        yield pool
    finally:
        await pool.close()
