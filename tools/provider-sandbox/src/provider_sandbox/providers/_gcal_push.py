"""Calendar push notifications (PROVIDERS.md §5.4): watch channels, and their deliveries
from background tasks: headers only, an empty body, ``sync`` first, retries with backoff
on 500/502/503/504 only, nothing once a channel has expired on the virtual clock."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import aiohttp

from provider_sandbox.core import Sandbox
from provider_sandbox.providers._gcal_config import GcalSettings
from provider_sandbox.providers._gcal_store import Calendar

PROVIDER = "google_calendar"
USER_AGENT = "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)"
RETRYABLE = frozenset({500, 502, 503, 504})


@dataclass(frozen=True)
class Message:
    number: int
    state: str


@dataclass
class Channel:
    id: str
    resource_id: str
    resource_uri: str
    token: str | None
    expiration_ms: int
    expiration_set: bool
    address: str
    account_id: str
    client_id: str
    calendar: Calendar
    message_number: int = 0
    stopped: bool = False
    lane: deque[Message] = field(default_factory=deque)
    draining: bool = False

    def resource(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "api#channel",
            "id": self.id,
            "resourceId": self.resource_id,
            "resourceUri": self.resource_uri,
        }
        if self.token is not None:
            body["token"] = self.token
        body["expiration"] = self.expiration_ms
        return body

    def headers(self, message: Message) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json; utf-8",
            "User-Agent": USER_AGENT,
            "X-Goog-Channel-ID": self.id,
        }
        if self.token is not None:
            headers["X-Goog-Channel-Token"] = self.token
        if self.expiration_set:
            moment = datetime.fromtimestamp(self.expiration_ms / 1000, UTC)
            headers["X-Goog-Channel-Expiration"] = format_datetime(moment, usegmt=True)
        headers.update(
            {
                "X-Goog-Resource-ID": self.resource_id,
                "X-Goog-Resource-URI": self.resource_uri,
                "X-Goog-Resource-State": message.state,
                "X-Goog-Message-Number": str(message.number),
            }
        )
        return headers


class Pusher:
    def __init__(self, sandbox: Sandbox, settings: GcalSettings) -> None:
        self.sandbox = sandbox
        self.settings = settings
        self.channels: dict[str, Channel] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.session: aiohttp.ClientSession | None = None

    async def start(self, _app: Any) -> None:
        self.session = aiohttp.ClientSession()

    async def close(self, _app: Any) -> None:
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()
            self.session = None

    def reset(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        self.tasks.clear()
        self.channels.clear()

    # -- channel registry ---------------------------------------------------------------

    def now_ms(self) -> int:
        return int(self.sandbox.clock.time() * 1000)

    def alive(self, channel: Channel) -> bool:
        return not channel.stopped and self.now_ms() < channel.expiration_ms

    def live(self) -> list[Channel]:
        for channel in list(self.channels.values()):
            if not self.alive(channel):
                self._forget(channel)
        return list(self.channels.values())

    def get(self, channel_id: str) -> Channel | None:
        channel = self.channels.get(channel_id)
        if channel is not None and not self.alive(channel):
            self._forget(channel)
            return None
        return channel

    def open(self, channel: Channel) -> Message:
        """Register a channel; its ``sync`` message (number 1) is returned for the caller
        to send before or after answering the watch call."""
        self.channels[channel.id] = channel
        channel.calendar.channels.add(channel.id)
        channel.message_number = 1
        return Message(1, "sync")

    def stop(self, channel: Channel) -> None:
        channel.stopped = True
        self._forget(channel)

    def _forget(self, channel: Channel) -> None:
        if self.channels.get(channel.id) is channel:
            del self.channels[channel.id]
            channel.calendar.channels.discard(channel.id)

    def notify(self, cal: Calendar) -> None:
        """An ``exists`` message to every live channel on the calendar."""
        for channel_id in list(cal.channels):
            channel = self.get(channel_id)
            if channel is None:
                cal.channels.discard(channel_id)
                continue
            # Numbers grow with gaps: Google never promises consecutive ones.
            channel.message_number += 1 + self.sandbox.rng.randrange(1, 4)
            self.enqueue(channel, Message(channel.message_number, "exists"))

    # -- delivery -----------------------------------------------------------------------

    def enqueue(self, channel: Channel, message: Message) -> None:
        channel.lane.append(message)
        if not channel.draining:
            channel.draining = True
            self._spawn(self._drain(channel))

    async def send_now(self, channel: Channel, message: Message) -> None:
        await self._attempt(channel, message, 1)

    def _spawn(self, work: Any) -> None:
        try:
            task = asyncio.get_running_loop().create_task(work)
        except RuntimeError:
            work.close()
            return
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _drain(self, channel: Channel) -> None:
        try:
            while channel.lane:
                await self._attempt(channel, channel.lane.popleft(), 1)
        finally:
            channel.draining = False

    def _deliverable(self, channel: Channel) -> bool:
        if self.now_ms() >= channel.expiration_ms:
            return False
        return not channel.stopped or self.settings.trickle_after_stop

    async def _attempt(self, channel: Channel, message: Message, attempt: int) -> None:
        if not self._deliverable(channel):
            return
        fault = self.sandbox.faults.pick(PROVIDER, "webhook")
        if fault is not None:
            delay = fault.latency_ms + self.sandbox.rng.random() * fault.latency_jitter_ms
            if delay > 0:
                await asyncio.sleep(delay / 1000)
            if fault.drop:
                self.sandbox.stats.webhook(PROVIDER, "dropped")
                return
        rate = self.settings.push_drop_rate
        if rate and self.sandbox.rng.random() < rate:
            self.sandbox.stats.webhook(PROVIDER, "dropped")
            return
        status = await self._post(channel, message)
        self.sandbox.stats.webhook(PROVIDER, f"status_{status}" if status else "error")
        if (status is None or status in RETRYABLE) and attempt < self.settings.push_max_attempts:
            self._spawn(self._retry(channel, message, attempt + 1))

    async def _retry(self, channel: Channel, message: Message, attempt: int) -> None:
        await asyncio.sleep(self.settings.push_retry_base_seconds * 2 ** (attempt - 2))
        await self._attempt(channel, message, attempt)

    async def _post(self, channel: Channel, message: Message) -> int | None:
        if self.session is None:
            self.session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=self.settings.push_timeout_seconds)
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
            async with self.session.post(
                channel.address, data=b"", headers=channel.headers(message), timeout=timeout
            ) as resp:
                await resp.read()
                return resp.status
        return None
