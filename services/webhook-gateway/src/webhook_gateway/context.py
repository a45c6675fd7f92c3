"""What every gateway route module is handed: settings, the broker, metrics, KV access.

The gateway holds no state of its own; everything here is a connection or a cache.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from faststream.nats import NatsBroker
from syncplane_common.runtime import ServiceRuntime

from webhook_gateway.settings import GatewaySettings


@dataclass
class Gateway:
    runtime: ServiceRuntime
    settings: GatewaySettings

    @property
    def broker(self) -> NatsBroker:
        return self.runtime.broker

    @property
    def app(self) -> web.Application:
        return self.runtime.http


GATEWAY = web.AppKey("gateway", Gateway)
