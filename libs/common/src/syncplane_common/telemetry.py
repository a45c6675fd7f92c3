"""OpenTelemetry bootstrap: one tracer provider per process, aiohttp/asyncpg/NATS instrumented.

Trace context crosses NATS in message headers (W3C ``traceparent``), see ARCHITECTURE §7.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Literal

from faststream.nats.opentelemetry import NatsTelemetryMiddleware
from opentelemetry import baggage, propagate, trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

__all__ = [
    "exporting",
    "inject",
    "nats_hop",
    "nats_telemetry_middleware",
    "setup_telemetry",
    "shutdown_telemetry",
]

ExporterKind = Literal["none", "console", "otlp"]


def setup_telemetry(
    service: str,
    exporter: ExporterKind,
    otlp_endpoint: str,
    *,
    span_exporter: SpanExporter | None = None,
) -> TracerProvider:
    """Install the process-wide tracer provider and instrument aiohttp and asyncpg.

    OTel allows the global provider to be set once per process, so a later call reuses
    the installed SDK provider (its service name and exporter stay) and only attaches
    ``span_exporter``; this is what lets several tests each collect their own spans.
    """
    provider = _installed_provider()
    if provider is None:
        provider = TracerProvider(
            resource=Resource.create({SERVICE_NAME: service}), sampler=_SAMPLER
        )
        if _add_configured_exporter(provider, exporter, otlp_endpoint):
            _SAMPLER.exporting = True
        trace.set_tracer_provider(provider)
    if span_exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(span_exporter))
        _SAMPLER.exporting = True
    if _SAMPLER.exporting:
        # The aiohttp/asyncpg wrappers cost ~40% of a webhook's CPU even when no span is
        # recorded; without an exporter only NATS context propagation stays (FastStream).
        _instrument_libraries(provider)
    return provider


class _RecordWhenExported(Sampler):
    """Record spans only when something exports them.

    With OTEL_EXPORTER=none, recording every span anyway cost about a third of the
    gateway's webhook throughput. Unrecorded spans still get ids and still carry the
    trace context across NATS and HTTP, so a collector added later sees whole traces.
    """

    def __init__(self) -> None:
        self.exporting = False
        self._on = ParentBased(ALWAYS_ON)

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if not self.exporting:
            return SamplingResult(Decision.DROP)
        return self._on.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return "RecordWhenExported"


_SAMPLER = _RecordWhenExported()


_TRACER = trace.get_tracer(__name__)


def exporting() -> bool:
    """Whether this process records spans (an exporter is configured)."""
    return _SAMPLER.exporting


def inject(headers: dict[str, str]) -> None:
    """``propagate.inject`` into message headers, skipped when the context holds nothing
    to carry (no span, no baggage): what a hot request path sends without an exporter."""
    span = trace.get_current_span().get_span_context()
    if _SAMPLER.exporting or span.is_valid or baggage.get_all():
        propagate.inject(headers)


def nats_hop(name: str, kind: SpanKind, subject: str) -> AbstractContextManager[object]:
    """A span around a NATS hop we make ourselves, outside FastStream's middleware (the
    durable publish, a request/reply call), so the trace shows the message leaving and
    its consumer hangs under it. Nothing at all when no exporter records spans: these
    are the hottest paths, and the context they inject is then the caller's anyway."""
    if not _SAMPLER.exporting:
        return contextlib.nullcontext()
    attributes = {"messaging.system": "nats", "messaging.destination.name": subject}
    return _TRACER.start_as_current_span(name, kind=kind, attributes=attributes)


def nats_telemetry_middleware(tracer_provider: TracerProvider) -> NatsTelemetryMiddleware:
    """The FastStream broker middleware that opens publish/process spans and carries context."""
    return NatsTelemetryMiddleware(tracer_provider=tracer_provider)


async def shutdown_telemetry(provider: TracerProvider) -> None:
    """Flush pending spans and stop the exporters; call once, at process exit."""
    # Exporters may block on network I/O, so keep them off the event loop.
    await asyncio.to_thread(provider.force_flush)
    await asyncio.to_thread(provider.shutdown)


def _installed_provider() -> TracerProvider | None:
    current = trace.get_tracer_provider()
    return current if isinstance(current, TracerProvider) else None


def _add_configured_exporter(
    provider: TracerProvider, exporter: ExporterKind, otlp_endpoint: str
) -> bool:
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        return True
    if exporter == "otlp":
        endpoint = f"{otlp_endpoint.rstrip('/')}/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        return True
    return False


def _instrument_libraries(provider: TracerProvider) -> None:
    instrumentors = (
        AioHttpServerInstrumentor(),
        AioHttpClientInstrumentor(),
        AsyncPGInstrumentor(),  # type: ignore[no-untyped-call]
    )
    for instrumentor in instrumentors:
        # Instrumentors are singletons that warn and do nothing when called twice.
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=provider)
