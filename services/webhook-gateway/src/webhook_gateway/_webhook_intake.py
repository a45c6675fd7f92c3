"""What every provider webhook route shares: the refusals, the bounded body read, and the
durable publish whose PubAck decides the answer.

The gateway's promise to providers: a 2xx means the event is durably on the bus (or
already was: a duplicate); anything else means "retry". So the only path to a 2xx for
an event goes through :meth:`BusPublisher.publish`, and every refusal is a :class:`Rejected`
that names its reason once, for the JSON error body and for the counter alike.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection

from aiohttp import web
from faststream.nats import NatsBroker
from pydantic import ValidationError
from syncplane_common import bus
from syncplane_common.contracts import WebhookReceived

from webhook_gateway import metrics
from webhook_gateway.metrics import RejectReason, WebhookProvider
from webhook_gateway.responses import error_response

log = logging.getLogger(__name__)

STATUS: dict[RejectReason, int] = {
    "method": 405,
    "content_type": 415,
    "too_large": 413,
    "malformed": 400,
    "signature": 401,
    "timestamp": 401,
    "unknown_subscription": 403,
    "unknown_channel": 403,
    # 503 is what every provider retries (Google: only 500/502/503/504 are retried).
    "bus_unavailable": 503,
}


class Rejected(Exception):
    """A delivery refused before anything was published; ``reason`` decides the status."""

    def __init__(
        self, reason: RejectReason, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.headers = headers

    @property
    def status(self) -> int:
        return STATUS[self.reason]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def guarded(provider: WebhookProvider, methods: Collection[str], handler: Handler) -> Handler:
    """Wrap a route so that a wrong method and every :class:`Rejected` answer our JSON
    error shape (aiohttp's own 405 is plain text) and count their reason."""
    allowed = ", ".join(sorted(methods))

    async def run(request: web.Request) -> web.StreamResponse:
        try:
            if request.method not in methods:
                raise Rejected(
                    "method", f"{request.method} is not allowed here", headers={"Allow": allowed}
                )
            return await handler(request)
        except Rejected as err:
            metrics.webhook_rejected(provider, err.reason)
            return error_response(err.status, err.reason, err.message, headers=err.headers)

    return run


def invalid_fields(err: ValidationError) -> str:
    """Which fields failed, never their values (a body is untrusted input)."""
    names = {".".join(str(part) for part in e["loc"]) or "body" for e in err.errors()}
    return ", ".join(sorted(names))


def require_json(request: web.Request) -> None:
    if request.content_type != "application/json":
        raise Rejected("content_type", "the body must be application/json")


async def read_body(request: web.Request, limit: int) -> bytes:
    """The raw body, refused as soon as it is known to exceed ``limit`` bytes (a declared
    Content-Length is enough; a chunked body is cut off while it streams in)."""
    declared = request.content_length
    if declared is not None:
        if declared > limit:
            raise Rejected("too_large", f"the body exceeds {limit} bytes")
        # aiohttp stops a body at its declared length: one read, nothing to count.
        try:
            return await request.content.readexactly(declared) if declared else b""
        except asyncio.IncompleteReadError as err:
            raise Rejected("malformed", "the body is shorter than its Content-Length") from err
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise Rejected("too_large", f"the body exceeds {limit} bytes")
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class BusPublisher:
    """The durable publish of one envelope (``bus.publish``: ``Nats-Msg-Id = event_id``,
    trace context, PubAck awaited), refused at once while the bus is unreachable."""

    def __init__(self, broker: NatsBroker) -> None:
        self.broker = broker

    def connected(self) -> bool:
        try:
            return bool(self.broker.connection.is_connected)
        except Exception:
            return False  # never connected yet

    async def publish(self, envelope: WebhookReceived, *, ack_timeout: float) -> bool:
        """True when JetStream answered that it already holds the id (a provider retry
        inside the dedupe window): stored either way."""
        if not self.connected():
            # While the client reconnects a publish would only sit in its buffer until the
            # timeout: refuse at once so the provider's retry comes (and dedupes) later.
            raise Rejected("bus_unavailable", "the event bus is unavailable; retry later")
        subject = envelope.subject
        try:
            return await bus.publish(
                self.broker, subject, envelope, msg_id=envelope.event_id, ack_timeout=ack_timeout
            )
        except Exception as err:
            # Timeout, connection lost mid-request, no JetStream responder: each means the
            # event may not be stored. The retry carries the same id: never stored twice.
            log.warning(
                "webhook publish failed: %s",
                type(err).__name__,
                extra={"subject": subject, "event_id": envelope.event_id},
            )
            raise Rejected("bus_unavailable", "the event bus is unavailable; retry later") from err
