"""What the token-service tests share: the provider sandbox on a loopback port, the
service's database (migrated, reached as its own role), a caller on NATS, the OAuth
consent dance against the sandbox, and a recorder of lifecycle events."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import aiohttp
import asyncpg
import nats
import token_service
from aiohttp.test_utils import TestServer
from faststream.nats import NatsBroker
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from provider_sandbox.app import SANDBOX_KEY, create_app
from provider_sandbox.config import AppCredentials, SandboxConfig, provider_urls
from provider_sandbox.core import Sandbox
from syncplane_common import rpc, subjects
from syncplane_common.clock import ManualClock
from syncplane_common.contracts import TokenExchange, TokenExchangeReply, TokenGet, TokenGetReply
from syncplane_common.migrations import migrate
from syncplane_common.provision import provision_js
from syncplane_common.runtime import ServiceRuntime
from token_service.app import TokenApp, build_app
from token_service.settings import TokenServiceSettings

MIGRATIONS = Path(token_service.__file__).parent / "migrations"
REDIRECT_URI = "http://localhost:8080/connect/callback"
ROLE = "token_service"

CONFIG = SandboxConfig(
    strava=AppCredentials("24680", "strava-test-secret"),
    whoop=AppCredentials("whoop-test-client", "whoop-test-secret"),
    google=AppCredentials("g-test.apps.googleusercontent.com", "google-test-secret"),
    seed=11,
)

SCOPES: dict[str, tuple[str, ...]] = {
    "strava": ("activity:read_all", "read"),
    "whoop": ("offline", "read:profile", "read:recovery", "read:sleep"),
    "google_fit": ("https://www.googleapis.com/auth/fitness.activity.read", "openid"),
    "google_calendar": ("https://www.googleapis.com/auth/calendar", "openid"),
}


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def role_dsn(admin_dsn: str, role: str = ROLE) -> str:
    parts = urlsplit(admin_dsn)
    netloc = f"{role}:{role}@{parts.hostname}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


async def migrated(admin_dsn: str) -> None:
    await migrate(admin_dsn, "token-service", MIGRATIONS)


def settings_for(
    nats_url: str, database_url: str, sandbox_url: str, **overrides: Any
) -> TokenServiceSettings:
    values: dict[str, Any] = {
        "nats_url": nats_url,
        "database_url": role_dsn(database_url),
        "token_keys": f"k1:{new_key()}",
        "http_port": 0,
        "strava_client_id": CONFIG.strava.client_id,
        "strava_client_secret": CONFIG.strava.client_secret,
        "whoop_client_id": CONFIG.whoop.client_id,
        "whoop_client_secret": CONFIG.whoop.client_secret,
        "google_client_id": CONFIG.google.client_id,
        "google_client_secret": CONFIG.google.client_secret,
        "provider_timeout_seconds": 0.5,
        "refresh_lock_timeout_seconds": 5.0,
        # These tests change rows under the service (expire, revoke elsewhere) and expect
        # the next call to see it; the in-memory answer has its own test.
        "token_cache_seconds": 0.0,
        **{name.lower(): url for name, url in provider_urls(sandbox_url).items()},
    }
    values.update(overrides)
    return TokenServiceSettings(**values)


def service_env(settings: TokenServiceSettings) -> dict[str, str]:
    """The same settings as environment variables, for a service run as a process."""
    return {name.upper(): str(value) for name, value in settings.model_dump().items()}


@contextlib.asynccontextmanager
async def sandbox_server(config: SandboxConfig = CONFIG) -> AsyncIterator[tuple[Sandbox, str]]:
    app = create_app(config)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    sandbox = app[SANDBOX_KEY]
    # Long enough to outlast the service's provider timeout, short enough that the
    # server closes quickly after a test that held connections this way.
    sandbox.timeout_seconds = 2.0
    try:
        yield sandbox, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


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


@contextlib.asynccontextmanager
async def serving(
    runtime: ServiceRuntime, ready: Callable[[], bool], within: float = 15.0
) -> AsyncIterator[None]:
    """A service's runtime in this process until the block ends; ``ready`` says when its
    start hooks have run (what the tests need before they talk to it)."""
    task = asyncio.create_task(runtime.serve())
    deadline = time.monotonic() + within
    while not ready():
        if task.done():
            task.result()
        assert time.monotonic() < deadline, f"{runtime.service} did not start"
        await asyncio.sleep(0.02)
    try:
        yield
    finally:
        runtime.stop()
        await asyncio.wait_for(task, 30)


async def eventually(check: Callable[[], Any], within: float = 20.0, every: float = 0.1) -> Any:
    """The first truthy value of ``check()`` (a value, or awaited when it is awaitable);
    fails after ``within`` seconds."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"condition not met within {within}s (last: {last!r})")


@contextlib.asynccontextmanager
async def running(app: TokenApp, within: float = 15.0) -> AsyncIterator[TokenApp]:
    async with serving(app.runtime, lambda: app.service is not None, within):
        yield app


@contextlib.asynccontextmanager
async def caller(nats_url: str) -> AsyncIterator[NatsBroker]:
    broker = NatsBroker(nats_url, logger=None)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


@dataclass
class Events:
    """Every message on the subjects it is subscribed to (``connection.>`` for the
    token-service stack), in arrival order."""

    seen: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_message(self, msg: Msg) -> None:
        self.seen.append((msg.subject, json.loads(msg.data)))
        self.arrived.set()

    async def wait(
        self, subject: str, match: Callable[[dict[str, Any]], bool], within: float = 5.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            for seen_subject, body in self.seen:
                if seen_subject == subject and match(body):
                    return body
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {subject} event matched; saw {self.seen}"
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)

    def of(self, subject: str, user_id: str | None = None) -> list[dict[str, Any]]:
        return [
            b
            for s, b in self.seen
            if s == subject and (user_id is None or b.get("user_id") == user_id)
        ]


@dataclass
class Stack:
    """token-service in this process (ManualClock), the sandbox, and a caller."""

    app: TokenApp
    sandbox: Sandbox
    sandbox_url: str
    broker: NatsBroker
    nc: NatsClient
    http: aiohttp.ClientSession
    admin: asyncpg.Pool[asyncpg.Record]
    clock: ManualClock
    events: Events

    def advance(self, seconds: float) -> None:
        """Time passes for us and for the providers alike."""
        self.clock.advance(seconds)
        self.sandbox.clock.advance(seconds)

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(method, f"{self.sandbox_url}{path}", json=body) as resp:
            assert resp.status < 400, f"{method} {path}: {resp.status} {await resp.text()}"
            return await resp.json()

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.control("GET", "/_sandbox/stats")
        return result

    async def consent(
        self,
        provider: str,
        login_hint: str,
        *,
        scopes: tuple[str, ...] | None = None,
        params: dict[str, str] | None = None,
    ) -> str:
        """Walk the provider's authorize step as the user's browser would; the code."""
        return await consent(
            self.http, self.sandbox_url, provider, login_hint, scopes=scopes, params=params
        )

    async def exchange(
        self,
        user_id: str,
        provider: str,
        code: str,
        *,
        scopes: tuple[str, ...] | None = None,
        nonce: str | None = None,
        code_verifier: str | None = None,
    ) -> TokenExchangeReply:
        ask = TokenExchange(
            user_id=user_id,
            provider=provider,
            code=code,
            redirect_uri=REDIRECT_URI,
            requested_scopes=SCOPES[provider] if scopes is None else scopes,
            code_verifier=code_verifier,
            state_nonce=nonce or uuid.uuid4().hex,
        )
        return await rpc.request(self.broker, subjects.TOKEN_EXCHANGE, ask, TokenExchangeReply)

    async def connect(self, user_id: str, provider: str, login_hint: str) -> TokenExchangeReply:
        return await self.exchange(user_id, provider, await self.consent(provider, login_hint))

    async def token(self, user_id: str, provider: str, **kw: Any) -> TokenGetReply:
        ask = TokenGet(user_id=user_id, provider=provider, **kw)
        return await rpc.request(self.broker, subjects.TOKEN_GET, ask, TokenGetReply)

    async def row(self, user_id: str, provider: str) -> asyncpg.Record:
        record = await self.admin.fetchrow(
            "SELECT * FROM tokens.connections WHERE user_id = $1 AND provider = $2",
            user_id,
            provider,
        )
        assert record is not None
        return record

    async def expire(self, user_id: str, provider: str) -> None:
        """Make our stored token look expired without moving any clock."""
        await self.admin.execute(
            "UPDATE tokens.connections SET expires_at = $3 WHERE user_id = $1 AND provider = $2",
            user_id,
            provider,
            datetime(2000, 1, 1, tzinfo=UTC),
        )


async def consent(
    http: aiohttp.ClientSession,
    sandbox_url: str,
    provider: str,
    login_hint: str,
    *,
    scopes: tuple[str, ...] | None = None,
    params: dict[str, str] | None = None,
) -> str:
    scopes = SCOPES[provider] if scopes is None else scopes
    query: dict[str, str] = {
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "state": "state-" + uuid.uuid4().hex,
        "login_hint": login_hint,
    }
    if provider == "strava":
        url = f"{sandbox_url}/strava/oauth/authorize"
        query.update(client_id=CONFIG.strava.client_id, scope=",".join(scopes))
    elif provider == "whoop":
        url = f"{sandbox_url}/whoop/oauth/oauth2/auth"
        query.update(client_id=CONFIG.whoop.client_id, scope=" ".join(scopes))
    else:
        url = f"{sandbox_url}/google/o/oauth2/v2/auth"
        query.update(
            client_id=CONFIG.google.client_id,
            scope=" ".join(scopes),
            access_type="offline",
            prompt="consent",
        )
    query.update(params or {})
    async with http.get(url, params=query, allow_redirects=False) as resp:
        assert resp.status == 302, f"authorize answered {resp.status}: {await resp.text()}"
        location = parse_qs(urlsplit(resp.headers["Location"]).query)
    assert "code" in location, f"no code in the redirect: {location}"
    return location["code"][0]


@contextlib.asynccontextmanager
async def stack(
    nats_url: str,
    database_url: str,
    *,
    sandbox: tuple[Sandbox, str] | None = None,
    **overrides: Any,
) -> AsyncIterator[Stack]:
    """The whole arrangement for one test module (or one phase of a test, sharing a
    sandbox that is already running)."""
    await migrated(database_url)
    clock = ManualClock(datetime.now(UTC))
    events = Events()
    async with contextlib.AsyncExitStack() as exits:
        if sandbox is None:
            sandbox = await exits.enter_async_context(sandbox_server())
        box, sandbox_url = sandbox
        nc = await exits.enter_async_context(fresh_streams(nats_url))
        http = await exits.enter_async_context(aiohttp.ClientSession())
        sub = await nc.subscribe("connection.>", cb=events.on_message)
        exits.push_async_callback(sub.unsubscribe)
        admin = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
        exits.push_async_callback(admin.close)
        settings = settings_for(nats_url, database_url, sandbox_url, **overrides)
        app = await exits.enter_async_context(running(build_app(settings, clock=clock)))
        broker = await exits.enter_async_context(caller(nats_url))
        yield Stack(app, box, sandbox_url, broker, nc, http, admin, clock, events)
