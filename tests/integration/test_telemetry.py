"""One trace across an HTTP hop and across a NATS hop (context carried in message headers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from faststream.nats import NatsBroker
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from syncplane_common.http import create_client_session
from syncplane_common.telemetry import nats_telemetry_middleware, setup_telemetry
from syncplane_devstack.embedded import EmbeddedNats

pytestmark = pytest.mark.integration


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(spans: InMemorySpanExporter) -> TracerProvider:
    return setup_telemetry("telemetry-test", "none", "http://127.0.0.1:4318", span_exporter=spans)


@pytest.fixture
async def server_url(provider: TracerProvider) -> AsyncIterator[str]:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hi")

    # Built after setup_telemetry, so this is the instrumented Application.
    app = web.Application()
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}"
    await runner.cleanup()


def of_kind(spans: InMemorySpanExporter, kind: SpanKind) -> list[ReadableSpan]:
    return [span for span in spans.get_finished_spans() if span.kind is kind]


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.trace_id)


async def test_http_client_and_server_spans_share_a_trace(
    server_url: str, spans: InMemorySpanExporter
) -> None:
    async with create_client_session() as session, session.get(f"{server_url}/hello") as resp:
        assert await resp.text() == "hi"

    [client] = of_kind(spans, SpanKind.CLIENT)
    [server] = of_kind(spans, SpanKind.SERVER)
    assert trace_id(server) == trace_id(client)
    assert server.parent is not None
    assert client.context is not None
    assert server.parent.span_id == client.context.span_id


async def test_untraced_session_opens_no_client_span(
    server_url: str, spans: InMemorySpanExporter
) -> None:
    async with (
        create_client_session(trace=False) as session,
        session.get(f"{server_url}/hello") as resp,
    ):
        assert resp.status == 200

    assert of_kind(spans, SpanKind.CLIENT) == []
    assert len(of_kind(spans, SpanKind.SERVER)) == 1


async def test_trace_context_travels_in_nats_headers(
    nats_server: EmbeddedNats, provider: TracerProvider, spans: InMemorySpanExporter
) -> None:
    broker = NatsBroker(nats_server.url, middlewares=[nats_telemetry_middleware(provider)])
    received = asyncio.Event()
    seen_trace_ids: list[int] = []

    @broker.subscriber("t.x")
    async def handle(body: str) -> None:
        seen_trace_ids.append(trace.get_current_span().get_span_context().trace_id)
        received.set()

    await broker.start()
    try:
        # The handler runs in the NATS client's reader task, not under this span: it can
        # only join this trace through the traceparent header.
        with provider.get_tracer("test").start_as_current_span("webhook") as root:
            await broker.publish("hello", "t.x")
        await asyncio.wait_for(received.wait(), timeout=10)
    finally:
        await broker.stop()

    origin = root.get_span_context().trace_id
    [publisher] = [s for s in of_kind(spans, SpanKind.PRODUCER) if s.name == "t.x publish"]
    [consumer] = of_kind(spans, SpanKind.CONSUMER)
    assert trace_id(publisher) == origin
    assert trace_id(consumer) == trace_id(publisher)
    assert seen_trace_ids == [origin]


async def test_setup_twice_keeps_one_global_provider(provider: TracerProvider) -> None:
    again = setup_telemetry("another-name", "console", "http://127.0.0.1:4318")

    assert again is provider
    assert trace.get_tracer_provider() is provider
