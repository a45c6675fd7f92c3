"""WHOOP webhook delivery (PROVIDERS.md §7.4, §7.5): each event POSTed to every configured
URL, signed with the app's client secret over the millisecond timestamp immediately followed
by the raw body; failures retried at offsets from the first attempt on the virtual clock."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import heapq
import hmac
import json
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp

from provider_sandbox.core import Sandbox
from provider_sandbox.providers._whoop_records import Event
from provider_sandbox.providers._whoop_settings import WhoopSettings

PROVIDER = "whoop"
SIGNATURE = "X-WHOOP-Signature"
TIMESTAMP = "X-WHOOP-Signature-Timestamp"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """base64(HMAC-SHA256(secret, timestamp + body)): no separator between the two."""
    mac = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


@dataclass
class Delivery:
    url: str
    body: bytes
    payload: dict[str, Any]
    user_id: int
    first_at: float
    attempts: int = 0


class WebhookSender:
    def __init__(
        self,
        sandbox: Sandbox,
        secret: str,
        settings: WhoopSettings,
        is_connected: Callable[[int], bool],
    ) -> None:
        self.sandbox = sandbox
        self.secret = secret
        self.settings = settings
        self.is_connected = is_connected
        self.session: aiohttp.ClientSession | None = None
        self.retries: list[tuple[float, int, Delivery]] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.log: deque[dict[str, Any]] = deque(maxlen=1000)
        self.sequence = 0

    def reset(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.tasks.clear()
        self.retries.clear()
        self.log.clear()

    async def close(self) -> None:
        self.reset()
        if self.session is not None:
            await self.session.close()
            self.session = None

    @property
    def pending(self) -> int:
        return len(self.retries) + len(self.tasks)

    def emit(self, events: Iterable[Event]) -> list[dict[str, Any]]:
        """Send each event to every URL; a user who revoked access gets none (§7.1)."""
        sent: list[dict[str, Any]] = []
        urls = self.settings.webhook_urls
        rng = self.sandbox.rng
        for event in events:
            if not urls or not self.is_connected(event.user_id):
                continue
            payload = {
                "user_id": event.user_id,
                "id": event.id,
                "type": event.type,
                "trace_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            }
            body = json.dumps(payload, separators=(",", ":")).encode()
            rate = self.settings.webhook_duplicate_rate
            copies = 2 if rate > 0 and rng.random() < rate else 1
            now = self.sandbox.clock.time()
            for url in urls:
                for _ in range(copies):
                    self._start(Delivery(url, body, payload, event.user_id, now))
            sent.append(payload)
        return sent

    def run_due(self, now: float) -> None:
        while self.retries and self.retries[0][0] <= now:
            _, _, delivery = heapq.heappop(self.retries)
            self._start(delivery)

    def _start(self, delivery: Delivery) -> None:
        task = asyncio.get_running_loop().create_task(self._attempt(delivery))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _draw(self, rate: float) -> bool:
        return rate > 0 and self.sandbox.rng.random() < rate

    async def _attempt(self, delivery: Delivery) -> None:
        delivery.attempts += 1
        if not self.is_connected(delivery.user_id):
            self._record(delivery, "revoked")
            return
        rule = self.sandbox.faults.pick(PROVIDER, "webhook")
        if rule is not None:
            delay = rule.latency_ms + self.sandbox.rng.random() * rule.latency_jitter_ms
            if delay > 0:
                await asyncio.sleep(delay / 1000)
            if rule.drop:
                # A dropped event is simply missed, as WHOOP warns may happen (§7.4).
                self._record(delivery, "dropped")
                return
        stamp = int(self.sandbox.clock.time() * 1000)
        if self._draw(self.settings.webhook_stale_timestamp_rate):
            stamp -= int(self.settings.webhook_stale_seconds * 1000)
        key = self.secret
        if self._draw(self.settings.webhook_bad_signature_rate):
            key = self.secret + "-not-the-secret"
        headers = {
            "Content-Type": "application/json",
            SIGNATURE: signature(key, str(stamp), delivery.body),
            TIMESTAMP: str(stamp),
        }
        outcome = await self._post(delivery, headers)
        self.sandbox.stats.webhook(PROVIDER, "sent")
        self._record(delivery, outcome, stamp)
        if outcome.startswith("status_2"):
            return
        offsets = self.settings.webhook_retry_offsets
        if delivery.attempts <= len(offsets):
            due = delivery.first_at + offsets[delivery.attempts - 1]
            self.sequence += 1
            heapq.heappush(self.retries, (due, self.sequence, delivery))

    async def _post(self, delivery: Delivery, headers: dict[str, str]) -> str:
        if self.session is None or self.session.closed:
            self.session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=self.settings.webhook_timeout_seconds)
        try:
            async with self.session.post(
                delivery.url, data=delivery.body, headers=headers, timeout=timeout
            ) as response:
                await response.read()
                return f"status_{response.status}"
        except TimeoutError:
            return "timeout"
        except (aiohttp.ClientError, OSError, ValueError):
            return "error"

    def _record(self, delivery: Delivery, outcome: str, stamp: int | None = None) -> None:
        self.sandbox.stats.webhook(PROVIDER, outcome)
        self.log.append(
            {
                "url": delivery.url,
                "attempt": delivery.attempts,
                "outcome": outcome,
                "timestamp": stamp,
                "event": delivery.payload,
            }
        )
