"""GET /api/v1/users/{user_id}/sync/events: a user's sync progress as server-sent events.

One ephemeral ordered JetStream consumer per gateway process (deliver new, on
``sync.progress.>``, ``sync.completed.>``, ``sync.failed.>``) fans out to every open
stream by the ``user_id`` in the event body — the subjects do not carry it — so each
event is parsed once, however many apps are watching. The consumer exists only while
someone listens. A client too slow to keep up (its queue full) is disconnected rather
than allowed to hold the others back; it reconnects and reads status to catch up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field

from aiohttp import web
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from syncplane_common import subjects

from webhook_gateway._api_models import UserPath
from webhook_gateway.context import Gateway
from webhook_gateway.routes import Call, bus_errors

log = logging.getLogger(__name__)

# Every sync.* subject of the EVENTS stream (sync.requested.* lives in SYNC, not here).
FILTER = "sync.>"
EVENT_NAMES = {"progress", "completed", "failed"}
QUEUE_SIZE = 256


@dataclass
class EventsOptions:
    # Proxies close idle connections (often after 30-60 s); a comment keeps it open and
    # is how a vanished client is noticed (the write fails).
    heartbeat_seconds: float = 15.0


EVENTS_OPTIONS = web.AppKey("events_options", EventsOptions)


@dataclass(frozen=True)
class Item:
    name: str
    sequence: int
    data: bytes


_CLOSE = Item("", 0, b"")


@dataclass
class ProgressHub:
    gateway: Gateway
    # Keyed by user; None: the admin console, which watches every user.
    listeners: dict[str | None, set[asyncio.Queue[Item]]] = field(default_factory=dict)
    _sub: JetStreamContext.PushSubscription | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def count(self) -> int:
        return sum(len(qs) for qs in self.listeners.values())

    async def join(self, user_id: str | None) -> asyncio.Queue[Item]:
        async with self._lock:
            if self._sub is None:
                with bus_errors("sync progress stream"):
                    self._sub = await self.gateway.runtime.jetstream().subscribe(
                        FILTER,
                        stream=subjects.EVENTS.name,
                        ordered_consumer=True,
                        deliver_policy=DeliverPolicy.NEW,
                        cb=self._deliver,
                    )
            queue: asyncio.Queue[Item] = asyncio.Queue(QUEUE_SIZE)
            self.listeners.setdefault(user_id, set()).add(queue)
            return queue

    async def leave(self, user_id: str | None, queue: asyncio.Queue[Item]) -> None:
        async with self._lock:
            queues = self.listeners.get(user_id, set())
            queues.discard(queue)
            if not queues:
                self.listeners.pop(user_id, None)
            if not self.listeners and self._sub is not None:
                sub, self._sub = self._sub, None
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    async def _deliver(self, msg: Msg) -> None:
        name = msg.subject.split(".")[1] if msg.subject.count(".") >= 2 else ""
        if name not in EVENT_NAMES:
            return
        try:
            user_id = json.loads(msg.data).get("user_id")
        except (ValueError, AttributeError):
            user_id = None
        if not isinstance(user_id, str):
            log.warning("event without a user on %s", msg.subject)
            return
        item = Item(name, msg.metadata.sequence.stream, msg.data)
        for queue in [*self.listeners.get(user_id, ()), *self.listeners.get(None, ())]:
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:
                _close(queue)

    async def close(self, _: web.Application | None = None) -> None:
        """Shutdown: end every open stream so the HTTP server can stop."""
        for queues in list(self.listeners.values()):
            for queue in queues:
                _close(queue)


def _close(queue: asyncio.Queue[Item]) -> None:
    # Make room so the close marker always fits, even in a full queue.
    with contextlib.suppress(asyncio.QueueEmpty):
        while queue.full():
            queue.get_nowait()
    queue.put_nowait(_CLOSE)


HUB = web.AppKey("progress_hub", ProgressHub)


def _frame(item: Item) -> bytes:
    # The body is one line of JSON (our contracts serialize compactly), so one data: line.
    data = item.data.replace(b"\r", b"").replace(b"\n", b" ")
    return b"event: %s\nid: %d\ndata: %s\n\n" % (item.name.encode(), item.sequence, data)


async def sync_events(call: Call) -> web.StreamResponse:
    return await stream_events(call.request, call.path(UserPath).user_id)


async def stream_events(request: web.Request, user_id: str | None) -> web.StreamResponse:
    """The SSE response for one user's events, or every user's (``None``, the console)."""
    hub, options = request.app[HUB], request.app[EVENTS_OPTIONS]
    queue = await hub.join(user_id)  # 503 here if NATS is down: nothing sent yet
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
        }
    )
    try:
        await response.prepare(request)
        await response.write(b": connected\nretry: 3000\n\n")
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), options.heartbeat_seconds)
            except TimeoutError:
                await response.write(b": heartbeat\n\n")
                continue
            if item is _CLOSE:
                break
            await response.write(_frame(item))
    except ConnectionResetError:
        pass  # the client went away
    finally:
        await hub.leave(user_id, queue)
    return response


def setup(gateway: Gateway) -> None:
    app = gateway.app
    if EVENTS_OPTIONS not in app:
        app[EVENTS_OPTIONS] = EventsOptions()
    hub = ProgressHub(gateway)
    app[HUB] = hub
    app.on_shutdown.append(hub.close)
