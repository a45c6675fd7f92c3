"""The sandbox's shared machinery: virtual clock, call stats, fault injection, and the
route wrapper every provider endpoint goes through.

Each provider module owns its own state and routes; this module owns what they share,
so that the stats keys (``"<provider> <METHOD> <path template>"``), faults and the clock
behave the same for every provider. See ARCHITECTURE §8 for the control API contract.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class VirtualClock:
    """Real time plus an offset that only grows: advancing crosses rate windows, token
    expiries and channel expirations without sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.offset += seconds


@dataclass
class Stats:
    calls: Counter[str] = field(default_factory=Counter)
    calls_by_token: Counter[str] = field(default_factory=Counter)
    rate_limited: Counter[str] = field(default_factory=Counter)
    refreshes: Counter[str] = field(default_factory=Counter)
    webhooks: dict[str, Counter[str]] = field(default_factory=dict)

    def webhook(self, provider: str, outcome: str) -> None:
        self.webhooks.setdefault(provider, Counter())[outcome] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": dict(self.calls),
            "calls_by_token": dict(self.calls_by_token),
            "rate_limited": dict(self.rate_limited),
            "refreshes": dict(self.refreshes),
            "webhooks": {k: dict(v) for k, v in self.webhooks.items()},
        }


@dataclass
class FaultRule:
    """One injected fault. ``endpoint`` is written as in the stats keys, without the
    provider (``"GET /v2/recovery"``), or ``"webhook"`` for outbound deliveries."""

    provider: str
    endpoint: str
    status: int | None = None
    rate: float = 1.0
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    timeout: bool = False
    count: int | None = None  # None: until cleared
    drop: bool = False  # webhooks: do not deliver
    body: Any = None
    # Only calls made with a token of this provider account (one user's storm).
    account_id: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultRule:
        allowed = set(cls.__dataclass_fields__)
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        if "provider" not in data or "endpoint" not in data:
            raise ValueError("a fault needs 'provider' and 'endpoint'")
        rule = cls(**data)
        if not 0.0 <= rule.rate <= 1.0:
            raise ValueError("rate must be within [0, 1]")
        return rule


class Faults:
    def __init__(self, rng: random.Random) -> None:
        self.rules: list[FaultRule] = []
        self.rng = rng

    def add(self, rule: FaultRule) -> None:
        self.rules.append(rule)

    def clear(self) -> None:
        self.rules.clear()

    def pick(self, provider: str, endpoint: str, account_id: str | None = None) -> FaultRule | None:
        for rule in self.rules:
            if rule.provider != provider or rule.endpoint not in (endpoint, "*"):
                continue
            if rule.account_id is not None and rule.account_id != account_id:
                continue
            if rule.count is not None and rule.count <= 0:
                continue
            if self.rng.random() >= rule.rate:
                continue
            if rule.count is not None:
                rule.count -= 1
            return rule
        return None


class ProviderErrors(Protocol):
    """How a provider spells an injected error: each has its own body shape."""

    def error_response(self, status: int) -> web.Response: ...


class Resettable(Protocol):
    def reset(self) -> None: ...


@dataclass
class Sandbox:
    seed: int = 1
    timeout_seconds: float = 30.0
    clock: VirtualClock = field(default_factory=VirtualClock)
    stats: Stats = field(default_factory=Stats)
    rng: random.Random = field(init=False)
    faults: Faults = field(init=False)
    parts: list[Resettable] = field(default_factory=list)
    accounts: Accounts = field(init=False)
    tokens: Tokens = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.faults = Faults(self.rng)
        self.accounts = Accounts(self.rng)
        self.tokens = Tokens(self.rng, lambda: self.clock.time())

    def reset(self) -> None:
        self.stats = Stats()
        self.faults.clear()
        self.clock.offset = 0.0
        self.rng.seed(self.seed)
        self.accounts.reset()
        self.tokens.reset()
        for part in self.parts:
            part.reset()

    async def apply_fault(
        self,
        provider: str,
        endpoint: str,
        errors: ProviderErrors,
        account_id: str | None = None,
    ) -> web.Response | None:
        rule = self.faults.pick(provider, endpoint, account_id)
        if rule is None:
            return None
        delay = rule.latency_ms + self.rng.random() * rule.latency_jitter_ms
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        if rule.timeout:
            # Hold the connection as an unresponsive upstream would; the client's own
            # timeout is what is being tested.
            await asyncio.sleep(self.timeout_seconds)
            raise web.HTTPGatewayTimeout()
        if rule.status is not None:
            if rule.body is not None:
                return web.json_response(rule.body, status=rule.status)
            return errors.error_response(rule.status)
        return None

    def route(
        self,
        app: web.Application,
        provider: str,
        prefix: str,
        method: str,
        template: str,
        handler: Handler,
        errors: ProviderErrors,
        *,
        token_of: Callable[[web.Request], str | None] | None = None,
    ) -> None:
        """Register ``handler`` at ``prefix + template``, counted and fault-injectable."""
        key = f"{provider} {method} {template}"
        endpoint = f"{method} {template}"

        async def wrapped(request: web.Request) -> web.StreamResponse:
            self.stats.calls[key] += 1
            account_id = None
            if token_of is not None:
                token = token_of(request)
                if token:
                    self.stats.calls_by_token[f"{provider} {token[:12]}"] += 1
                    grant = self.tokens.access.get(token)
                    account_id = None if grant is None else grant.account_id
            injected = await self.apply_fault(provider, endpoint, errors, account_id)
            if injected is not None:
                return injected
            return await handler(request)

        app.router.add_route(method, prefix + template, wrapped)


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def read_params(request: web.Request) -> dict[str, str]:
    """Query string merged with a form or JSON body: OAuth token endpoints accept both."""
    params: dict[str, str] = dict(request.query)
    if request.can_read_body:
        ctype = request.content_type
        if ctype == "application/json":
            try:
                body = await request.json()
            except ValueError:
                body = None
            if isinstance(body, dict):
                params.update({k: str(v) for k, v in body.items()})
        else:
            form = await request.post()
            params.update({k: str(v) for k, v in form.items()})
    return params


# -- identities and credentials shared by the OAuth flows and the data APIs -----------------

# google_fit and google_calendar are two products of one Google identity.
ACCOUNT_SPACE = {
    "strava": "strava",
    "whoop": "whoop",
    "google": "google",
    "google_fit": "google",
    "google_calendar": "google",
}


@dataclass
class Account:
    space: str
    id: str
    login_hint: str | None
    profile: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        # Strava athletes and WHOOP users have integer ids on the wire; Google's are strings.
        wire_id: int | str = int(self.id) if self.space in ("strava", "whoop") else self.id
        return {"id": wire_id, "login_hint": self.login_hint, **self.profile}


class Accounts:
    """Provider accounts, created on first sight of a login_hint (or anonymously)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.by_id: dict[tuple[str, str], Account] = {}
        self.by_hint: dict[tuple[str, str], Account] = {}

    def reset(self) -> None:
        self.by_id.clear()
        self.by_hint.clear()

    def _new_id(self, space: str) -> str:
        while True:
            if space == "google":
                candidate = "1" + "".join(str(self.rng.randrange(10)) for _ in range(20))
            elif space == "strava":
                candidate = str(self.rng.randrange(10_000_000, 200_000_000))
            else:
                candidate = str(self.rng.randrange(10_000, 99_999_999))
            if (space, candidate) not in self.by_id:
                return candidate

    def get_or_create(self, provider: str, login_hint: str | None = None) -> Account:
        space = ACCOUNT_SPACE[provider]
        if login_hint and (space, login_hint) in self.by_hint:
            return self.by_hint[(space, login_hint)]
        account = Account(space, self._new_id(space), login_hint)
        self.by_id[(space, account.id)] = account
        if login_hint:
            self.by_hint[(space, login_hint)] = account
        return account

    def get(self, provider: str, account_id: str) -> Account | None:
        return self.by_id.get((ACCOUNT_SPACE[provider], str(account_id)))

    def list(self, provider: str) -> list[Account]:
        space = ACCOUNT_SPACE[provider]
        return [a for (s, _), a in self.by_id.items() if s == space]


@dataclass
class Grant:
    """An access token issued to an app (client id) for one account."""

    provider: str
    account_id: str
    client_id: str
    scopes: frozenset[str]
    access_token: str
    expires_at: float
    refresh_token: str | None = None
    revoked: bool = False


class Tokens:
    """Every access and refresh token the sandbox issued; the data APIs authenticate
    bearer tokens here, and the OAuth endpoints mint, rotate and revoke them."""

    def __init__(self, rng: random.Random, clock_time: Callable[[], float]) -> None:
        self.rng = rng
        self.clock_time = clock_time
        self.access: dict[str, Grant] = {}
        self.refresh: dict[str, Grant] = {}

    def reset(self) -> None:
        self.access.clear()
        self.refresh.clear()

    def new_secret(self, length: int = 40) -> str:
        alphabet = "abcdef0123456789"
        return "".join(alphabet[self.rng.randrange(16)] for _ in range(length))

    def issue(
        self,
        provider: str,
        account_id: str,
        client_id: str,
        scopes: frozenset[str],
        ttl: float,
        *,
        refresh_token: str | None = None,
        with_refresh: bool = True,
    ) -> Grant:
        grant = Grant(
            provider=provider,
            account_id=account_id,
            client_id=client_id,
            scopes=scopes,
            access_token=self.new_secret(),
            expires_at=self.clock_time() + ttl,
            refresh_token=refresh_token or (self.new_secret() if with_refresh else None),
        )
        self.access[grant.access_token] = grant
        if grant.refresh_token:
            self.refresh[grant.refresh_token] = grant
        return grant

    def valid_access(self, provider: str, token: str | None) -> Grant | None:
        if not token:
            return None
        grant = self.access.get(token)
        if grant is None or grant.provider != provider or grant.revoked:
            return None
        if grant.expires_at <= self.clock_time():
            return None
        return grant

    def revoke_account(self, provider: str, account_id: str, client_id: str | None = None) -> int:
        """Kill every access and refresh token of an account (deauthorization)."""
        killed = 0
        for table in (self.access, self.refresh):
            for key, grant in list(table.items()):
                if (
                    grant.provider == provider
                    and grant.account_id == account_id
                    and (client_id is None or grant.client_id == client_id)
                ):
                    grant.revoked = True
                    del table[key]
                    killed += 1
        return killed
