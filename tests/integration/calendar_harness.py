"""What the calendar-sync tests share: the provider sandbox in-process, Google accounts
with minted tokens, a stand-in ``token.get`` responder (token-service's role, served from
the sandbox's mint), calendar-sync's database, and the service in-process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import calendar_sync
import nats
from aiohttp.test_utils import TestServer
from faststream.nats import NatsBroker
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from provider_sandbox.app import SANDBOX_KEY, create_app
from provider_sandbox.config import AppCredentials, SandboxConfig, provider_urls
from provider_sandbox.core import Sandbox
from syncplane_common import rpc, subjects
from syncplane_common.contracts import TokenGet, TokenGetReply
from syncplane_common.errors import NotConnectedError
from syncplane_common.migrations import migrate
from syncplane_common.provision import provision_js

MIGRATIONS = Path(calendar_sync.__file__).parent / "migrations"
ROLE = "calendar_sync"
SCOPE = "https://www.googleapis.com/auth/calendar"
CONFIG = SandboxConfig(
    strava=AppCredentials("24680", "strava-test-secret"),
    whoop=AppCredentials("whoop-test-client", "whoop-test-secret"),
    google=AppCredentials("g-test.apps.googleusercontent.com", "google-test-secret"),
    seed=8,
)


def role_dsn(admin_dsn: str, role: str = ROLE) -> str:
    parts = urlsplit(admin_dsn)
    netloc = f"{role}:{role}@{parts.hostname}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


async def migrated(admin_dsn: str) -> None:
    await migrate(admin_dsn, "calendar-sync", MIGRATIONS)


@contextlib.asynccontextmanager
async def sandbox_server() -> AsyncIterator[tuple[Sandbox, str]]:
    app = create_app(CONFIG)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield app[SANDBOX_KEY], str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def calendar_api(sandbox_url: str) -> str:
    return provider_urls(sandbox_url)["GOOGLE_CALENDAR_API_BASE"]


@dataclass
class Google:
    """Google accounts in the sandbox, and the control API over them."""

    http: aiohttp.ClientSession
    url: str
    accounts: dict[str, str] = field(default_factory=dict)  # login hint -> account id

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(method, f"{self.url}{path}", json=body) as resp:
            assert resp.status < 400, f"{method} {path}: {resp.status} {await resp.text()}"
            return await resp.json()

    async def account(self, login_hint: str) -> str:
        if login_hint not in self.accounts:
            made = await self.control(
                "POST", "/_sandbox/google/accounts", {"login_hint": login_hint}
            )
            self.accounts[login_hint] = str(made["id"])
        return self.accounts[login_hint]

    async def token(self, login_hint: str) -> str:
        account = await self.account(login_hint)
        minted = await self.control(
            "POST", f"/_sandbox/google/accounts/{account}/tokens", {"scopes": [SCOPE]}
        )
        return str(minted["access_token"])

    def _events(self, login_hint: str, calendar_id: str) -> str:
        account = self.accounts[login_hint]
        return f"/_sandbox/google_calendar/users/{account}/calendars/{calendar_id}/events"

    async def events(self, login_hint: str, calendar_id: str = "primary") -> list[dict[str, Any]]:
        """Every event of the calendar, cancelled ones included, as Google lists them."""
        body = await self.control("GET", self._events(login_hint, calendar_id))
        return list(body["items"])

    async def live(self, login_hint: str, calendar_id: str = "primary") -> list[dict[str, Any]]:
        return [e for e in await self.events(login_hint, calendar_id) if e["status"] != "cancelled"]

    async def add(
        self, login_hint: str, event: dict[str, Any], calendar_id: str = "primary"
    ) -> Any:
        body = await self.control(
            "POST", self._events(login_hint, calendar_id), {"events": [event]}
        )
        return body["items"][0]

    async def edit(self, login_hint: str, event_id: str, changes: dict[str, Any]) -> Any:
        path = self._events(login_hint, "primary") + f"/{event_id}"
        return await self.control("PUT", path, changes)

    async def delete(self, login_hint: str, event_id: str) -> Any:
        return await self.control("DELETE", self._events(login_hint, "primary") + f"/{event_id}")

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.control("GET", "/_sandbox/stats")
        return result

    async def configure(self, **changes: Any) -> None:
        await self.control("POST", "/_sandbox/google_calendar/config", changes)


@contextlib.asynccontextmanager
async def google(sandbox_url: str) -> AsyncIterator[Google]:
    async with aiohttp.ClientSession() as http:
        yield Google(http, sandbox_url)


class SandboxTokens:
    """In-memory TokenSource: what token-service would answer, minted by the sandbox.
    ``users`` maps our user id to the Google login hint it connected."""

    def __init__(self, google: Google, users: dict[str, str]) -> None:
        self.google = google
        self.users = users
        self.cache: dict[str, str] = {}
        self.forced = 0

    async def get(
        self, user_id: str, *, force_refresh: bool = False, rejected: str | None = None
    ) -> str:
        hint = self.users.get(user_id)
        if hint is None:
            raise NotConnectedError(f"{user_id} has no Google Calendar connection")
        if force_refresh:
            self.forced += 1
        if force_refresh or user_id not in self.cache:
            self.cache[user_id] = await self.google.token(hint)
        return self.cache[user_id]


@contextlib.asynccontextmanager
async def token_responder(nats_url: str, tokens: SandboxTokens) -> AsyncIterator[NatsBroker]:
    """token-service's ``token.get``, answered by :class:`SandboxTokens`."""
    broker = NatsBroker(nats_url, logger=None)

    @rpc.responder(broker, subjects.TOKEN_GET, TokenGet, TokenGetReply, queue="token-service")
    async def get(ask: TokenGet) -> TokenGetReply:
        token = await tokens.get(
            ask.user_id, force_refresh=ask.force_refresh, rejected=ask.rejected_token_fingerprint
        )
        return TokenGetReply(access_token=token)

    await broker.start()
    await rpc.start_responders(broker)
    try:
        yield broker
    finally:
        await broker.stop()


@contextlib.asynccontextmanager
async def fresh_streams(nats_url: str) -> AsyncIterator[NatsClient]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for info in await js.streams_info():
        await js.delete_stream(info.config.name or "")
    await provision_js(js)
    try:
        yield nc
    finally:
        await nc.drain()


@dataclass
class Recorder:
    """Every message on some subjects, in arrival order."""

    seen: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_message(self, msg: Msg) -> None:
        self.seen.append((msg.subject, json.loads(msg.data)))
        self.arrived.set()

    def of(self, subject: str) -> list[dict[str, Any]]:
        return [b for s, b in self.seen if s == subject]

    async def wait(
        self, subject: str, match: Callable[[dict[str, Any]], bool], within: float = 10.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            for seen_subject, body in self.seen:
                if seen_subject == subject and match(body):
                    return body
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {subject} matched; saw {self.seen[-10:]}"
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)


async def eventually(check: Callable[[], Any], within: float = 10.0, every: float = 0.05) -> Any:
    """Poll an async ``check`` until it returns something truthy."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(every)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)
