"""What the calendar-sync tests share: the provider sandbox in-process (token_harness's,
with its own seed), Google accounts with minted tokens, an in-memory token source that
answers as token-service would (from the sandbox's mint), calendar-sync's database, and
``service``: the whole service app in this process on real NATS and Postgres."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiohttp
import asyncpg
import calendar_sync
import nats
from calendar_sync.app import CalendarApp, build_app
from calendar_sync.settings import CalendarSyncSettings
from faststream.nats import NatsBroker
from nats.js import JetStreamContext
from provider_sandbox.config import AppCredentials, SandboxConfig, provider_urls
from provider_sandbox.core import Sandbox
from syncplane_common import bus, rpc, subjects
from syncplane_common.clock import ManualClock
from syncplane_common.contracts import ConnectionEvent, Contract, Reply
from syncplane_common.errors import NotConnectedError
from syncplane_common.migrations import migrate
from syncplane_common.tokens import AccessToken

from tests.integration import token_harness

MIGRATIONS = Path(calendar_sync.__file__).parent / "migrations"
R = TypeVar("R", bound=Reply)
ROLE = "calendar_sync"
SCOPE = "https://www.googleapis.com/auth/calendar"
CONFIG = SandboxConfig(
    strava=AppCredentials("24680", "strava-test-secret"),
    whoop=AppCredentials("whoop-test-client", "whoop-test-secret"),
    google=AppCredentials("g-test.apps.googleusercontent.com", "google-test-secret"),
    seed=8,
)


def role_dsn(admin_dsn: str, role: str = ROLE) -> str:
    return token_harness.role_dsn(admin_dsn, role)


async def migrated(admin_dsn: str) -> None:
    await migrate(admin_dsn, "calendar-sync", MIGRATIONS)


def sandbox_server() -> contextlib.AbstractAsyncContextManager[tuple[Sandbox, str]]:
    return token_harness.sandbox_server(CONFIG)


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
        self, user_id: str, provider: str, *, rejected_fingerprint: str | None = None
    ) -> AccessToken:
        hint = self.users.get(user_id)
        if provider != "google_calendar" or hint is None:
            raise NotConnectedError(f"{user_id} has no {provider} connection")
        forced = rejected_fingerprint is not None
        if forced:
            self.forced += 1
        if forced or user_id not in self.cache:
            self.cache[user_id] = await self.google.token(hint)
        return AccessToken(self.cache[user_id], hint)


# -- calendar-sync as a service: its app in this process, on real NATS and Postgres ------------

RECORDED = (
    subjects.CALENDAR_REMOTE_CHANGED,
    subjects.CALENDAR_CONFLICT_DETECTED,
    subjects.CALENDAR_PUSH_DISABLED,
    "dlq.>",
)
TABLES = "calendar.events, calendar.mappings, calendar.calendars, calendar.outbox, "
TABLES += "calendar.messages, calendar.audit"


def service_settings(
    nats_url: str, database_url: str, sandbox_url: str, **overrides: Any
) -> CalendarSyncSettings:
    values: dict[str, Any] = {
        "nats_url": nats_url,
        "database_url": role_dsn(database_url),
        "http_port": 0,
        "google_calendar_api_base": calendar_api(sandbox_url),
        "google_rate_per_user": 1000.0,
        "outbox_interval_seconds": 0.2,
        "outbox_retry_base_seconds": 0.2,
        # The tests run maintenance themselves, on the virtual clock.
        "maintenance_interval_seconds": 3600.0,
        "provider_timeout_seconds": 5.0,
        **overrides,
    }
    return CalendarSyncSettings(**values)


@dataclass
class Service:
    """calendar-sync in this process (ManualClock, the sandbox's tokens), a caller, and a
    recorder of what it publishes."""

    app: CalendarApp
    sandbox: Sandbox
    google: Google
    tokens: SandboxTokens
    broker: NatsBroker
    js: JetStreamContext
    clock: ManualClock
    events: token_harness.Events
    admin: asyncpg.Pool

    def advance(self, seconds: float) -> None:
        """Time passes for us and for Google alike."""
        self.clock.advance(seconds)
        self.sandbox.clock.advance(seconds)

    async def ask(self, subject: str, message: Contract, reply_type: type[R]) -> R:
        return await rpc.request(self.broker, subject, message, reply_type, wait=10.0)

    async def publish(self, subject: str, message: Contract, msg_id: str) -> None:
        await bus.publish(self.broker, subject, message, msg_id=msg_id)

    async def lifecycle(self, what: Literal["connected", "revoked"], user_id: str) -> None:
        event = ConnectionEvent(
            user_id=user_id, provider="google_calendar", occurred_at=self.clock.now()
        )
        subject = subjects.connection_event(what, "google_calendar")
        await self.publish(subject, event, f"{what}:{user_id}:{uuid.uuid4().hex}")
        await self.settled("EVENTS", "calendar-sync-lifecycle")

    async def connect(self, user_id: str, login_hint: str) -> None:
        """As token-service would: the grant exists, then ``connection.connected``."""
        await self.google.account(login_hint)
        self.tokens.users[user_id] = login_hint
        await self.lifecycle("connected", user_id)

    async def revoke(self, user_id: str) -> None:
        """The grant is gone (token.get answers not_connected), then the event."""
        self.tokens.users.pop(user_id, None)
        self.tokens.cache.pop(user_id, None)
        await self.lifecycle("revoked", user_id)

    async def settled(self, stream: str, durable: str, within: float = 15.0) -> None:
        """Every message of the durable consumer delivered and acknowledged."""

        async def done() -> bool:
            info = await self.js.consumer_info(stream, durable)
            return bool(info.num_pending == 0 and info.num_ack_pending == 0)

        await eventually(done, within=within, every=0.05)

    async def calendar(self, user_id: str, calendar_id: str = "primary") -> asyncpg.Record:
        row = await self.admin.fetchrow(
            "SELECT * FROM calendar.calendars WHERE user_id = $1 AND calendar_id = $2",
            user_id,
            calendar_id,
        )
        assert row is not None, f"no calendar {calendar_id} of {user_id}"
        return row

    async def channels(self) -> list[dict[str, Any]]:
        listed = await self.google.control("GET", "/_sandbox/google_calendar/channels")
        return list(listed["channels"])

    def calls(self, endpoint: str) -> int:
        """Google Calendar calls so far to ``"<METHOD> <path template>"``, the template as
        the sandbox routes it (``"POST /calendars/{calendarId}/events"``)."""
        return self.sandbox.stats.calls[f"google_calendar {endpoint}"]


async def eventually(check: Callable[[], Any], within: float = 15.0, every: float = 0.05) -> Any:
    """The first truthy value of ``check()`` (awaited when awaitable); fails after ``within``."""
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
async def service(
    nats_url: str,
    database_url: str,
    *,
    webhook_url: str = "",
    sandbox: tuple[Sandbox, str] | None = None,
    fresh_streams: bool = True,
    **overrides: Any,
) -> AsyncIterator[Service]:
    """calendar-sync's app with fresh tables (and streams, unless the caller provisioned
    them for a gateway it started first); ``webhook_url`` (the gateway's push route) turns
    push channels on."""
    await migrated(database_url)
    clock = ManualClock(datetime.now(UTC))
    events = token_harness.Events()
    async with contextlib.AsyncExitStack() as exits:
        if sandbox is None:
            sandbox = await exits.enter_async_context(sandbox_server())
        box, sandbox_url = sandbox
        if fresh_streams:
            nc = await exits.enter_async_context(token_harness.fresh_streams(nats_url))
        else:
            nc = await nats.connect(nats_url)
            exits.push_async_callback(nc.drain)
        for subject in RECORDED:
            await nc.subscribe(subject, cb=events.on_message)
        admin = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
        exits.push_async_callback(admin.close)
        await admin.execute(f"TRUNCATE {TABLES}")
        g = await exits.enter_async_context(google(sandbox_url))
        tokens = SandboxTokens(g, {})
        settings = service_settings(
            nats_url, database_url, sandbox_url, gcal_webhook_url=webhook_url, **overrides
        )
        app = build_app(settings, clock=clock, tokens=tokens)
        await exits.enter_async_context(
            token_harness.serving(app.runtime, lambda: app.engine is not None)
        )
        broker = await exits.enter_async_context(token_harness.caller(nats_url))
        yield Service(app, box, g, tokens, broker, nc.jetstream(), clock, events, admin)
