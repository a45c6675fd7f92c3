"""Strava push subscriptions and events (PROVIDERS.md §3.4, §3.5): the synchronous
validation GET, one subscription per app, the seven-field JSON events and which edits
fire them, retries, faults, duplicates, no signatures, deauthorization events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from provider_sandbox.core import Sandbox
from provider_sandbox.providers import Part
from provider_sandbox.providers._strava_webhooks import Webhooks, activity_event
from provider_sandbox.providers.strava import StravaPart

from tests.sandbox.conftest import Client
from tests.sandbox.test_strava_oauth import (
    ACTIVITIES,
    CLIENT_ID,
    SECRET,
    assert_shape,
    athlete_id,
    bearer,
    configure,
    issue_token,
    payload,
    strava_error,
    token_call,
)

pytestmark = pytest.mark.service

SUBSCRIPTIONS = "/strava/api/v3/push_subscriptions"
SEVEN = {
    "aspect_type",
    "event_time",
    "object_id",
    "object_type",
    "owner_id",
    "subscription_id",
    "updates",
}


class Receiver:
    """A webhook receiver on a loopback port: answers the validation GET as told and
    records every event POST."""

    def __init__(self) -> None:
        self.gets: list[dict[str, str]] = []
        self.posts: list[tuple[dict[str, str], Any, float]] = []
        self.challenge = "echo"  # "echo", "wrong", "slow", "error"
        self.statuses: list[int] = []  # next POST answers, then 200
        self.post_delay = 0.0

    async def on_get(self, request: web.Request) -> web.Response:
        self.gets.append(dict(request.query))
        if self.challenge == "slow":
            await asyncio.sleep(1.0)
        if self.challenge == "error":
            return web.json_response({"oops": True}, status=500)
        echoed = request.query["hub.challenge"] if self.challenge != "wrong" else "nope"
        return web.json_response({"hub.challenge": echoed})

    async def on_post(self, request: web.Request) -> web.Response:
        self.posts.append((dict(request.headers), await request.json(), time.monotonic()))
        if self.post_delay:
            await asyncio.sleep(self.post_delay)
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [body for _, body, _ in self.posts]


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    hooks = Receiver()
    app = web.Application()
    app.router.add_get("/hook", hooks.on_get)
    app.router.add_post("/hook", hooks.on_post)
    server = TestServer(app)
    await server.start_server()
    try:
        yield hooks, str(server.make_url("/hook"))
    finally:
        await server.close()


def webhooks(parts: dict[str, Part]) -> Webhooks:
    return cast(StravaPart, parts["strava"]).webhooks


async def subscribe(client: Client, url: str, verify: str = "vt-1") -> Any:
    form = {
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "callback_url": url,
        "verify_token": verify,
    }
    resp = await client.post(SUBSCRIPTIONS, data=form)
    return resp.status, await resp.json()


async def connected_athlete(
    client: Client, sandbox: Sandbox, hint: str, scopes: list[str] | None = None
) -> tuple[int, dict[str, Any]]:
    athlete = athlete_id(sandbox, hint)
    return athlete, await issue_token(client, athlete, scopes or ["read", "activity:read_all"])


async def create(client: Client, athlete: int, body: dict[str, Any]) -> list[dict[str, Any]]:
    resp = await client.post(f"/_sandbox/strava/athletes/{athlete}/activities", json=body)
    assert resp.status == 201
    created: list[dict[str, Any]] = (await resp.json())["activities"]
    return created


async def edit(client: Client, activity_id: int, **fields: Any) -> None:
    resp = await client.put(f"/_sandbox/strava/activities/{activity_id}", json=fields)
    assert resp.status == 200, await resp.text()


# -- subscriptions --------------------------------------------------------------------------


async def test_create_runs_the_validation_get_synchronously_then_answers_the_id(
    client: Client, receiver: tuple[Receiver, str]
) -> None:
    hooks, url = receiver
    status, body = await subscribe(client, url, "my-verify-token")
    assert status == 201
    assert_shape(body, payload("strava_push_subscription_create_response.json"))
    assert len(hooks.gets) == 1  # done before the create answered
    query = hooks.gets[0]
    assert set(query) == {"hub.mode", "hub.challenge", "hub.verify_token"}
    assert query["hub.mode"] == "subscribe"
    assert query["hub.verify_token"] == "my-verify-token"
    assert len(query["hub.challenge"]) >= 16
    # our receiver answered with exactly the documented validation body
    assert_shape(
        {"hub.challenge": query["hub.challenge"]},
        payload("strava_webhook_validation_response.json"),
    )


async def test_failed_validation_fails_the_create(
    client: Client, receiver: tuple[Receiver, str]
) -> None:
    hooks, url = receiver
    await configure(client, validation_timeout_seconds=0.3)
    not_verifiable = strava_error(
        "PushSubscription", "callback url", "not verifiable", "Bad Request"
    )
    for mode in ("wrong", "error", "slow"):
        hooks.challenge = mode
        started = time.monotonic()
        assert await subscribe(client, url) == (400, not_verifiable), mode
        assert time.monotonic() - started < 0.9
    unreachable = "http://127.0.0.1:9/hook"
    assert await subscribe(client, unreachable) == (400, not_verifiable)
    view = await client.get(SUBSCRIPTIONS, params={"client_id": CLIENT_ID, "client_secret": SECRET})
    assert await view.json() == []


async def test_view_delete_and_one_subscription_per_app(
    client: Client, receiver: tuple[Receiver, str]
) -> None:
    hooks, url = receiver
    creds = {"client_id": CLIENT_ID, "client_secret": SECRET}
    status, first = await subscribe(client, url)
    assert status == 201
    status, body = await subscribe(client, url)
    assert (status, body) == (
        400,
        strava_error("PushSubscription", "", "already exists", "Bad Request"),
    )
    assert len(hooks.gets) == 1  # refused before any validation
    view = await (await client.get(SUBSCRIPTIONS, params=creds)).json()
    assert len(view) == 1
    assert view[0]["id"] == first["id"]
    assert view[0]["callback_url"] == url
    assert view[0]["application_id"] == int(CLIENT_ID)
    assert (await client.get(SUBSCRIPTIONS, params={**creds, "client_secret": "x"})).status == 400
    wrong = await client.delete(f"{SUBSCRIPTIONS}/{first['id'] + 1}", params=creds)
    assert wrong.status == 404
    assert (await client.delete(f"{SUBSCRIPTIONS}/{first['id']}")).status == 400  # no creds
    gone = await client.delete(f"{SUBSCRIPTIONS}/{first['id']}", params=creds)
    assert gone.status == 204
    assert await (await client.get(SUBSCRIPTIONS, params=creds)).json() == []
    status, second = await subscribe(client, url)
    assert status == 201
    assert second["id"] != first["id"]
    missing = await client.post(SUBSCRIPTIONS, data=creds)
    assert missing.status == 400


# -- events ---------------------------------------------------------------------------------


async def test_events_carry_the_seven_fields_as_json_and_no_signature(
    client: Client, sandbox: Sandbox, parts: dict[str, Part], receiver: tuple[Receiver, str]
) -> None:
    hooks, url = receiver
    _, sub = await subscribe(client, url)
    athlete, _ = await connected_athlete(client, sandbox, "events")
    sandbox.clock.advance(5000)
    created = await create(client, athlete, {"generate": 2})
    await webhooks(parts).idle()
    assert sorted(e["object_id"] for e in hooks.events) == sorted(a["id"] for a in created)
    example = payload("strava_webhook_create.json")
    for headers, event, _ in hooks.posts:
        assert set(event) == SEVEN
        assert_shape(event, example)
        assert event["aspect_type"] == "create"
        assert event["object_type"] == "activity"
        assert event["owner_id"] == athlete
        assert event["subscription_id"] == sub["id"]
        assert event["updates"] == {}
        assert abs(event["event_time"] - sandbox.clock.time()) < 5  # virtual seconds
        assert headers["Content-Type"].startswith("application/json")
        lowered = {name.lower() for name in headers}
        assert not any("signature" in n or "hmac" in n or n.startswith("x-strava") for n in lowered)


async def test_only_title_type_and_privacy_edits_fire_update_events(
    client: Client, sandbox: Sandbox, parts: dict[str, Part], receiver: tuple[Receiver, str]
) -> None:
    hooks, url = receiver
    await subscribe(client, url)
    athlete, _ = await connected_athlete(client, sandbox, "editor")
    (activity,) = await create(client, athlete, {"activities": [{"sport_type": "Run"}]})
    activity_id = activity["id"]
    await webhooks(parts).idle()
    hooks.posts.clear()
    await edit(client, activity_id, description="felt good", gear_id="g1", kudos_count=9)
    await edit(client, activity_id, name="Messy")
    await edit(client, activity_id, sport_type="TrailRun")
    await edit(client, activity_id, private=True)
    await edit(client, activity_id, private=False, name="Tidy", type="Walk")
    await edit(client, activity_id, name="Tidy")  # unchanged: nothing to tell
    await webhooks(parts).idle()
    updates = sorted((e["updates"] for e in hooks.events), key=lambda u: sorted(u.items()))
    assert updates == sorted(
        [
            {"title": "Messy"},
            {"type": "TrailRun"},
            {"private": "true"},
            {"private": "false", "title": "Tidy", "type": "Walk"},
        ],
        key=lambda u: sorted(u.items()),
    )
    assert all(e["aspect_type"] == "update" for e in hooks.events)
    hooks.posts.clear()
    assert (await client.delete(f"/_sandbox/strava/activities/{activity_id}")).status == 200
    await webhooks(parts).idle()
    assert [(e["aspect_type"], e["object_id"], e["updates"]) for e in hooks.events] == [
        ("delete", activity_id, {})
    ]


async def test_activity_read_only_athletes_hear_nothing_about_only_me_activities(
    client: Client, sandbox: Sandbox, parts: dict[str, Part], receiver: tuple[Receiver, str]
) -> None:
    hooks, url = receiver
    await subscribe(client, url)
    athlete, _ = await connected_athlete(client, sandbox, "reader", ["read", "activity:read"])
    public, hidden = await create(
        client, athlete, {"activities": [{"private": False}, {"private": True}]}
    )
    await edit(client, hidden["id"], name="secret")
    await edit(client, public["id"], private=True)
    await configure(client, private_switch_as_delete=True)
    await edit(client, public["id"], private=False, name="Back")
    await edit(client, public["id"], private=True)
    await webhooks(parts).idle()
    # deliveries run concurrently, so compare without order
    assert sorted(
        str((e["aspect_type"], e["object_id"], e["updates"])) for e in hooks.events
    ) == sorted(
        str(t)
        for t in (
            ("create", public["id"], {}),
            ("update", public["id"], {"title": "Back"}),
            ("delete", public["id"], {}),
        )
    )
    # athletes who never authorized the app produce no events at all
    hooks.posts.clear()
    stranger = athlete_id(sandbox, "stranger")
    await create(client, stranger, {"generate": 3})
    await webhooks(parts).idle()
    assert hooks.events == []


def test_event_rules_by_scope() -> None:
    read_all = frozenset({"read", "activity:read_all"})
    read = frozenset({"read", "activity:read"})
    assert activity_event(read_all, "update", False, True, {"private": "true"}) == (
        "update",
        {"private": "true"},
    )
    assert activity_event(read, "update", False, True, {"private": "true"}) is None
    assert activity_event(frozenset({"read"}), "create", False, False, {}) is None
    assert activity_event(None, "create", True, True, {}) == ("create", {})
    assert activity_event(read, "delete", True, True, {}) is None


async def test_failed_deliveries_are_tried_three_times_in_total(
    client: Client, sandbox: Sandbox, parts: dict[str, Part], receiver: tuple[Receiver, str]
) -> None:
    hooks, url = receiver
    await configure(client, retry_gap_seconds=0.05)
    await subscribe(client, url)
    athlete, _ = await connected_athlete(client, sandbox, "retry")
    hooks.statuses = [500] * 10
    await create(client, athlete, {"generate": 1})
    await webhooks(parts).idle()
    assert len(hooks.posts) == 3
    assert len({str(e) for e in hooks.events}) == 1  # the same event each time
    gaps = [b[2] - a[2] for a, b in zip(hooks.posts, hooks.posts[1:], strict=False)]
    assert all(gap >= 0.04 for gap in gaps)
    stats = sandbox.stats.webhooks["strava"]
    assert (stats["sent"], stats["status_500"], stats["gave_up"]) == (3, 3, 1)

    hooks.posts.clear()
    hooks.statuses = [503, 204]  # only a 200 acknowledges
    await create(client, athlete, {"generate": 1})
    await webhooks(parts).idle()
    assert len(hooks.posts) == 3
    hooks.posts.clear()
    hooks.statuses = [500]
    await create(client, athlete, {"generate": 1})
    await webhooks(parts).idle()
    assert len(hooks.posts) == 2
    log = await (await client.get("/_sandbox/strava/events")).json()
    assert log["events"][-1]["attempts"] == ["status_500", "status_200"]


async def test_a_slow_receiver_times_out_after_the_delivery_timeout(
    client: Client, sandbox: Sandbox, parts: dict[str, Part], receiver: tuple[Receiver, str]
) -> None:
    hooks, url = receiver
    await configure(client, retry_gap_seconds=0.01, delivery_timeout_seconds=0.2)
    await subscribe(client, url)
    athlete, _ = await connected_athlete(client, sandbox, "slow")
    hooks.post_delay = 0.5
    await create(client, athlete, {"generate": 1})
    await webhooks(parts).idle()
    assert len(hooks.posts) == 3
    assert sandbox.stats.webhooks["strava"]["timeout"] == 3


async def test_drop_latency_and_duplicate_controls(
    client: Client, sandbox: Sandbox, parts: dict[str, Part], receiver: tuple[Receiver, str]
) -> None:
    hooks, url = receiver
    await subscribe(client, url)
    athlete, _ = await connected_athlete(client, sandbox, "faults")
    await client.post(
        "/_sandbox/faults",
        json={"provider": "strava", "endpoint": "webhook", "drop": True, "count": 1},
    )
    await create(client, athlete, {"generate": 1})
    await webhooks(parts).idle()
    assert hooks.posts == []
    assert sandbox.stats.webhooks["strava"]["dropped"] == 1

    await client.post(
        "/_sandbox/faults",
        json={"provider": "strava", "endpoint": "webhook", "latency_ms": 300, "count": 1},
    )
    started = time.monotonic()
    await create(client, athlete, {"generate": 1})
    await webhooks(parts).idle()
    assert len(hooks.posts) == 1
    assert hooks.posts[0][2] - started >= 0.3

    hooks.posts.clear()
    await configure(client, duplicate_rate=1.0)
    await create(client, athlete, {"generate": 1})
    await webhooks(parts).idle()
    assert len(hooks.events) == 2
    assert hooks.events[0] == hooks.events[1]


async def test_deauthorization_fires_the_athlete_event_and_kills_tokens(
    client: Client, sandbox: Sandbox, parts: dict[str, Part], receiver: tuple[Receiver, str]
) -> None:
    hooks, url = receiver
    _, sub = await subscribe(client, url)
    athlete, grant = await connected_athlete(client, sandbox, "leaver")
    resp = await client.post(f"/_sandbox/strava/athletes/{athlete}/deauthorize")
    assert resp.status == 200
    assert (await resp.json())["tokens_revoked"] >= 2
    await webhooks(parts).idle()
    assert hooks.events == [
        {
            "aspect_type": "update",
            "event_time": hooks.events[0]["event_time"],
            "object_id": athlete,
            "object_type": "athlete",
            "owner_id": athlete,
            "subscription_id": sub["id"],
            "updates": {"authorized": "false"},
        }
    ]
    api = await client.get(ACTIVITIES, headers=bearer(grant["access_token"]))
    assert api.status == 401
    status, _ = await token_call(
        client, grant_type="refresh_token", refresh_token=grant["refresh_token"]
    )
    assert status == 400
    # no more activity events for an athlete who left
    hooks.posts.clear()
    await create(client, athlete, {"generate": 1})
    await webhooks(parts).idle()
    assert hooks.events == []
    missing = await client.post("/_sandbox/strava/athletes/1/deauthorize")
    assert missing.status == 404


async def test_app_initiated_deauthorize_sends_the_event_only_if_configured(
    client: Client, sandbox: Sandbox, parts: dict[str, Part], receiver: tuple[Receiver, str]
) -> None:
    hooks, url = receiver
    await subscribe(client, url)
    _, first = await connected_athlete(client, sandbox, "app-side")
    await client.post("/strava/oauth/deauthorize", data={"access_token": first["access_token"]})
    await webhooks(parts).idle()
    assert [e["updates"] for e in hooks.events] == [{"authorized": "false"}]
    await configure(client, deauthorize_event=False)
    _, second = await connected_athlete(client, sandbox, "app-side")
    await client.post("/strava/oauth/deauthorize", data={"access_token": second["access_token"]})
    await webhooks(parts).idle()
    assert len(hooks.events) == 1
