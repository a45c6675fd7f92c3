"""The app API's calendar routes through the real calendar-sync: the gateway sends the
``calendar.events.*`` contracts, calendar-sync (in this process, on real NATS and
Postgres) answers and pushes to the Google sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from syncplane_devstack.embedded import EmbeddedNats

from tests.integration import token_harness
from tests.integration.calendar_harness import Service, eventually, sandbox_server, service
from tests.integration.gateway_harness import Harness, running_gateway

pytestmark = pytest.mark.integration

ANN = "ann@example.com"
EVENTS = "/api/v1/users/u-1/calendar/events"


@dataclass
class Api:
    gateway: Harness
    svc: Service

    async def call(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        resp = await self.gateway.client.request(
            method, path, json=body, headers=self.gateway.auth("u-1")
        )
        return resp.status, await resp.json()


@pytest.fixture
async def api(nats_server: EmbeddedNats, database_url: str) -> AsyncIterator[Api]:
    async with (
        sandbox_server() as sandbox,
        token_harness.fresh_streams(nats_server.url),
        running_gateway(nats_server.url) as gateway,
        service(nats_server.url, database_url, sandbox=sandbox, fresh_streams=False) as svc,
    ):
        await svc.connect("u-1", ANN)
        yield Api(gateway, svc)


async def google_titles(api: Api, *titles: str) -> None:
    async def match() -> bool:
        live = await api.svc.google.live(ANN)
        return sorted(e.get("summary", "") for e in live) == sorted(titles)

    await eventually(match)


async def test_calendar_events_crud_through_calendar_sync(api: Api) -> None:
    status, created = await api.call(
        "POST",
        EVENTS,
        {
            "title": "Rent",
            "start": "2030-07-01",
            "end": "2030-07-02",
            "all_day": True,
            "metadata": {"amount": 950},
        },
    )
    assert status == 201, created
    assert (created["title"], created["calendar_id"], created["all_day"]) == (
        "Rent",
        "primary",
        True,
    )
    assert created["metadata"] == {"amount": 950}
    assert "error" not in created
    assert "schema_version" not in created
    await google_titles(api, "Rent")

    one = f"{EVENTS}/{created['id']}"
    status, got = await api.call("GET", one)
    assert (status, got) == (200, created)
    status, updated = await api.call("PATCH", one, {"title": "Rent (July)"})
    assert (status, updated["title"], updated["metadata"]) == (200, "Rent (July)", {"amount": 950})
    await google_titles(api, "Rent (July)")
    status, listed = await api.call("GET", EVENTS)
    assert status == 200
    assert [e["title"] for e in listed["events"]] == ["Rent (July)"]

    status, deleted = await api.call("DELETE", one)
    assert (status, deleted["deleted"]) == (200, True)
    await google_titles(api)
    status, listed = await api.call("GET", EVENTS)
    assert (status, listed) == (200, {"events": []})
    status, body = await api.call("GET", f"{EVENTS}/nosuchevent")
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, read = await api.call("GET", "/api/v1/users/u-1/data/google_calendar/events")
    assert (status, read["metadata"]["source"], read["data"]) == (200, "cache", [])
