"""The app API over real NATS: who reaches what, the subjects each route fronts, 503 while
an owner is away, sync requests on JetStream, and the progress stream (SSE)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from faststream.nats import NatsBroker
from nats.js import JetStreamContext
from pydantic import ConfigDict
from syncplane_common import bus, rpc, subjects
from syncplane_common.clock import ManualClock
from syncplane_common.contracts import (
    Contract,
    DataQuery,
    DataReply,
    SyncProgress,
    SyncRequested,
)
from syncplane_common.errors import (
    NotConnectedError,
    ProviderUnavailableError,
    ReauthRequiredError,
    RetryableError,
)
from syncplane_common.provision import provision_js
from syncplane_devstack.embedded import EmbeddedNats
from webhook_gateway._api_events import HUB
from webhook_gateway._api_models import OwnerReply
from webhook_gateway.api import SYNC_MODE_HEADER

from tests.integration.gateway_harness import (
    Harness,
    StandInTokenService,
    expired_token,
    running_gateway,
    stand_in_token_service,
)

pytestmark = pytest.mark.integration

Json = dict[str, Any]

U1 = "/api/v1/users/u-1"


@dataclass
class Api:
    gateway: Harness
    tokens: StandInTokenService
    js: JetStreamContext
    clock: ManualClock

    async def get(self, path: str, user: str = "u-1", *, admin: bool = False) -> tuple[int, Json]:
        resp = await self.gateway.client.get(path, headers=self.gateway.auth(user, admin=admin))
        return resp.status, await resp.json()

    async def send(
        self, method: str, path: str, body: object, user: str = "u-1", *, admin: bool = False
    ) -> tuple[int, Json]:
        resp = await self.gateway.client.request(
            method, path, json=body, headers=self.gateway.auth(user, admin=admin)
        )
        return resp.status, await resp.json()

    async def sync_requests(self) -> list[tuple[SyncRequested, str | None]]:
        """What the SYNC work queue holds, in order (read without consuming: the stream
        admits one consumer per subject, and that is sync-worker's)."""
        info = await self.js.stream_info(subjects.SYNC.name)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await self.js.get_msg(subjects.SYNC.name, seq)
            out.append(
                (
                    SyncRequested.model_validate_json(msg.data or b""),
                    (msg.headers or {}).get(SYNC_MODE_HEADER),
                )
            )
        return out


@pytest.fixture
async def api(js: JetStreamContext, nats_server: EmbeddedNats) -> AsyncIterator[Api]:
    await provision_js(js)
    clock = ManualClock(datetime.now(UTC))
    async with (
        stand_in_token_service(nats_server.url) as tokens,
        running_gateway(nats_server.url, clock=clock) as gateway,
    ):
        yield Api(gateway, tokens, js, clock)


# -- who reaches what ------------------------------------------------------------------------


async def test_no_valid_token_is_401_with_a_bearer_challenge(api: Api) -> None:
    client = api.gateway.client
    for headers in (
        {},
        {"Authorization": "Bearer nonsense"},
        {"Authorization": f"Bearer {expired_token('u-1')}"},
        {"Authorization": "Basic dTpw"},
    ):
        resp = await client.get(U1 + "/connections", headers=headers)
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await resp.json())["error"]["code"] == "unauthorized"


async def test_a_user_reaches_only_their_own_paths(api: Api) -> None:
    api.tokens.connect("u-2", "strava")
    status, body = await api.get("/api/v1/users/u-2/connections", "u-1")
    assert (status, body["error"]["code"]) == (403, "forbidden")
    status, _ = await api.get("/api/v1/users/u-2/connections", "u-2")
    assert status == 200
    status, body = await api.get("/api/v1/users/u-2/connections", "ops", admin=True)
    assert status == 200
    assert [c["provider"] for c in body["connections"]] == ["strava"]
    status, _ = await api.get("/api/v1/admin/overview", "u-2")
    assert status == 403


# -- connections -----------------------------------------------------------------------------


async def test_connections_list_and_delete(api: Api) -> None:
    api.tokens.connect("u-1", "whoop")
    status, body = await api.get(U1 + "/connections")
    assert status == 200
    [view] = body["connections"]
    assert {"provider", "status", "provider_account_id", "scopes", "connected_at"} <= set(view)
    status, body = await api.send("DELETE", U1 + "/connections/whoop", None)
    assert (status, body) == (200, {"provider": "whoop", "revoked": True})
    assert api.tokens.revokes[0].reason == "user_request"
    status, body = await api.send("DELETE", U1 + "/connections/whoop", None)
    assert (status, body["error"]["code"]) == (404, "not_connected")
    status, _ = await api.send("DELETE", U1 + "/connections/fitbit", None)
    assert status == 404


async def test_owner_not_running_is_503_at_once(nats_server: EmbeddedNats) -> None:
    async with running_gateway(nats_server.url) as gateway:
        for path in (
            U1 + "/connections",
            U1 + "/sync/status",
            U1 + "/sync/sessions/s-1",
            U1 + "/data/whoop/recovery",
            U1 + "/data/google_calendar/events",
            U1 + "/calendar/events",
            U1 + "/calendar/events/e-1",
        ):
            started = time.monotonic()
            resp = await gateway.client.get(path, headers=gateway.auth("u-1"))
            assert resp.status == 503, path
            assert (await resp.json())["error"]["code"] == "unavailable"
            assert resp.headers["Retry-After"] == "1"
            assert time.monotonic() - started < 1.0  # no responders: no waiting out a timeout
        event = {"start": "2026-11-02T10:00:00Z", "end": "2026-11-02T11:00:00Z"}
        resp = await gateway.client.post(
            U1 + "/calendar/events", json=event, headers=gateway.auth("u-1")
        )
        assert resp.status == 503


# -- sync requests ---------------------------------------------------------------------------


async def test_manual_and_backfill_publish_sync_requested(api: Api) -> None:
    status, body = await api.send("POST", U1 + "/sync", {"mode": "manual", "provider": "strava"})
    assert status == 202
    [session] = body["sessions"]
    assert session["provider"] == "strava"
    await api.send("POST", U1 + "/sync", {"mode": "manual", "provider": "strava"})
    await api.send(
        "POST",
        U1 + "/sync",
        {"mode": "backfill", "provider": "whoop", "since": "2026-01-01T00:00:00Z"},
    )
    requests = await api.sync_requests()
    kinds = [(r.provider, r.kind, r.priority, mode) for r, mode in requests]
    assert kinds == [
        ("strava", "on_demand", "interactive", "manual"),
        ("strava", "on_demand", "interactive", "manual"),  # a manual refresh is never deduped
        ("whoop", "backfill", "background", "backfill"),
    ]
    assert requests[0][0].request_id == session["request_id"]
    assert requests[2][0].since == datetime(2026, 1, 1, tzinfo=UTC)


async def test_app_focus_double_tap_is_one_request(api: Api) -> None:
    first = await api.send("POST", U1 + "/sync", {"mode": "app_focus", "provider": "whoop"})
    second = await api.send("POST", U1 + "/sync", {"mode": "app_focus", "provider": "whoop"})
    assert first == second
    api.clock.advance(120)
    third = await api.send("POST", U1 + "/sync", {"mode": "app_focus", "provider": "whoop"})
    assert third[1] != first[1]
    requests = await api.sync_requests()
    assert [(r.kind, mode) for r, mode in requests] == [("on_demand", "app_focus")] * 2


async def test_sync_without_provider_covers_active_connections(api: Api) -> None:
    api.tokens.connect("u-1", "strava")
    api.tokens.connect("u-1", "google_fit")
    api.tokens.connect("u-1", "whoop", status="reauth_required")
    status, body = await api.send("POST", U1 + "/sync", {"mode": "manual"})
    assert status == 202
    assert sorted(s["provider"] for s in body["sessions"]) == ["google_fit", "strava"]
    assert len(await api.sync_requests()) == 2


async def test_sync_body_is_validated(api: Api) -> None:
    for body in ({}, {"mode": "often"}, {"mode": "manual", "provider": "fitbit"}, [1], "x"):
        status, reply = await api.send("POST", U1 + "/sync", body)
        assert (status, reply["error"]["code"]) == (400, "bad_request"), body
    resp = await api.gateway.client.post(
        U1 + "/sync", data=b"{not json", headers=api.gateway.auth("u-1")
    )
    assert resp.status == 400


# -- owners answering (stand-ins for sync-worker and calendar-sync) --------------------------------


class AnyAsk(Contract):
    model_config = ConfigDict(frozen=True, extra="allow")


async def test_replies_pass_through_and_requests_carry_the_path(
    api: Api, nats_server: EmbeddedNats
) -> None:
    asked: dict[str, AnyAsk] = {}
    owner = NatsBroker(nats_server.url, logger=None)

    def serve(subject: str, reply: dict[str, object]) -> None:
        @rpc.responder(owner, subject, AnyAsk, OwnerReply, queue="owner")
        async def handler(ask: AnyAsk) -> OwnerReply:
            asked[subject] = ask
            return OwnerReply(**reply)

    serve(subjects.DATA_QUERY, {"status": "success", "data": [{"strava_id": 1}], "metadata": {}})
    serve(subjects.SYNC_SESSION_GET, {"session_id": "s-9", "user_id": "u-2", "state": "FETCHING"})
    serve("calendar.events.list", {"events": []})
    serve("calendar.events.update", {"id": "e-1", "title": "new"})
    await owner.start()
    await rpc.start_responders(owner)
    try:
        status, body = await api.get(U1 + "/data/strava/activities?limit=5&force_refresh=true")
        assert (status, body["data"]) == (200, [{"strava_id": 1}])
        ask = asked[subjects.DATA_QUERY].model_dump()
        assert (ask["user_id"], ask["data_type"]) == ("u-1", "activities")
        assert (ask["limit"], ask["force_refresh"]) == (5, True)
        # A session of another user is not shown, even if its owner would answer.
        status, _ = await api.get(U1 + "/sync/sessions/s-9")
        assert status == 404
        status, body = await api.get(U1 + "/calendar/events?calendar_id=primary")
        assert (status, body) == (200, {"events": []})
        status, body = await api.send("PATCH", U1 + "/calendar/events/e-1", {"title": "new"})
        assert status == 200
        assert asked["calendar.events.update"].model_dump()["changes"] == {"title": "new"}
    finally:
        await owner.stop()


async def test_smart_reads_pass_the_owners_bytes_and_map_its_errors(
    api: Api, nats_server: EmbeddedNats
) -> None:
    """data.query replies go out as the owner wrote them (less the envelope); its errors
    still become the statuses of the error tree."""
    owner = NatsBroker(nats_server.url, logger=None)
    failures: dict[str, Exception] = {
        "whoop/cycle": ProviderUnavailableError("WHOOP API failed", retry_after=7.0),
        "whoop/sleep": NotConnectedError("no whoop connection"),
        "whoop/workout": ReauthRequiredError("reconnect WHOOP"),
        "strava/activities": RetryableError("busy", retry_after=2.0),
    }
    data = ({"id": "r-1", "record": {"score": 98.5, "note": "été"}},)

    @rpc.responder(owner, subjects.DATA_QUERY, DataQuery, DataReply, queue="owner")
    async def read(ask: DataQuery) -> DataReply:
        failure = failures.get(f"{ask.provider}/{ask.data_type}")
        if failure is not None:
            raise failure
        return DataReply(status="success", data=data, metadata={"source": "cache"})

    await owner.start()
    await rpc.start_responders(owner)
    auth = api.gateway.auth("u-1")
    try:
        resp = await api.gateway.client.get(U1 + "/data/whoop/recovery", headers=auth)
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
        reply = DataReply(status="success", data=data, metadata={"source": "cache"})
        assert (
            await resp.read() == reply.model_dump_json(exclude={"schema_version", "error"}).encode()
        )
        expected = {
            "whoop/cycle": (502, "provider_unavailable", "7"),
            "whoop/sleep": (404, "not_connected", None),
            "whoop/workout": (409, "reauth_required", None),
            "strava/activities": (503, "unavailable", "2"),
        }
        for path, (status, code, retry_after) in expected.items():
            resp = await api.gateway.client.get(f"{U1}/data/{path}", headers=auth)
            body = await resp.json()
            assert (resp.status, body["error"]["code"]) == (status, code), path
            assert resp.headers.get("Retry-After") == retry_after, path
    finally:
        await rpc.stop_responders(owner)
        await owner.stop()


async def test_path_and_body_validation(api: Api) -> None:
    status, body = await api.get(U1 + "/data/strava/sleep")
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, _ = await api.get(U1 + "/data/whoop/recovery?limit=0")
    assert status == 400
    for event in (
        {"start": "tomorrow", "end": "2026-11-02T11:00:00Z"},
        {"start": "2026-11-02T10:00:00", "end": "2026-11-02T11:00:00"},  # no offset
        {"start": "2026-11-02T12:00:00Z", "end": "2026-11-02T11:00:00Z"},
        {"start": "2026-11-02", "end": "2026-11-03", "all_day": False},
        {"start": "2026-11-02T10:00:00Z", "end": "2026-11-02T11:00:00Z", "colour": "red"},
    ):
        status, _ = await api.send("POST", U1 + "/calendar/events", event)
        assert status == 400, event
    status, _ = await api.send("PATCH", U1 + "/calendar/events/e-1", {})
    assert status == 400


# -- the progress stream ---------------------------------------------------------------------


async def _publish_progress(broker: NatsBroker, user: str, n: int) -> None:
    event = SyncProgress(
        session_id=f"s-{user}",
        user_id=user,
        provider="strava",
        phase="FETCHING",
        fetched=n,
        at=datetime.now(UTC),
    )
    subject = subjects.sync_event("progress", "strava")
    await bus.publish(broker, subject, event, msg_id=f"p-{user}-{n}")


async def test_sse_streams_only_the_users_events_with_heartbeats(api: Api) -> None:
    hub = api.gateway.runtime.http[HUB]
    resp = await api.gateway.client.get(
        U1 + "/sync/events", params={"access_token": api.gateway.token("u-1")}
    )
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert hub.count == 1
    broker = api.gateway.runtime.broker
    await _publish_progress(broker, "u-2", 1)
    await _publish_progress(broker, "u-1", 2)
    text = ""
    async with asyncio.timeout(5):
        while "event: progress" not in text or ": heartbeat" not in text:
            text += (await resp.content.readany()).decode()
    frames = [f for f in text.split("\n\n") if f.startswith("event:")]
    [frame] = frames
    lines = dict(line.split(": ", 1) for line in frame.splitlines())
    assert SyncProgress.model_validate_json(lines["data"]).user_id == "u-1"
    assert int(lines["id"]) > 0
    resp.close()
    async with asyncio.timeout(5):
        while hub.count:
            await asyncio.sleep(0.05)  # the next heartbeat write notices the client left


async def test_sse_needs_the_users_token(api: Api) -> None:
    resp = await api.gateway.client.get(U1 + "/sync/events")
    assert resp.status == 401
    resp = await api.gateway.client.get(
        U1 + "/sync/events", params={"access_token": api.gateway.token("u-2")}
    )
    assert resp.status == 403
