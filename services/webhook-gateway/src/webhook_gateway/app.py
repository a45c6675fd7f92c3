"""Composition root of webhook-gateway: the only HTTP edge (no database).

Route modules each own one surface and register on the runtime's aiohttp app:
``webhooks`` (providers → JetStream), ``connect`` (OAuth redirects), ``api`` (the app
API and admin routes, each fronting a request/reply subject), ``console`` (the ``/admin``
pages), ``openapi`` (the document).
"""

from __future__ import annotations

from syncplane_common.runtime import ServiceRuntime
from syncplane_common.settings import load_settings

from webhook_gateway import api, connect, console, openapi, webhooks
from webhook_gateway.context import GATEWAY, Gateway
from webhook_gateway.settings import GatewaySettings

SERVICE = "webhook-gateway"
SCHEMA: str | None = None


def build(settings: GatewaySettings | None = None) -> ServiceRuntime:
    settings = settings or load_settings(GatewaySettings, SERVICE)
    runtime = ServiceRuntime(SERVICE, settings, SCHEMA)
    gateway = Gateway(runtime, settings)
    runtime.http[GATEWAY] = gateway
    for surface in (webhooks, connect, api, console, openapi):
        surface.setup(gateway)
    return runtime
