"""Test harness for the webhook-gateway's app API and connect flow (not a test module).

``running_gateway`` builds the gateway through its composition root, starts its broker
on the embedded NATS and serves its aiohttp app on a fixed loopback port (so
PUBLIC_BASE_URL, and with it the OAuth redirect URI, is known before start).
``StandInTokenService`` answers token.* like token-service would — exchanging codes at
the provider sandbox, refusing a reused state nonce — so the gateway is tested against
the subjects it really calls, not against mocks of itself.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import jwt
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, unused_port
from faststream.nats import NatsBroker
from provider_sandbox.config import SandboxConfig, provider_urls
from syncplane_common import rpc, subjects
from syncplane_common.clock import Clock
from syncplane_common.contracts import (
    ConnectionsList,
    ConnectionsListReply,
    ConnectionView,
    ErrorReply,
    StravaSubscriptionEnsure,
    StravaSubscriptionEnsureReply,
    TokenExchange,
    TokenExchangeReply,
    TokenRevoke,
    TokenRevokeReply,
)
from syncplane_common.errors import NotConnectedError, PermanentError
from syncplane_common.runtime import ServiceRuntime
from syncplane_devstack.devjwt import mint_token
from webhook_gateway._api_events import EVENTS_OPTIONS, EventsOptions
from webhook_gateway.app import build
from webhook_gateway.routes import CLOCK
from webhook_gateway.settings import GatewaySettings

JWT_SECRET = "gateway-test-jwt-secret-0123456789abcdef"
STATE_SECRET = "gateway-test-state-secret-0123456789abcdef"
VERIFY_TOKEN = "strava-verify-token"
RETURN_TO = "http://localhost:3000/settings/connections"

Client = TestClient[web.Request, web.Application]


@dataclass
class Harness:
    runtime: ServiceRuntime
    client: Client
    settings: GatewaySettings

    @property
    def base_url(self) -> str:
        return self.settings.public_base_url

    def token(self, user: str, *, admin: bool = False) -> str:
        return mint_token(JWT_SECRET, user, admin=admin)

    def auth(self, user: str, *, admin: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user, admin=admin)}"}


def gateway_settings(nats_url: str, port: int, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "nats_url": nats_url,
        "public_base_url": f"http://127.0.0.1:{port}",
        "api_jwt_secret": JWT_SECRET,
        "oauth_state_secret": STATE_SECRET,
        "strava_client_id": "12345",
        "whoop_client_id": "whoop-client",
        "google_client_id": "g-client.apps.googleusercontent.com",
        "strava_webhook_verify_token": VERIFY_TOKEN,
        "request_timeout_seconds": 2.0,
        **overrides,
    }
    return GatewaySettings(**values)


@asynccontextmanager
async def running_gateway(
    nats_url: str,
    *,
    sandbox_url: str | None = None,
    clock: Clock | None = None,
    heartbeat_seconds: float = 0.2,
    **overrides: Any,
) -> AsyncIterator[Harness]:
    port = unused_port()
    if sandbox_url is not None:
        urls = {k.lower(): v for k, v in provider_urls(sandbox_url).items()}
        overrides = {**urls, **overrides}
    settings = gateway_settings(nats_url, port, **overrides)
    runtime = build(settings)
    if clock is not None:
        runtime.http[CLOCK] = clock
    runtime.http[EVENTS_OPTIONS] = EventsOptions(heartbeat_seconds=heartbeat_seconds)
    await runtime.broker.start()
    try:
        server = TestServer(runtime.http, host="127.0.0.1", port=port)
        async with TestClient(server) as client:
            yield Harness(runtime, client, settings)
    finally:
        await runtime.broker.stop()


def expired_token(user: str) -> str:
    now = int(time.time())
    claims = {"sub": user, "iss": "syncplane-dev", "iat": now - 7200, "exp": now - 3600}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


# -- the stand-in token-service ----------------------------------------------------------------

SANDBOX_CONFIG = SandboxConfig(seed=11)
SANDBOX_CREDENTIALS = {
    "strava": SANDBOX_CONFIG.strava,
    "whoop": SANDBOX_CONFIG.whoop,
    "google_fit": SANDBOX_CONFIG.google,
    "google_calendar": SANDBOX_CONFIG.google,
}


def sandbox_config() -> SandboxConfig:
    return SANDBOX_CONFIG


def client_id_overrides() -> dict[str, Any]:
    return {
        "strava_client_id": SANDBOX_CONFIG.strava.client_id,
        "whoop_client_id": SANDBOX_CONFIG.whoop.client_id,
        "google_client_id": SANDBOX_CONFIG.google.client_id,
    }


def _jwt_payload(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


@dataclass
class StandInTokenService:
    """Behaves like token-service on the subjects the gateway calls."""

    nats_url: str
    sandbox_url: str | None = None
    exchanges: list[TokenExchange] = field(default_factory=list)
    revokes: list[TokenRevoke] = field(default_factory=list)
    ensures: list[StravaSubscriptionEnsure] = field(default_factory=list)
    connections: dict[tuple[str, str], ConnectionView] = field(default_factory=dict)
    nonces: set[str] = field(default_factory=set)
    subscription_id: int | None = None
    broker: NatsBroker = field(init=False)

    def __post_init__(self) -> None:
        self.broker = NatsBroker(self.nats_url, logger=None)
        queue = "token-service"
        rpc.responder(
            self.broker, subjects.TOKEN_EXCHANGE, TokenExchange, TokenExchangeReply, queue=queue
        )(self.exchange)
        rpc.responder(
            self.broker, subjects.TOKEN_REVOKE, TokenRevoke, TokenRevokeReply, queue=queue
        )(self.revoke)
        rpc.responder(
            self.broker,
            subjects.CONNECTIONS_LIST,
            ConnectionsList,
            ConnectionsListReply,
            queue=queue,
        )(self.list_connections)
        rpc.responder(
            self.broker,
            subjects.STRAVA_SUBSCRIPTION_ENSURE,
            StravaSubscriptionEnsure,
            StravaSubscriptionEnsureReply,
            queue=queue,
        )(self.ensure)

    def connect(self, user_id: str, provider: Any, status: Any = "active") -> None:
        now = datetime.now(UTC)
        self.connections[(user_id, provider)] = ConnectionView(
            provider=provider,
            status=status,
            provider_account_id="acct",
            scopes=("read",),
            connected_at=now,
            updated_at=now,
        )

    async def exchange(self, ask: TokenExchange) -> TokenExchangeReply:
        self.exchanges.append(ask)
        if ask.state_nonce in self.nonces:
            # token-service's answer to a replayed callback.
            return TokenExchangeReply(
                error=ErrorReply(code="conflict", message="this connect attempt was used")
            )
        self.nonces.add(ask.state_nonce)
        account_id, scopes = await self._redeem(ask)
        key = (ask.user_id, ask.provider)
        reconnected = key in self.connections
        now = datetime.now(UTC)
        previous = self.connections.get(key)
        self.connections[key] = ConnectionView(
            provider=ask.provider,
            status="active",
            provider_account_id=account_id,
            scopes=scopes,
            connected_at=previous.connected_at if previous else now,
            updated_at=now,
        )
        return TokenExchangeReply(
            provider_account_id=account_id, scopes=scopes, reconnected=reconnected
        )

    async def _redeem(self, ask: TokenExchange) -> tuple[str | None, tuple[str, ...]]:
        """The code exchange at the sandbox, as token-service does it at the provider."""
        if self.sandbox_url is None:
            return "acct", ask.requested_scopes
        creds = SANDBOX_CREDENTIALS[ask.provider]
        form = {
            "grant_type": "authorization_code",
            "code": ask.code,
            "client_id": creds.client_id,
            "client_secret": creds.client_secret,
            "redirect_uri": ask.redirect_uri,
        }
        if ask.code_verifier is not None:
            form["code_verifier"] = ask.code_verifier
        url = {
            "strava": "/strava/oauth/token",
            "whoop": "/whoop/oauth/oauth2/token",
            "google_fit": "/google/token",
            "google_calendar": "/google/token",
        }[ask.provider]
        async with (
            aiohttp.ClientSession() as http,
            http.post(self.sandbox_url + url, data=form) as resp,
        ):
            body = await resp.json()
            if resp.status != 200:
                raise PermanentError(f"the provider refused the code ({resp.status})")
            if ask.provider == "strava":
                return str(body["athlete"]["id"]), tuple(ask.requested_scopes)
            scopes = tuple(str(body.get("scope", "")).split())
            if ask.provider == "whoop":
                headers = {"Authorization": f"Bearer {body['access_token']}"}
                profile_url = self.sandbox_url + "/whoop/developer/v2/user/profile/basic"
                async with http.get(profile_url, headers=headers) as profile:
                    return str((await profile.json())["user_id"]), scopes
            return str(_jwt_payload(body["id_token"])["sub"]), scopes

    async def revoke(self, ask: TokenRevoke) -> TokenRevokeReply:
        self.revokes.append(ask)
        if (ask.user_id, ask.provider) not in self.connections:
            raise NotConnectedError(f"no {ask.provider} connection for {ask.user_id}")
        del self.connections[(ask.user_id, ask.provider)]
        return TokenRevokeReply(revoked=True)

    async def list_connections(self, ask: ConnectionsList) -> ConnectionsListReply:
        mine = tuple(c for (user, _), c in self.connections.items() if user == ask.user_id)
        return ConnectionsListReply(connections=mine)

    async def ensure(self, ask: StravaSubscriptionEnsure) -> StravaSubscriptionEnsureReply:
        self.ensures.append(ask)
        created = self.subscription_id is None
        if created:
            self.subscription_id = 4242
        return StravaSubscriptionEnsureReply(subscription_id=self.subscription_id, created=created)


@asynccontextmanager
async def stand_in_token_service(
    nats_url: str, sandbox_url: str | None = None
) -> AsyncIterator[StandInTokenService]:
    service = StandInTokenService(nats_url, sandbox_url)
    await service.broker.start()
    await rpc.start_responders(service.broker)
    try:
        yield service
    finally:
        await service.broker.stop()
