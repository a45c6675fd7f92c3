"""Composition root of token-service: owner of OAuth credentials (ADR 0003).

Builds the keyring, the provider clients, the store-backed service and its outbox, and
wires them to the runtime's broker. The HTTP sessions and the service itself are made
when the process starts (they need the running loop and the pool); a request that
arrives before that is answered ``unavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import aiohttp
from syncplane_common.clock import Clock, SystemClock
from syncplane_common.errors import RetryableError
from syncplane_common.http import create_client_session
from syncplane_common.runtime import ServiceRuntime, periodic
from syncplane_common.settings import load_settings

from token_service import admin, handlers
from token_service.crypto import Keyring
from token_service.outbox import Outbox
from token_service.providers.base import OAuthProvider
from token_service.providers.google import GoogleOAuth
from token_service.providers.strava import StravaOAuth
from token_service.providers.whoop import WhoopOAuth
from token_service.service import Settings, TokenService
from token_service.settings import TokenServiceSettings

SERVICE = "token-service"
SCHEMA: str | None = "tokens"

log = logging.getLogger(__name__)


@dataclass
class TokenApp:
    runtime: ServiceRuntime
    settings: TokenServiceSettings
    clock: Clock
    keyring: Keyring
    service: TokenService | None = None
    _sessions: list[aiohttp.ClientSession] = field(default_factory=list)
    _loops: list[asyncio.Task[None]] = field(default_factory=list)

    def require(self) -> TokenService:
        if self.service is None:
            raise RetryableError("token-service is starting or stopping", retry_after=0.5)
        return self.service

    async def start(self, runtime: ServiceRuntime) -> None:
        settings = self.settings
        session = create_client_session(
            total_timeout=settings.provider_timeout_seconds,
            connect_timeout=settings.provider_connect_timeout_seconds,
        )
        # Strava's subscription calls carry the client secret in a query string: untraced.
        admin_session = create_client_session(
            total_timeout=settings.provider_timeout_seconds,
            connect_timeout=settings.provider_connect_timeout_seconds,
            trace=False,
        )
        self._sessions = [session, admin_session]
        providers, strava = build_providers(settings, session, admin_session, self.clock)
        outbox = Outbox(runtime.db, runtime.broker, self.clock)
        self.service = TokenService(
            runtime.db,
            self.keyring,
            providers,
            outbox,
            self.clock,
            service_settings(settings),
            strava=strava,
        )
        self._loops = [
            periodic(
                "token-service outbox",
                outbox.flush,
                lambda: asyncio.sleep(settings.outbox_interval_seconds),
                run_first=False,
            ),
        ]
        if settings.keepalive_idle_days > 0:
            self._loops.append(
                periodic(
                    "token-service keep-alive",
                    self.service.keepalive,
                    lambda: asyncio.sleep(settings.keepalive_interval_seconds),
                    run_first=False,
                )
            )

    async def stop(self, _: ServiceRuntime) -> None:
        # The runtime calls this before it drains the broker: new requests are turned
        # away ("unavailable", another replica answers), refreshes in flight finish and
        # persist their rotated tokens, and only then do the HTTP sessions close.
        service, self.service = self.service, None
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if service is not None:
            await service.close()
        for session in self._sessions:
            await session.close()


def service_settings(settings: TokenServiceSettings) -> Settings:
    return Settings(
        margin_seconds=settings.refresh_margin_seconds,
        cooldown_seconds=settings.refresh_cooldown_seconds,
        lock_timeout_seconds=settings.refresh_lock_timeout_seconds,
        # At least one connection always left for reads, whatever the two settings say.
        max_concurrent_refreshes=max(
            1, min(settings.max_concurrent_refreshes, settings.db_pool_max_size - 1)
        ),
        keepalive_idle_days=settings.keepalive_idle_days,
        keepalive_batch_size=settings.keepalive_batch_size,
        nonce_retention_seconds=settings.state_nonce_retention_seconds,
        last_used_resolution_seconds=settings.last_used_resolution_seconds,
        token_cache_seconds=settings.token_cache_seconds,
    )


def build_providers(
    settings: TokenServiceSettings,
    session: aiohttp.ClientSession,
    admin_session: aiohttp.ClientSession,
    clock: Clock,
) -> tuple[dict[str, OAuthProvider], StravaOAuth | None]:
    """A client per configured provider (a provider without a client id is left out)."""
    providers: dict[str, OAuthProvider] = {}
    strava: StravaOAuth | None = None
    if settings.strava_client_id:
        strava = StravaOAuth(
            session,
            clock,
            oauth_base=settings.strava_oauth_base,
            api_base=settings.strava_api_base,
            client_id=settings.strava_client_id,
            client_secret=settings.strava_client_secret,
            admin_session=admin_session,
        )
        providers["strava"] = strava
    if settings.google_client_id:
        for name in ("google_fit", "google_calendar"):
            providers[name] = GoogleOAuth(
                session,
                clock,
                name=name,
                token_url=settings.google_token_url,
                revoke_url=settings.google_revoke_url,
                client_id=settings.google_client_id,
                client_secret=settings.google_client_secret,
            )
    if settings.whoop_client_id:
        providers["whoop"] = WhoopOAuth(
            session,
            clock,
            oauth_base=settings.whoop_oauth_base,
            api_base=settings.whoop_api_base,
            client_id=settings.whoop_client_id,
            client_secret=settings.whoop_client_secret,
        )
    return providers, strava


def build_app(
    settings: TokenServiceSettings | None = None, *, clock: Clock | None = None
) -> TokenApp:
    settings = settings or load_settings(TokenServiceSettings, SERVICE)
    keyring = Keyring(settings.keyring, settings.active_key_id)
    runtime = ServiceRuntime(SERVICE, settings, SCHEMA)
    app = TokenApp(runtime, settings, clock or SystemClock(), keyring)
    handlers.register(runtime.broker, app.require, max_workers=settings.rpc_max_workers)
    admin.register(runtime.broker, app.require)
    runtime.on_start.append(app.start)
    runtime.on_stop.append(app.stop)
    return app


def build(settings: TokenServiceSettings | None = None) -> ServiceRuntime:
    return build_app(settings).runtime
