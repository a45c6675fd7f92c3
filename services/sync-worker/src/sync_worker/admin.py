"""sync-worker's answers to the admin console (queue ``sync-worker``):

- ``sync.background.run``: queue a background sync for every active connection now — the
  seed's ``POST /api/sync/background`` (seeds/002), for an operator who will not wait
  for the scheduler's slots;
- ``sync.budgets.get``: the shared rate budgets' current windows, read from the KV bucket
  every replica writes (so any replica answers for all of them);
- ``sync.sessions.list``: the most recently touched sessions, for the console to seed
  its live progress table before ``sync.progress.*`` events move it.

The Google Fit run metrics (``sync.fit_runs.get``) are answered by the module that owns
that table.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from faststream.nats import NatsBroker
from nats.js import JetStreamContext
from syncplane_common import rpc, subjects
from syncplane_common.contracts import (
    BackgroundSyncRun,
    BackgroundSyncRunReply,
    BudgetsGet,
    BudgetsReply,
    BudgetWindow,
    SyncRequested,
    SyncSessionsList,
    SyncSessionsReply,
    SyncSessionSummary,
)

from sync_worker._budget_policy import Priority, allowance, slot_of
from sync_worker.budget import BUCKET, CounterStore, KvCounterStore, configured_limits
from sync_worker.handlers import QUEUE, Worker
from sync_worker.settings import SyncWorkerSettings

# Publishes in flight at once while a background pass queues its syncs.
PUBLISH_BATCH = 100

ACTIVE = """
SELECT user_id, provider
FROM connections
WHERE status = 'active' AND provider = ANY($1::text[])
ORDER BY last_synced_at NULLS FIRST, user_id, provider
LIMIT $2
"""

RECENT_SESSIONS = """
SELECT id, user_id, provider, kind, state, phase, pages_done, pages_expected, fetched,
       stored, failed, skipped, created_at, updated_at, finished_at
FROM sessions
WHERE ($2::text IS NULL OR user_id = $2)
ORDER BY updated_at DESC
LIMIT $1
"""


def register(
    broker: NatsBroker,
    worker: Callable[[], Worker],
    settings: SyncWorkerSettings,
    jetstream: Callable[[], JetStreamContext],
) -> None:
    serve = functools.partial(rpc.responder, broker, queue=QUEUE)

    @serve(subjects.SYNC_BACKGROUND_RUN, BackgroundSyncRun, BackgroundSyncRunReply)
    async def background_run(ask: BackgroundSyncRun) -> BackgroundSyncRunReply:
        return await run_background(worker(), ask)

    @serve(subjects.SYNC_BUDGETS_GET, BudgetsGet, BudgetsReply)
    async def budgets(_: BudgetsGet) -> BudgetsReply:
        if not settings.rate_budget_enabled:
            return BudgetsReply(enabled=False)
        kv = await jetstream().key_value(BUCKET)
        return await read_budgets(KvCounterStore(kv), settings, worker().engine.clock.now())

    @serve(subjects.SYNC_SESSIONS_LIST, SyncSessionsList, SyncSessionsReply)
    async def sessions(ask: SyncSessionsList) -> SyncSessionsReply:
        records = await worker().engine.pool.fetch(RECENT_SESSIONS, ask.limit, ask.user_id)
        return SyncSessionsReply(
            sessions=tuple(
                SyncSessionSummary(session_id=str(r["id"]), **{k: r[k] for k in _FIELDS})
                for r in records
            )
        )


_FIELDS = (
    "user_id",
    "provider",
    "kind",
    "state",
    "phase",
    "pages_done",
    "pages_expected",
    "fetched",
    "stored",
    "failed",
    "skipped",
    "created_at",
    "updated_at",
    "finished_at",
)


async def run_background(w: Worker, ask: BackgroundSyncRun) -> BackgroundSyncRunReply:
    """One ``sync.requested`` per active connection of a provider this worker syncs."""
    engine = w.engine
    now = engine.clock.now()
    run_id = uuid.uuid4().hex
    providers = engine.sources.providers
    records = await engine.pool.fetch(ACTIVE, providers, ask.max_users or 2**31 - 1)
    kind = "backfill" if ask.sync_type == "full" else "scheduled"
    commands = [
        SyncRequested(
            request_id=f"background:{run_id}:{r['user_id']}:{r['provider']}",
            user_id=r["user_id"],
            provider=r["provider"],
            kind=kind,
            requested_at=now,
            priority="background",
        )
        for r in records
    ]
    for start in range(0, len(commands), PUBLISH_BATCH):
        batch = commands[start : start + PUBLISH_BATCH]
        await asyncio.gather(*(engine.publish(c.subject, c, c.request_id) for c in batch))
    by_provider: dict[str, int] = {}
    for c in commands:
        by_provider[c.provider] = by_provider.get(c.provider, 0) + 1
    return BackgroundSyncRunReply(run_id=run_id, queued=len(commands), by_provider=by_provider)


async def read_budgets(
    store: CounterStore, settings: SyncWorkerSettings, now: datetime
) -> BudgetsReply:
    """Every configured window's current slot; a slot nobody wrote yet is unused."""
    limits = configured_limits(settings)
    windows = []
    for provider, provider_windows in limits.items():
        for window in provider_windows:
            slot = slot_of(provider, window, now.timestamp())
            counts, _ = await store.read(slot)
            # The slot holds the limit the provider last told us, when it said one.
            limit = counts.limit if counts is not None else window.limit
            windows.append(
                BudgetWindow(
                    provider=provider,
                    window=window.name,
                    seconds=window.seconds,
                    starts_at=datetime.fromtimestamp(slot.start, UTC),
                    ends_at=datetime.fromtimestamp(slot.end, UTC),
                    limit=limit,
                    reserved=counts.reserved if counts is not None else 0,
                    background=counts.background if counts is not None else 0,
                    background_limit=allowance(
                        limit, Priority.BACKGROUND, settings.rate_background_share
                    ),
                )
            )
    return BudgetsReply(windows=tuple(windows))
