"""Push channels end to end on the sandbox's virtual clock: calendar-sync in this process,
the webhook-gateway in front of it, Google's pushes delivered by the sandbox to the
gateway's route. Created on connect with their own id and secret token; renewed when they
expire within the margin (new one watched, old one stopped); three failed renewals
disable push and polling takes over, with ``calendar.push.disabled``; the gateway takes
the genuine token and refuses a forged one; revoking stops it all, reconnecting restores."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from provider_sandbox.core import FaultRule
from syncplane_common import subjects
from syncplane_devstack.embedded import EmbeddedNats
from webhook_gateway.webhooks import GCAL_PATH

from tests.integration import token_harness
from tests.integration.calendar_harness import Service, eventually, sandbox_server, service
from tests.integration.gateway_harness import Harness, running_gateway

pytestmark = pytest.mark.integration

ANN, BOB = "ann@example.com", "bob@example.com"
U1, U2 = "u-1", "u-2"
HOUR, DAY = 3600.0, 86400.0
WATCH = "POST /calendars/{calendarId}/events/watch"
STOP = "POST /channels/stop"


@dataclass
class World:
    svc: Service
    gateway: Harness

    async def push(self, channel_id: str, token: str | None, number: int) -> int:
        """A push as Google would send it for ``channel_id``; the gateway's status."""
        row = await self.svc.admin.fetchrow(
            "SELECT resource_id FROM calendar.calendars WHERE channel_id = $1", channel_id
        )
        headers = {
            "X-Goog-Channel-ID": channel_id,
            "X-Goog-Message-Number": str(number),
            "X-Goog-Resource-ID": row["resource_id"] if row else "unknown",
            "X-Goog-Resource-State": "exists",
            "Content-Type": "application/json; utf-8",
        }
        if token is not None:
            headers["X-Goog-Channel-Token"] = token
        resp = await self.gateway.client.post(GCAL_PATH, headers=headers)
        return resp.status

    async def opened(self) -> int:
        """Channels watched so far (the audit's count; a 401 retried is one watch)."""
        count: int = await self.svc.admin.fetchval(
            "SELECT count(*) FROM calendar.audit WHERE action = 'watch' AND outcome = 'opened'"
        )
        return count

    def listings(self) -> int:
        """Pages listed by the engine (a 401 retried with a fresh token is one)."""
        return self.svc.app.require().stats.list_calls

    async def kv(self, channel_id: str) -> dict[str, Any] | None:
        bucket = await self.svc.js.key_value("gcal_channels")
        try:
            entry = await bucket.get(channel_id)
        except Exception:
            return None
        return json.loads(entry.value) if entry.value else None

    async def edit_on_google(self, hint: str, title: str) -> dict[str, Any]:
        added: dict[str, Any] = await self.svc.google.add(
            hint,
            {
                "summary": title,
                "start": {"dateTime": "2030-06-01T09:00:00Z"},
                "end": {"dateTime": "2030-06-01T09:30:00Z"},
            },
        )
        return added

    async def remote_changed(self, google_id: str) -> dict[str, Any]:
        found: dict[str, Any] = await self.svc.events.wait(
            subjects.CALENDAR_REMOTE_CHANGED,
            lambda b: b["google_event_id"] == google_id,
            within=15,
        )
        return found


@pytest.fixture
async def w(nats_server: EmbeddedNats, database_url: str) -> AsyncIterator[World]:
    async with (
        sandbox_server() as sandbox,
        token_harness.fresh_streams(nats_server.url),
        # No channel cache: what the gateway answers follows the KV at once (its cache
        # has its own tests in test_gateway_webhooks).
        running_gateway(nats_server.url, channel_cache_seconds=0.0) as gateway,
        service(
            nats_server.url,
            database_url,
            webhook_url=gateway.base_url + GCAL_PATH,
            sandbox=sandbox,
            fresh_streams=False,
        ) as svc,
    ):
        yield World(svc, gateway)


async def test_channels_on_connect_and_the_gateway_verifies_their_tokens(w: World) -> None:
    svc = w.svc
    await svc.connect(U1, ANN)
    await svc.connect(U2, BOB)
    ann, bob = await svc.calendar(U1), await svc.calendar(U2)
    channels = {c["id"]: c for c in await svc.channels()}
    assert set(channels) == {ann["channel_id"], bob["channel_id"]}
    assert ann["channel_token"] != bob["channel_token"]
    assert len(ann["channel_token"]) >= 32
    assert channels[ann["channel_id"]]["token"] == ann["channel_token"]
    assert channels[ann["channel_id"]]["address"] == w.gateway.base_url + GCAL_PATH
    assert (ann["push_enabled"], ann["channel_expires_at"] is not None) == (True, True)
    registered = await w.kv(ann["channel_id"])
    assert registered is not None
    assert (registered["token"], registered["user_id"]) == (ann["channel_token"], U1)

    # Google pushes a change through the gateway: the genuine token is accepted.
    added = await w.edit_on_google(ANN, "Dentist")
    changed = await w.remote_changed(added["id"])
    assert (changed["user_id"], changed["event"]["title"]) == (U1, "Dentist")

    # A forged token, another user's token, or none: refused, nothing reaches the bus.
    stream = await svc.js.stream_info("WEBHOOKS")
    before = stream.state.messages
    assert await w.push(ann["channel_id"], "forged-" + ann["channel_token"][7:], 900) == 401
    assert await w.push(ann["channel_id"], bob["channel_token"], 901) == 401
    assert await w.push(ann["channel_id"], None, 902) == 401
    assert await w.push("no-such-channel", ann["channel_token"], 903) == 403
    assert (await svc.js.stream_info("WEBHOOKS")).state.messages == before
    assert await w.push(ann["channel_id"], ann["channel_token"], 904) == 200
    assert (await svc.js.stream_info("WEBHOOKS")).state.messages == before + 1


async def test_a_channel_is_renewed_when_it_expires_within_a_day(w: World) -> None:
    svc = w.svc
    await svc.connect(U1, ANN)
    first = await svc.calendar(U1)
    svc.advance(5 * DAY)  # expires in 2 days: nothing to do yet
    await svc.app.maintain()
    assert (await svc.calendar(U1))["channel_id"] == first["channel_id"]
    assert await w.opened() == 1

    svc.advance(1.5 * DAY)  # 12 hours left
    await svc.app.maintain()
    renewed = await svc.calendar(U1)
    assert renewed["channel_id"] != first["channel_id"]
    assert renewed["channel_token"] != first["channel_token"]
    assert renewed["channel_expires_at"] > first["channel_expires_at"]
    assert [c["id"] for c in await svc.channels()] == [renewed["channel_id"]]
    assert (await w.opened(), svc.calls(STOP)) == (2, 1)
    assert await w.kv(first["channel_id"]) is None
    assert await w.kv(renewed["channel_id"]) is not None
    # The old channel's token no longer opens the door; the new channel carries pushes.
    assert await w.push(first["channel_id"], first["channel_token"], 50) == 403
    added = await w.edit_on_google(ANN, "After renewal")
    await w.remote_changed(added["id"])


async def test_three_failed_renewals_disable_push_and_polling_takes_over(w: World) -> None:
    svc = w.svc
    await svc.connect(U1, ANN)
    first = await svc.calendar(U1)
    svc.sandbox.faults.add(FaultRule(provider="google_calendar", endpoint=WATCH, status=503))
    svc.advance(6.5 * DAY)
    for attempt in (1, 2):
        await svc.app.maintain()
        row = await svc.calendar(U1)
        assert (row["renew_failures"], row["push_enabled"]) == (attempt, True)
        assert svc.events.of(subjects.CALENDAR_PUSH_DISABLED) == []
        svc.advance(60)
    await svc.app.maintain()
    row = await svc.calendar(U1)
    assert (row["renew_failures"], row["push_enabled"]) == (3, False)
    disabled = await svc.events.wait(subjects.CALENDAR_PUSH_DISABLED, lambda b: True)
    assert (disabled["user_id"], disabled["calendar_id"]) == (U1, "primary")
    assert "3 times" in disabled["reason"]
    svc.sandbox.faults.clear()
    # No more attempts at watching a disabled calendar.
    svc.advance(60)
    await svc.app.maintain()
    assert svc.calls(WATCH) == 4

    # The old channel expires; Google changes arrive by polling instead.
    svc.advance(DAY)
    assert first["channel_id"] not in [c["id"] for c in await svc.channels()]
    added = await w.edit_on_google(ANN, "Polled")
    lists = w.listings()
    svc.advance(301)
    await svc.app.maintain()
    await w.remote_changed(added["id"])
    assert w.listings() == lists + 1
    # Within the poll interval nothing is listed again.
    svc.advance(60)
    await svc.app.maintain()
    assert w.listings() == lists + 1


async def test_revoke_stops_sync_and_reconnect_restores_it(w: World) -> None:
    svc = w.svc
    await svc.connect(U1, ANN)
    before = await svc.calendar(U1)
    await svc.revoke(U1)
    row = await svc.calendar(U1)
    assert (row["sync_enabled"], row["channel_id"], row["channel_token"]) == (False, None, None)
    assert await w.kv(before["channel_id"]) is None

    # The grant is gone, so the channel could not be stopped and Google still pushes on
    # it: without its KV entry the gateway refuses it.
    lists = w.listings()
    added = await w.edit_on_google(ANN, "While revoked")
    stats = svc.sandbox.stats
    await eventually(lambda: stats.webhooks.get("google_calendar", Counter())["status_403"] == 1)
    assert before["channel_id"] in [c["id"] for c in await svc.channels()]
    assert await w.push(before["channel_id"], before["channel_token"], 10**6) == 403
    svc.advance(2 * HOUR)
    await svc.app.maintain()  # no polling of a disabled calendar
    await svc.app.require().sync_calendar(U1, "primary")
    await svc.settled("WEBHOOKS", "calendar-sync-webhooks")
    assert w.listings() == lists
    assert svc.events.of(subjects.CALENDAR_REMOTE_CHANGED) == []

    await svc.connect(U1, ANN)
    restored = await svc.calendar(U1)
    assert (restored["sync_enabled"], restored["push_enabled"]) == (True, True)
    assert restored["channel_id"] not in (None, before["channel_id"])
    assert await w.kv(restored["channel_id"]) is not None
    # What changed while revoked arrives with the reconnect's sync.
    await w.remote_changed(added["id"])
