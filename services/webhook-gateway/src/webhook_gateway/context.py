"""What every gateway route module is handed: settings, the broker, metrics, KV access.

The gateway holds no state of its own; everything here is a connection or a cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web
from faststream.nats import NatsBroker
from syncplane_common.runtime import ServiceRuntime

from webhook_gateway.auth import TokenCache
from webhook_gateway.settings import GatewaySettings


@dataclass
class Gateway:
    runtime: ServiceRuntime
    settings: GatewaySettings
    # App API bearer tokens already verified (the app sends one token per session).
    tokens: TokenCache = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = TokenCache(self.settings)

    @property
    def broker(self) -> NatsBroker:
        return self.runtime.broker

    @property
    def app(self) -> web.Application:
        return self.runtime.http


GATEWAY = web.AppKey("gateway", Gateway)
