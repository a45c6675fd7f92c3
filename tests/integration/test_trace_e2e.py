"""One trace, end to end (ARCHITECTURE §7): a Strava webhook POSTed to the real gateway,
through JetStream to sync-worker's consumer, its ``token.get`` to token-service (which
refreshes at the sandbox), the refetch at the provider sandbox over HTTP, and the upsert
in Postgres, every hop a descendant of the gateway's server span.

Real NATS, Postgres, services and sandbox, all in this process so an in-memory exporter
sees every span; trace context crosses each hop only the way it does between processes
(NATS headers, HTTP headers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from syncplane_common.http import create_client_session
from syncplane_common.telemetry import setup_telemetry
from syncplane_devstack.embedded import EmbeddedNats

from tests.integration.gateway_webhooks_support import (
    SUBSCRIPTION_ID,
    record_subscription,
    serve_gateway,
    strava_event,
)
from tests.integration.sync_harness import (
    build_app,
    eventually,
    migrated,
    running,
    seed_strava,
    settings_for,
)
from tests.integration.token_harness import Stack, stack

pytestmark = pytest.mark.integration

USER = "u-traced"


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    # Before anything is built: aiohttp's server instrumentation patches the Application
    # class, so only apps made after this call are traced.
    setup_telemetry("trace-e2e", "none", "http://127.0.0.1:4318", span_exporter=exporter)
    return exporter


@pytest.fixture
async def env(
    spans: InMemorySpanExporter, nats_server: EmbeddedNats, database_url: str
) -> AsyncIterator[Stack]:
    await migrated(database_url)
    async with stack(nats_server.url, database_url) as s:
        settings = settings_for(s, database_url, scheduler_tick_seconds=3600, token_cache_seconds=0)
        async with running(build_app(settings, scheduler=False)):
            yield s


class Trace:
    """The finished spans of one trace, navigable by parent."""

    def __init__(self, spans: list[ReadableSpan], root: ReadableSpan) -> None:
        self.root = root
        self.spans = [s for s in spans if trace_id(s) == trace_id(root)]
        self.by_id = {span_id(s): s for s in self.spans}

    def children(self, parent: ReadableSpan, name: str, kind: SpanKind) -> list[ReadableSpan]:
        return [
            s
            for s in self.spans
            if s.parent is not None
            and s.parent.span_id == span_id(parent)
            and s.name == name
            and s.kind is kind
        ]

    def child(self, parent: ReadableSpan, name: str, kind: SpanKind) -> ReadableSpan:
        found = self.children(parent, name, kind)
        assert len(found) == 1, f"{name} ({kind}) under {parent.name}: {self.describe()}"
        return found[0]

    def reaches_root(self, span: ReadableSpan) -> bool:
        while span.parent is not None:
            parent = self.by_id.get(span.parent.span_id)
            if parent is None:
                return False
            span = parent
        return span is self.root

    def describe(self) -> str:
        return ", ".join(f"{s.name}<{s.kind.name}>" for s in self.spans)


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.trace_id)


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def ends_before(first: ReadableSpan, then: ReadableSpan) -> bool:
    if first.end_time is None or then.start_time is None:
        return False
    return first.end_time <= then.start_time


def attr(span: ReadableSpan, key: str) -> str:
    return str((span.attributes or {}).get(key, ""))


async def test_one_trace_from_webhook_to_upsert(
    env: Stack, spans: InMemorySpanExporter, nats_server: EmbeddedNats
) -> None:
    s = env
    hint = "traced-athlete"
    athlete = await seed_strava(s, hint, 0)
    await s.connect(USER, "strava", hint)
    await eventually(
        lambda: s.admin.fetchval(
            "SELECT count(*) FROM sync.sessions WHERE user_id = $1 AND state = 'completed'",
            USER,
        )
    )
    made = await s.control(
        "POST", f"/_sandbox/strava/athletes/{athlete}/activities", {"activities": [{}]}
    )
    activity = made["activities"][0]["id"]
    await s.expire(USER, "strava")
    js = s.nc.jetstream()
    async with serve_gateway(nats_server.url, js) as gw:
        await record_subscription(js, SUBSCRIPTION_ID)
        spans.clear()
        event = strava_event(object_id=activity, owner_id=athlete)
        async with (
            create_client_session(trace=False) as http,
            http.post(gw.url("/webhooks/strava"), json=event) as resp,
        ):
            assert resp.status == 200, await resp.text()

        async def stored() -> Any:
            return await s.admin.fetchval(
                "SELECT count(*) FROM sync.strava_activities WHERE strava_id = $1", activity
            )

        await eventually(stored)

        def consumed() -> bool:
            # The row is visible at the commit; the consumer's span ends after its ack.
            names = {s.name for s in spans.get_finished_spans()}
            return "webhook.received.strava.activity process" in names

        await eventually(consumed)
    finished = spans.get_finished_spans()
    [root] = [s for s in finished if s.name == "POST /webhooks/strava"]
    assert root.kind is SpanKind.SERVER
    assert root.parent is None, "the provider's POST starts the trace"
    t = Trace(list(finished), root)
    # Every span of the trace hangs off the gateway's span: no hop started a new trace
    # or lost its parent on the way.
    assert all(t.reaches_root(s) for s in t.spans), t.describe()

    publish = t.child(root, "webhook.received.strava.activity publish", SpanKind.PRODUCER)
    consume = t.child(publish, "webhook.received.strava.activity process", SpanKind.CONSUMER)

    token_get = t.child(consume, "token.get request", SpanKind.CLIENT)
    token_served = t.child(token_get, "token.get process", SpanKind.SERVER)
    # The token had expired: token-service refreshed it at the provider, in this trace.
    [refresh] = t.children(token_served, "POST", SpanKind.CLIENT)
    assert attr(refresh, "http.url").endswith("/strava/oauth/token")
    t.child(refresh, "POST /strava/oauth/token", SpanKind.SERVER)

    [fetch] = t.children(consume, "GET", SpanKind.CLIENT)
    assert attr(fetch, "http.url").endswith(f"/strava/api/v3/activities/{activity}")
    assert attr(fetch, "http.status_code") == "200"
    t.child(fetch, "GET /strava/api/v3/activities/{id}", SpanKind.SERVER)
    # The access token came first, then the provider call it paid for.
    assert ends_before(token_get, fetch)

    upserts = [
        s
        for s in t.children(consume, "INSERT", SpanKind.CLIENT)
        if "INSERT INTO strava_activities" in attr(s, "db.statement")
    ]
    assert len(upserts) == 1, t.describe()
    assert attr(upserts[0], "db.user") == "sync_worker"
    assert ends_before(fetch, upserts[0])
