"""Strava's push subscription and event delivery (PROVIDERS.md §3.4): the synchronous
validation GET, JSON event POSTs with no signature, 3 attempts with a 2 s timeout each."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from provider_sandbox.core import Sandbox
from provider_sandbox.providers._strava_common import PROVIDER, Settings
from provider_sandbox.providers._strava_render import iso_z

ATTEMPTS = 3
MAX_CONCURRENT_DELIVERIES = 64

ScopesOf = Callable[[int], frozenset[str] | None]


@dataclass
class Subscription:
    id: int
    callback_url: str
    verify_token: str
    created_at: int

    def view(self, application_id: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "resource_state": 2,
            "application_id": int(application_id) if application_id.isdigit() else application_id,
            "callback_url": self.callback_url,
            "created_at": iso_z(self.created_at),
            "updated_at": iso_z(self.created_at),
        }


def activity_event(
    scopes: frozenset[str] | None,
    aspect: str,
    private_before: bool,
    private_after: bool,
    updates: Mapping[str, str],
    *,
    private_switch_as_delete: bool = False,
) -> tuple[str, dict[str, str]] | None:
    """Which event (aspect, updates), if any, an activity change produces for an athlete
    who granted ``scopes`` (None: no restriction). Strava only tells an app about what
    its scopes let it read: "Only Me" activities and privacy changes need read_all."""
    if scopes is not None and not scopes & {"activity:read", "activity:read_all"}:
        return None
    read_all = scopes is None or "activity:read_all" in scopes
    if aspect in ("create", "delete"):
        return (aspect, {}) if read_all or not private_after else None
    if read_all:
        return ("update", dict(updates)) if updates else None
    if private_after:
        if not private_before and private_switch_as_delete:
            return ("delete", {})
        return None
    visible = {k: v for k, v in updates.items() if k != "private"}
    return ("update", visible) if visible else None


class Webhooks:
    def __init__(self, sandbox: Sandbox, settings: Settings, scopes_of: ScopesOf) -> None:
        self.sandbox = sandbox
        self.settings = settings
        self.scopes_of = scopes_of
        self.subscription: Subscription | None = None
        self.next_id = 1
        self.lock = asyncio.Lock()
        self.session: aiohttp.ClientSession | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.log: deque[dict[str, Any]] = deque(maxlen=1000)
        self.gate = asyncio.Semaphore(MAX_CONCURRENT_DELIVERIES)

    def reset(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.tasks.clear()
        self.subscription = None
        self.next_id = 1
        self.log.clear()

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def idle(self) -> None:
        """Wait until every scheduled delivery has finished (tests, demo scripts)."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    def _client(self) -> aiohttp.ClientSession:
        if self.session is None or self.session.closed:
            self.session = aiohttp.ClientSession()
        return self.session

    async def validate(self, callback_url: str, verify_token: str) -> bool:
        challenge = self.sandbox.tokens.new_secret(32)
        params = {
            "hub.mode": "subscribe",
            "hub.challenge": challenge,
            "hub.verify_token": verify_token,
        }
        timeout = aiohttp.ClientTimeout(total=self.settings.validation_timeout_seconds)
        try:
            async with self._client().get(
                callback_url, params=params, timeout=timeout, allow_redirects=False
            ) as response:
                body = await response.json(content_type=None) if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError):
            body = None
        ok = isinstance(body, dict) and body.get("hub.challenge") == challenge
        self.sandbox.stats.webhook(PROVIDER, "validation_ok" if ok else "validation_failed")
        return ok

    def subscribe(self, callback_url: str, verify_token: str) -> Subscription:
        subscription = Subscription(
            self.next_id, callback_url, verify_token, int(self.sandbox.clock.time())
        )
        self.next_id += 1
        self.subscription = subscription
        return subscription

    def emit_activity(
        self,
        activity_id: int,
        owner_id: int,
        aspect: str,
        private_before: bool,
        private_after: bool,
        updates: Mapping[str, str] | None = None,
    ) -> None:
        if self.subscription is None:
            return
        scopes = self.scopes_of(owner_id)
        if scopes is None and self.settings.events_require_authorization:
            return  # Strava only sends events for athletes who authorized the app
        decided = activity_event(
            scopes,
            aspect,
            private_before,
            private_after,
            updates or {},
            private_switch_as_delete=self.settings.private_switch_as_delete,
        )
        if decided is not None:
            self._emit("activity", activity_id, decided[0], decided[1], owner_id)

    def emit_deauthorized(self, athlete_id: int) -> None:
        if self.subscription is not None:
            self._emit("athlete", athlete_id, "update", {"authorized": "false"}, athlete_id)

    def _emit(
        self, object_type: str, object_id: int, aspect: str, updates: dict[str, str], owner: int
    ) -> None:
        assert self.subscription is not None
        event = {
            "aspect_type": aspect,
            "event_time": int(self.sandbox.clock.time()),
            "object_id": object_id,
            "object_type": object_type,
            "owner_id": owner,
            "subscription_id": self.subscription.id,
            "updates": updates,
        }
        copies = 2 if self.sandbox.rng.random() < self.settings.duplicate_rate else 1
        for copy in range(copies):
            task = asyncio.get_running_loop().create_task(self._deliver(event, copy > 0))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _deliver(self, event: dict[str, Any], duplicate: bool) -> None:
        stats = self.sandbox.stats
        record: dict[str, Any] = {"event": event, "duplicate": duplicate, "attempts": []}
        self.log.append(record)
        if duplicate:
            stats.webhook(PROVIDER, "duplicate")
        rule = self.sandbox.faults.pick(PROVIDER, "webhook")
        if rule is not None and rule.drop:
            stats.webhook(PROVIDER, "dropped")
            record["attempts"].append("dropped")
            return
        if rule is not None:
            delay = rule.latency_ms + self.sandbox.rng.random() * rule.latency_jitter_ms
            await asyncio.sleep(delay / 1000)
        subscription_id = event["subscription_id"]
        for attempt in range(ATTEMPTS):
            if attempt:
                await asyncio.sleep(self.settings.retry_gap_seconds)
            subscription = self.subscription
            if subscription is None or subscription.id != subscription_id:
                return  # deleted meanwhile: Strava stops sending to it
            async with self.gate:
                outcome = await self._post(subscription.callback_url, event)
            stats.webhook(PROVIDER, "sent")
            stats.webhook(PROVIDER, outcome)
            record["attempts"].append(outcome)
            if outcome == "status_200":
                return
        stats.webhook(PROVIDER, "gave_up")

    async def _post(self, url: str, event: dict[str, Any]) -> str:
        # Only a 200 counts as delivered (S-hook: "respond with 200 OK within 2 seconds").
        timeout = aiohttp.ClientTimeout(total=self.settings.delivery_timeout_seconds)
        try:
            async with self._client().post(
                url, json=event, timeout=timeout, allow_redirects=False
            ) as response:
                await response.read()
                return f"status_{response.status}"
        except TimeoutError:
            return "timeout"
        except aiohttp.ClientError:
            return "error"
