"""Test harness: one embedded NATS and one embedded Postgres per test session.

They never touch servers already running on this machine: both start on free ports in
a temporary directory. Isolation: each test module gets a fresh database, and the
``js`` fixture starts every test with no streams or KV buckets left over.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from syncplane_devstack.embedded import EmbeddedNats, EmbeddedPostgres, make_workdir

TIERS = ("unit", "service", "integration", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test declares its tier, so `-m unit` and friends select what they say."""
    missing = [item.nodeid for item in items if not any(item.get_closest_marker(t) for t in TIERS)]
    if missing:
        raise pytest.UsageError(f"tests without a tier marker {TIERS}: {', '.join(missing)}")


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    path = make_workdir("syncplane-test-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def nats_server(workdir: Path) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(workdir / "nats").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_server(workdir: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(workdir / "pg").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def database_url(pg_server: EmbeddedPostgres) -> AsyncIterator[str]:
    """A fresh database for the test module, as a superuser DSN."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_server.url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield pg_server.url.rsplit("/", 1)[0] + f"/{name}"
    admin = await asyncpg.connect(pg_server.url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def nc(nats_server: EmbeddedNats) -> AsyncIterator[NatsClient]:
    client = await nats.connect(nats_server.url, max_reconnect_attempts=-1)
    yield client
    await client.drain()


@pytest.fixture
async def js(nc: NatsClient) -> JetStreamContext:
    """JetStream with every stream and KV bucket from earlier tests deleted."""
    ctx = nc.jetstream()
    for info in await ctx.streams_info():
        await ctx.delete_stream(info.config.name or "")
    return ctx
