"""What the calendar-sync tests share: the provider sandbox in-process (token_harness's,
with its own seed), Google accounts with minted tokens, an in-memory token source that
answers as token-service would (from the sandbox's mint), and calendar-sync's database."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import calendar_sync
from provider_sandbox.config import AppCredentials, SandboxConfig, provider_urls
from provider_sandbox.core import Sandbox
from syncplane_common.errors import NotConnectedError
from syncplane_common.migrations import migrate
from syncplane_common.tokens import AccessToken

from tests.integration import token_harness

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
