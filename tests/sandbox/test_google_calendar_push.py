"""Calendar watch channels and push notifications (PROVIDERS.md §5.4, §5.5), received by
a real loopback HTTP server: headers, ordering, expiry on the virtual clock, stop, retries,
webhook faults, and the watch/stop/notification contracts."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from provider_sandbox.config import SandboxConfig
from provider_sandbox.core import Sandbox
from provider_sandbox.providers import Part
from provider_sandbox.providers.google_calendar import GoogleCalendar

from tests.sandbox.conftest import Client
from tests.sandbox.test_google_calendar import (
    API,
    CONTROL,
    ONE_HOUR,
    google_error,
    insert,
    payload,
    shape_mismatches,
    sign_in,
)

pytestmark = pytest.mark.service

WATCH = f"{API}/calendars/primary/events/watch"
STOP = f"{API}/channels/stop"
USER_AGENT = "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)"


class Receiver:
    """A webhook endpoint that records each delivery and answers scripted statuses."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[dict[str, str], bytes]] = asyncio.Queue()
        self.statuses: list[int] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.put_nowait((dict(request.headers), await request.read()))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    async def next(self) -> dict[str, str]:
        headers, body = await asyncio.wait_for(self.received.get(), 5)
        assert body == b""
        return headers

    def drained(self) -> list[dict[str, str]]:
        out = []
        while not self.received.empty():
            out.append(self.received.get_nowait()[0])
        return out


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    hook.url = str(server.make_url("/hook"))
    yield hook
    await server.close()


def calendar_part(parts: dict[str, Part]) -> GoogleCalendar:
    return cast(GoogleCalendar, parts["google_calendar"])


async def settle(parts: dict[str, Part]) -> None:
    """Wait until every delivery (retries included) has run."""
    pusher = calendar_part(parts).pusher
    while pusher.tasks:
        await asyncio.gather(*list(pusher.tasks), return_exceptions=True)


async def watch(
    client: Client, headers: dict[str, str], body: dict[str, Any], url: str = WATCH
) -> dict[str, Any]:
    resp = await client.post(url, json=body, headers=headers)
    assert resp.status == 200, await resp.text()
    channel: dict[str, Any] = await resp.json()
    return channel


def in_ms(sandbox: Sandbox, seconds: float) -> int:
    return int((sandbox.clock.time() + seconds) * 1000)


async def test_sync_first_then_exists_with_exact_headers_and_growing_numbers(
    client: Client,
    sandbox: Sandbox,
    config: SandboxConfig,
    receiver: Receiver,
    parts: dict[str, Part],
) -> None:
    user, headers = sign_in(sandbox, config)
    expiration = in_ms(sandbox, 3600)
    channel = await watch(
        client,
        headers,
        {
            "id": "chan-1",
            "type": "web_hook",
            "address": receiver.url,
            "token": "t=1",
            "expiration": expiration,
        },
    )
    assert channel["kind"] == "api#channel"
    assert channel["id"] == "chan-1"
    assert channel["token"] == "t=1"
    assert channel["expiration"] == expiration
    assert channel["resourceUri"].endswith(
        "/google/calendar/v3/calendars/alice@example.com/events?alt=json"
    )
    sync = await receiver.next()
    expected_expiry = format_datetime(datetime.fromtimestamp(expiration / 1000, UTC), usegmt=True)
    assert {k: v for k, v in sync.items() if k.startswith("X-Goog-")} == {
        "X-Goog-Channel-ID": "chan-1",
        "X-Goog-Channel-Token": "t=1",
        "X-Goog-Channel-Expiration": expected_expiry,
        "X-Goog-Resource-ID": channel["resourceId"],
        "X-Goog-Resource-URI": channel["resourceUri"],
        "X-Goog-Resource-State": "sync",
        "X-Goog-Message-Number": "1",
    }
    assert sync["Content-Length"] == "0"
    assert sync["Content-Type"] == "application/json; utf-8"
    assert sync["User-Agent"] == USER_AGENT

    created = await insert(client, headers, {"summary": "a", **ONE_HOUR})
    first = await receiver.next()
    await client.put(
        f"{CONTROL}/users/{user}/calendars/primary/events/{created['id']}",
        json={"summary": "edited in the UI"},
    )
    second = await receiver.next()
    await client.delete(f"{API}/calendars/primary/events/{created['id']}", headers=headers)
    third = await receiver.next()
    numbers = [int(h["X-Goog-Message-Number"]) for h in (sync, first, second, third)]
    assert [h["X-Goog-Resource-State"] for h in (first, second, third)] == ["exists"] * 3
    assert numbers == sorted(set(numbers))
    # Numbers grow, but never promise to be consecutive.
    assert all(b - a > 1 for a, b in itertools.pairwise(numbers))
    await settle(parts)
    stats = await (await client.get("/_sandbox/stats")).json()
    assert stats["webhooks"]["google_calendar"] == {"status_200": 4}


async def test_push_notification_contract(
    client: Client, sandbox: Sandbox, config: SandboxConfig, receiver: Receiver
) -> None:
    _, headers = sign_in(sandbox, config)
    await watch(
        client,
        headers,
        {
            "id": "4ba78bf0-6a47-11e2-bcfd-0800200c9a66",
            "type": "web_hook",
            "address": receiver.url,
            "token": "398348u3tu83ut8uu38",
            "expiration": in_ms(sandbox, 600),
        },
    )
    await receiver.next()
    await insert(client, headers, ONE_HOUR)
    received = await receiver.next()
    example = payload("gcal_push_notification.json")
    assert example["body"] == ""
    assert shape_mismatches(example["headers"], received) == []
    assert received["X-Goog-Resource-State"] == example["headers"]["X-Goog-Resource-State"]
    assert received["Content-Type"] == example["headers"]["Content-Type"]
    assert received["X-Goog-Resource-URI"].endswith("/calendars/alice@example.com/events?alt=json")
    datetime.strptime(received["X-Goog-Channel-Expiration"], "%a, %d %b %Y %H:%M:%S GMT")


async def test_watch_request_example_is_accepted_and_answers_the_response_shape(
    client: Client, sandbox: Sandbox, config: SandboxConfig, parts: dict[str, Part]
) -> None:
    _, headers = sign_in(sandbox, config)
    request = payload("gcal_watch_request.json")
    channel = await watch(client, headers, request)
    assert shape_mismatches(payload("gcal_watch_response.json"), channel) == []
    assert channel["id"] == request["id"]
    assert channel["token"] == request["token"]
    # The example's expiration lies in 2015: the shorter of it and the cap wins, so the
    # channel is born expired and nothing goes out to mydomain.com.
    assert channel["expiration"] == request["expiration"]
    await settle(parts)
    stats = await (await client.get("/_sandbox/stats")).json()
    assert "google_calendar" not in stats["webhooks"]


async def test_channels_stop_contract_owner_only_and_no_push_afterwards(
    client: Client,
    sandbox: Sandbox,
    config: SandboxConfig,
    receiver: Receiver,
    parts: dict[str, Part],
) -> None:
    _, headers = sign_in(sandbox, config)
    _, intruder = sign_in(sandbox, config, "mallory@example.com")
    example = payload("gcal_channels_stop_request.json")
    unknown = await client.post(STOP, json=example, headers=headers)
    assert unknown.status == 404
    entry = google_error(await unknown.json(), 404, "notFound")
    assert entry["message"] == f"Channel '{example['id']}' not found for project 'g'"

    channel = await watch(
        client, headers, {"id": example["id"], "type": "web_hook", "address": receiver.url}
    )
    await receiver.next()
    listed = await (await client.get(f"{CONTROL}/channels")).json()
    assert [c["id"] for c in listed["channels"]] == [example["id"]]
    mine = {"id": example["id"], "resourceId": channel["resourceId"]}
    assert (await client.post(STOP, json=mine, headers=intruder)).status == 404
    wrong_resource = {"id": example["id"], "resourceId": example["resourceId"]}
    assert (await client.post(STOP, json=wrong_resource, headers=headers)).status == 404
    stopped = await client.post(STOP, json=mine, headers=headers)
    assert stopped.status == 204
    assert (await client.post(STOP, json=mine, headers=headers)).status == 404
    assert (await client.post(STOP, data=b"{", headers=headers)).status == 400
    assert (await client.post(STOP, json={"id": "x"}, headers=headers)).status == 400

    await insert(client, headers, ONE_HOUR)
    await settle(parts)
    assert receiver.drained() == []
    listed = await (await client.get(f"{CONTROL}/channels")).json()
    assert listed["channels"] == []
    # A stopped channel's id may be used again.
    await watch(client, headers, {"id": example["id"], "type": "web_hook", "address": receiver.url})


async def test_expiry_on_the_virtual_clock_ends_pushes(
    client: Client,
    sandbox: Sandbox,
    config: SandboxConfig,
    receiver: Receiver,
    parts: dict[str, Part],
) -> None:
    _, headers = sign_in(sandbox, config)
    channel = await watch(
        client,
        headers,
        {"id": "short", "type": "web_hook", "address": receiver.url, "params": {"ttl": "60"}},
    )
    assert abs(channel["expiration"] - in_ms(sandbox, 60)) < 2000
    await receiver.next()
    sandbox.clock.advance(30)
    await insert(client, headers, ONE_HOUR)
    assert (await receiver.next())["X-Goog-Resource-State"] == "exists"
    sandbox.clock.advance(31)
    await insert(client, headers, ONE_HOUR)
    await settle(parts)
    assert receiver.drained() == []
    stop = await client.post(
        STOP, json={"id": "short", "resourceId": channel["resourceId"]}, headers=headers
    )
    assert stop.status == 404


async def test_channel_lifetimes_default_and_cap(
    client: Client, sandbox: Sandbox, config: SandboxConfig, receiver: Receiver
) -> None:
    _, headers = sign_in(sandbox, config)
    default = await watch(
        client, headers, {"id": "default", "type": "web_hook", "address": receiver.url}
    )
    assert abs(default["expiration"] - in_ms(sandbox, 3600)) < 2000
    sync = await receiver.next()
    # No expiration asked for, so none is echoed in the headers.
    assert "X-Goog-Channel-Expiration" not in sync
    assert "X-Goog-Channel-Token" not in sync
    capped = await watch(
        client,
        headers,
        {
            "id": "long",
            "type": "webhook",
            "address": receiver.url,
            "expiration": str(in_ms(sandbox, 30 * 86_400)),
        },
    )
    assert abs(capped["expiration"] - in_ms(sandbox, 7 * 86_400)) < 2000
    await client.post(f"{CONTROL}/config", json={"channel_max_ttl_seconds": 600})
    shorter = await watch(
        client,
        headers,
        {
            "id": "cfg",
            "type": "web_hook",
            "address": receiver.url,
            "expiration": in_ms(sandbox, 3600),
        },
    )
    assert abs(shorter["expiration"] - in_ms(sandbox, 600)) < 2000


async def test_watch_validation(
    client: Client, sandbox: Sandbox, config: SandboxConfig, receiver: Receiver
) -> None:
    _, headers = sign_in(sandbox, config)
    good = {"id": "taken", "type": "web_hook", "address": receiver.url}
    await watch(client, headers, good)
    cases: list[tuple[dict[str, Any], str]] = [
        ({**good, "id": "x" * 65}, "invalid"),
        ({**good, "id": ""}, "required"),
        (good, "channelIdNotUnique"),
        ({**good, "id": "t2", "type": "email"}, "invalid"),
        ({**good, "id": "t3", "address": "http://example.com/hook"}, "push.webhookUrlNotHttps"),
        ({**good, "id": "t4", "address": "ftp://localhost/x"}, "push.webhookUrlNotHttps"),
        ({**good, "id": "t5", "address": None}, "required"),
        ({**good, "id": "t6", "token": "k" * 257}, "invalid"),
        ({**good, "id": "t7", "expiration": "soon"}, "invalid"),
        ({**good, "id": "t8", "params": {"ttl": "forever"}}, "invalid"),
    ]
    for body, reason in cases:
        resp = await client.post(WATCH, json=body, headers=headers)
        assert resp.status == 400, body
        google_error(await resp.json(), 400, reason)
    garbage = await client.post(WATCH, data=b"{", headers=headers)
    assert garbage.status == 400
    https = await client.post(
        WATCH,
        json={
            **good,
            "id": "t9",
            "address": "https://hooks.example.com/gcal",
            "expiration": in_ms(sandbox, -1),
        },
        headers=headers,
    )
    assert https.status == 200


async def test_deliveries_retry_only_on_500_502_503_504(
    client: Client,
    sandbox: Sandbox,
    config: SandboxConfig,
    receiver: Receiver,
    parts: dict[str, Part],
) -> None:
    _, headers = sign_in(sandbox, config)
    await client.post(f"{CONTROL}/config", json={"push_retry_base_seconds": 0.01})
    receiver.statuses = [503, 502, 200]
    await watch(client, headers, {"id": "r", "type": "web_hook", "address": receiver.url})
    attempts = [await receiver.next() for _ in range(3)]
    assert {h["X-Goog-Message-Number"] for h in attempts} == {"1"}
    receiver.statuses = [404]
    await insert(client, headers, ONE_HOUR)
    await settle(parts)
    assert len(receiver.drained()) == 1
    receiver.statuses = [500] * 10
    await insert(client, headers, ONE_HOUR)
    await settle(parts)
    assert len(receiver.drained()) == 5  # push_max_attempts
    stats = await (await client.get("/_sandbox/stats")).json()
    assert stats["webhooks"]["google_calendar"] == {
        "status_503": 1,
        "status_502": 1,
        "status_200": 1,
        "status_404": 1,
        "status_500": 5,
    }


async def test_webhook_faults_drop_and_delay_and_drop_rate(
    client: Client,
    sandbox: Sandbox,
    config: SandboxConfig,
    receiver: Receiver,
    parts: dict[str, Part],
) -> None:
    _, headers = sign_in(sandbox, config)
    await watch(client, headers, {"id": "f", "type": "web_hook", "address": receiver.url})
    await receiver.next()
    await client.post(
        "/_sandbox/faults",
        json={"provider": "google_calendar", "endpoint": "webhook", "drop": True, "count": 1},
    )
    await insert(client, headers, ONE_HOUR)
    await settle(parts)
    assert receiver.drained() == []
    await client.post(
        "/_sandbox/faults",
        json={"provider": "google_calendar", "endpoint": "webhook", "latency_ms": 50, "count": 1},
    )
    await insert(client, headers, ONE_HOUR)
    assert (await receiver.next())["X-Goog-Resource-State"] == "exists"
    await client.post(f"{CONTROL}/config", json={"push_drop_rate": 1.0})
    await insert(client, headers, ONE_HOUR)
    await settle(parts)
    assert receiver.drained() == []
    stats = await (await client.get("/_sandbox/stats")).json()
    assert stats["webhooks"]["google_calendar"] == {"status_200": 2, "dropped": 2}


async def test_sync_can_arrive_before_the_watch_response(
    client: Client, sandbox: Sandbox, config: SandboxConfig, receiver: Receiver
) -> None:
    _, headers = sign_in(sandbox, config)
    await client.post(f"{CONTROL}/config", json={"sync_before_watch_response": True})
    await watch(client, headers, {"id": "early", "type": "web_hook", "address": receiver.url})
    assert receiver.received.qsize() == 1
    assert (await receiver.next())["X-Goog-Resource-State"] == "sync"


async def test_each_channel_hears_only_its_calendar(
    client: Client,
    sandbox: Sandbox,
    config: SandboxConfig,
    receiver: Receiver,
    parts: dict[str, Part],
) -> None:
    user, headers = sign_in(sandbox, config)
    other = await (
        await client.post(f"{CONTROL}/users/{user}/calendars", json={"summary": "Other"})
    ).json()
    await watch(client, headers, {"id": "p", "type": "web_hook", "address": receiver.url})
    await receiver.next()
    await client.post(
        f"{CONTROL}/users/{user}/calendars/{other['id']}/events", json={"generate": 2}
    )
    await settle(parts)
    assert receiver.drained() == []
    await client.post(f"{CONTROL}/users/{user}/calendars/primary/events", json={"generate": 2})
    await settle(parts)
    assert [h["X-Goog-Channel-ID"] for h in receiver.drained()] == ["p", "p"]


async def test_trickle_after_stop_delivers_only_what_was_already_queued(
    client: Client,
    sandbox: Sandbox,
    config: SandboxConfig,
    receiver: Receiver,
    parts: dict[str, Part],
) -> None:
    _, headers = sign_in(sandbox, config)
    pusher = calendar_part(parts).pusher
    for trickle, expected in ((True, 1), (False, 0)):
        await client.post(f"{CONTROL}/config", json={"trickle_after_stop": trickle})
        channel_id = f"trickle-{trickle}"
        await watch(
            client, headers, {"id": channel_id, "type": "web_hook", "address": receiver.url}
        )
        await receiver.next()
        channel = pusher.get(channel_id)
        assert channel is not None
        # The change is queued, the stop lands before the delivery task runs.
        pusher.notify(channel.calendar)
        pusher.stop(channel)
        await settle(parts)
        assert len(receiver.drained()) == expected, trickle
