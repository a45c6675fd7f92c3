"""What the admin console tests share (not a test module): the whole arrangement — the
real token-service and sync-worker in this process, the provider sandbox, NATS, Postgres
and the gateway serving ``/admin`` on a loopback port — plus a signed-in browser-like
session and a dead letter maker."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from nats.js import JetStreamContext
from syncplane_common import dlq, subjects
from syncplane_common.contracts import SyncRequested

from tests.integration.gateway_harness import Harness, running_gateway
from tests.integration.sync_harness import (
    Events,
    build_app,
    migrated,
    recorder,
    running,
    settings_for,
)
from tests.integration.token_harness import Stack, stack


@dataclass
class Console:
    stack: Stack
    gateway: Harness
    seen: Events
    js: JetStreamContext

    @property
    def url(self) -> str:
        return self.gateway.base_url

    @contextlib.asynccontextmanager
    async def signed_in(self) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
        """A cookie-keeping client signed in through the login form, and the page's CSRF
        token."""
        jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            token = self.gateway.token("ops", admin=True)
            async with http.post(
                f"{self.url}/admin/login", data={"token": token}, allow_redirects=False
            ) as resp:
                assert resp.status == 303, await resp.text()
            async with http.get(f"{self.url}/admin") as resp:
                assert resp.status == 200
                page = await resp.text()
            match = re.search(r'<meta name="csrf" content="([0-9a-f]+)">', page)
            assert match, "the signed-in page carries a CSRF token"
            yield http, match.group(1)

    async def dead_letter(self, user: str, n: int) -> int:
        command = SyncRequested(
            request_id=f"dead-{user}-{n}",
            user_id=user,
            provider="strava",
            kind="on_demand",
            requested_at=datetime.now(UTC),
            priority="interactive",
        )
        ack = await self.js.publish(
            subjects.dead_letter(command.subject),
            command.to_bytes(),
            headers={
                dlq.MSG_ID: f"dlq:console:{user}:{n}",
                dlq.H_ORIGINAL_SUBJECT: command.subject,
                dlq.H_ERROR_TYPE: "PermanentError",
                dlq.H_ERROR_CODE: "permanent",
                dlq.H_ERROR_MESSAGE: f"console test letter {n}",
                dlq.H_DELIVERIES: "5",
                dlq.H_CONSUMER: "sync-worker-requests",
                dlq.H_FAILED_AT: datetime.now(UTC).isoformat(),
            },
        )
        return ack.seq


RECORDED = ("sync.requested.>", "sync.progress.>", "sync.completed.>", "sync.failed.>")


@contextlib.asynccontextmanager
async def console_stack(
    nats_url: str, database_url: str, **sync_overrides: Any
) -> AsyncIterator[Console]:
    await migrated(database_url)
    async with stack(nats_url, database_url) as s:
        settings = settings_for(s, database_url, scheduler_tick_seconds=3600, **sync_overrides)
        async with (
            running(build_app(settings, scheduler=False)),
            # Not "sync.>": that would also swallow the sync.*.list requests unanswered.
            recorder(nats_url, *RECORDED) as seen,
            running_gateway(nats_url, sandbox_url=s.sandbox_url) as gateway,
        ):
            yield Console(s, gateway, seen, s.nc.jetstream())
