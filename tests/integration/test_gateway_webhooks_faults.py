"""The gateway through its dependencies' outages: NATS killed in the middle of a webhook
flood (only 503s while it is down, nothing answered 2xx is lost or doubled, accepted again
within 5 s of its return), and Postgres stopped (irrelevant: the gateway has no pool)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

import pytest
from nats.js import JetStreamContext
from syncplane_devstack.embedded import EmbeddedNats, EmbeddedPostgres

from tests.integration.gateway_webhooks_support import (
    SUBSCRIPTION_ID,
    gcal_headers,
    record_subscription,
    register_channel,
    serve_gateway,
    strava_event,
    whoop_body,
    whoop_headers,
)

pytestmark = pytest.mark.integration

PROVIDERS = 8
RETRY_GAP = 0.05
DOWN_SECONDS = 1.5
BACK_WITHIN = 5.0


@dataclass(frozen=True)
class Attempt:
    key: str
    sent: float
    answered: float
    status: int


async def test_nats_killed_during_a_webhook_flood(
    js: JetStreamContext, nats_server: EmbeddedNats
) -> None:
    async with serve_gateway(nats_server.url, js, publish_timeout_seconds=0.5) as gw:
        await record_subscription(js, SUBSCRIPTION_ID)
        attempts: list[Attempt] = []
        accepted: dict[str, str] = {}  # event key -> event id the gateway answered with
        stop = asyncio.Event()

        async def provider() -> None:
            # Strava-style: each event is retried until it is acknowledged.
            while not stop.is_set():
                event = strava_event()
                key = f"{event['object_id']}"
                while True:
                    sent = time.monotonic()
                    resp = await gw.client.post("/webhooks/strava", json=event)
                    body = await resp.json()
                    attempts.append(Attempt(key, sent, time.monotonic(), resp.status))
                    if resp.status == 200:
                        accepted[key] = body["event_id"]
                        break
                    await asyncio.sleep(RETRY_GAP)

        workers = [asyncio.create_task(provider()) for _ in range(PROVIDERS)]
        try:
            await asyncio.sleep(0.5)
            await asyncio.to_thread(nats_server.kill)
            down_from = time.monotonic()
            await asyncio.sleep(DOWN_SECONDS)
            down_until = time.monotonic()
            await asyncio.to_thread(nats_server.start)
            back_at = time.monotonic()
            deadline = back_at + BACK_WITHIN
            while not any(a.status == 200 and a.sent >= back_at for a in attempts):
                assert time.monotonic() < deadline, "no event accepted within 5 s of NATS' return"
                await asyncio.sleep(0.02)
            first_ok = min(a.answered for a in attempts if a.status == 200 and a.sent >= back_at)
            await asyncio.sleep(0.3)
            stop.set()
            async with asyncio.timeout(10):
                await asyncio.gather(*workers)
        finally:
            stop.set()
            for task in workers:
                task.cancel()
            if nats_server.pid is None:
                await asyncio.to_thread(nats_server.start)

        statuses = Counter(a.status for a in attempts)
        assert set(statuses) == {200, 503}, statuses
        while_down = [a for a in attempts if a.sent >= down_from and a.answered <= down_until]
        assert while_down, "the flood did not reach the gateway while NATS was down"
        assert {a.status for a in while_down} == {503}
        assert first_ok - back_at < BACK_WITHIN
        assert any(a.status == 200 and a.answered < down_from for a in attempts)

        # Every event answered 2xx is on the stream, exactly once.
        stored = Counter(s.msg_id for s in await gw.stored())
        assert {m: n for m, n in stored.items() if n != 1} == {}
        assert set(accepted.values()) <= set(stored)
        # Nothing else either: a 503'd publish that landed later was retried to a 2xx.
        assert set(stored) == set(accepted.values())


async def test_webhooks_flow_while_postgres_is_stopped(
    js: JetStreamContext, nats_server: EmbeddedNats, pg_server: EmbeddedPostgres
) -> None:
    async with serve_gateway(nats_server.url, js) as gw:
        await record_subscription(js, SUBSCRIPTION_ID)
        await register_channel(js, "chan-pg")
        await asyncio.to_thread(pg_server.stop)
        try:
            body = whoop_body()
            answers = [
                await gw.client.post("/webhooks/strava", json=strava_event()),
                await gw.client.post("/webhooks/whoop", data=body, headers=whoop_headers(body)),
                await gw.client.post(
                    "/webhooks/google/calendar", headers=gcal_headers("chan-pg", 2)
                ),
            ]
            assert [a.status for a in answers] == [200, 200, 200]
            ready = await gw.client.get("/readyz")
            assert ready.status == 200
            assert (await ready.json())["checks"] == {"nats": True}
            assert len(await gw.stored()) == 3
        finally:
            await asyncio.to_thread(pg_server.start)
