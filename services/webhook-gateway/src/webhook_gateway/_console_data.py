"""What the admin console shows, fetched: one coroutine per section, all at once, each
held to :data:`SECTION_TIMEOUT` so a slow or absent owner costs its own section ("not
available", with why) and never the page.

Owners answer over request/reply (subjects.py, "the admin console's questions"); the
gateway reads JetStream itself for recent failures and dead letters, and its own
Prometheus counters for webhook outcomes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from syncplane_common import dlq, rpc, subjects
from syncplane_common.contracts import (
    BudgetsGet,
    BudgetsReply,
    CalendarChannelsList,
    CalendarChannelsReply,
    ConnectionsStats,
    ConnectionsStatsReply,
    Contract,
    FitRunsGet,
    FitRunsReply,
    Reply,
    SyncSessionsList,
    SyncSessionsReply,
)
from syncplane_common.errors import SyncplaneError

from webhook_gateway import _api_admin, metrics
from webhook_gateway.context import Gateway

log = logging.getLogger(__name__)

# Longest any one section may take; sections load in parallel, so this bounds the page.
SECTION_TIMEOUT = 1.0
SESSIONS_SHOWN = 20
FAILURES_SHOWN = 20
# Recent failures are looked for among the last this-many EVENTS messages: bounded work
# per page view whatever the stream holds.
FAILURE_SCAN = 5000
DEAD_LETTERS_SHOWN = 50
FIT_RUNS_SHOWN = 10
CHANNELS_SHOWN = 100


@dataclass(frozen=True)
class Section:
    """One section's data, or why it has none (``error``)."""

    name: str
    data: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Failure:
    sequence: int
    subject: str
    event: dict[str, Any]


@dataclass(frozen=True)
class DeadLetterList:
    total: int
    letters: list[dlq.DeadLetter]


@dataclass(frozen=True)
class WebhookCounts:
    outcomes: dict[tuple[str, str], float]
    rejections: dict[tuple[str, str], float]


async def _ask(gateway: Gateway, subject: str, message: Contract, reply: type[Reply]) -> Any:
    # A little under the section's limit, so the owner's silence is what gets reported.
    wait = SECTION_TIMEOUT * 0.9
    return await rpc.request(gateway.broker, subject, message, reply, wait=wait)


async def connections(gateway: Gateway) -> ConnectionsStatsReply:
    reply: ConnectionsStatsReply = await _ask(
        gateway, subjects.CONNECTIONS_STATS, ConnectionsStats(), ConnectionsStatsReply
    )
    return reply


async def budgets(gateway: Gateway) -> BudgetsReply:
    reply: BudgetsReply = await _ask(gateway, subjects.SYNC_BUDGETS_GET, BudgetsGet(), BudgetsReply)
    return reply


async def sessions(gateway: Gateway) -> SyncSessionsReply:
    ask = SyncSessionsList(limit=SESSIONS_SHOWN)
    reply: SyncSessionsReply = await _ask(
        gateway, subjects.SYNC_SESSIONS_LIST, ask, SyncSessionsReply
    )
    return reply


async def fit_runs(gateway: Gateway) -> FitRunsReply:
    ask = FitRunsGet(limit=FIT_RUNS_SHOWN)
    reply: FitRunsReply = await _ask(gateway, subjects.SYNC_FIT_RUNS_GET, ask, FitRunsReply)
    return reply


async def channels(gateway: Gateway) -> CalendarChannelsReply:
    ask = CalendarChannelsList(limit=CHANNELS_SHOWN)
    reply: CalendarChannelsReply = await _ask(
        gateway, subjects.CALENDAR_CHANNELS_LIST, ask, CalendarChannelsReply
    )
    return reply


async def failures(gateway: Gateway) -> list[Failure]:
    """The latest ``sync.failed.*`` events, newest first."""
    js = gateway.runtime.jetstream()
    state = (await js.stream_info(subjects.EVENTS.name)).state
    if state.messages == 0:
        return []
    start = max(state.first_seq, state.last_seq - FAILURE_SCAN + 1)
    found = await _read(js, subjects.EVENTS.name, "sync.failed.>", start)
    out = []
    for sequence, subject, data in found[-FAILURES_SHOWN:]:
        try:
            event = json.loads(data)
        except ValueError:
            event = {}
        out.append(Failure(sequence, subject, event if isinstance(event, dict) else {}))
    return out[::-1]


async def _read(
    js: JetStreamContext, stream: str, filter_subject: str, start: int
) -> list[tuple[int, str, bytes]]:
    """Every message on ``filter_subject`` from sequence ``start``, without consuming: the
    ephemeral consumer says how many match, so an empty answer needs no fetch timeout."""
    sub = await js.pull_subscribe(
        filter_subject,
        stream=stream,
        config=ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=30.0,
        ),
    )
    out: list[tuple[int, str, bytes]] = []
    try:
        pending = (await sub.consumer_info()).num_pending or 0
        while len(out) < pending:
            batch = await sub.fetch(min(256, pending - len(out)), timeout=SECTION_TIMEOUT)
            out.extend((m.metadata.sequence.stream, m.subject, m.data) for m in batch)
    finally:
        await sub.unsubscribe()
    return out


async def dead_letters(gateway: Gateway) -> DeadLetterList:
    js = gateway.runtime.jetstream()
    total = (await js.stream_info(subjects.DLQ.name)).state.messages
    letters = await _api_admin._dead_letters(js, "dlq.>", DEAD_LETTERS_SHOWN)
    return DeadLetterList(total, letters)


async def webhooks(_: Gateway) -> WebhookCounts:
    """This gateway process's counters (each replica counts its own deliveries)."""
    return WebhookCounts(
        outcomes=_samples(metrics.WEBHOOKS, "provider", "outcome"),
        rejections=_samples(metrics.WEBHOOK_REJECTIONS, "provider", "reason"),
    )


def _samples(counter: Any, first: str, second: str) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                out[(sample.labels[first], sample.labels[second])] = sample.value
    return out


Fetch = Callable[[Gateway], Awaitable[Any]]

SECTIONS: dict[str, Fetch] = {
    "connections": connections,
    "budgets": budgets,
    "sessions": sessions,
    "failures": failures,
    "dead_letters": dead_letters,
    "webhooks": webhooks,
    "fit_runs": fit_runs,
    "channels": channels,
}


async def load(gateway: Gateway, name: str) -> Section:
    try:
        data = await asyncio.wait_for(SECTIONS[name](gateway), SECTION_TIMEOUT)
    except TimeoutError:
        return Section(name, error=f"no answer within {SECTION_TIMEOUT:g} s")
    except SyncplaneError as err:
        return Section(name, error=err.message)
    except Exception as err:
        log.warning("console section %s failed: %s: %s", name, type(err).__name__, err)
        return Section(name, error=f"{type(err).__name__}: {err}" if str(err) else "unavailable")
    return Section(name, data)


async def load_all(gateway: Gateway) -> dict[str, Section]:
    loaded = await asyncio.gather(*(load(gateway, name) for name in SECTIONS))
    return {section.name: section for section in loaded}
