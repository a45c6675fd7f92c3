"""Background syncs, tier 2 of freshness (ARCHITECTURE §4): every replica claims due
connections with ``FOR UPDATE SKIP LOCKED`` — no leader, and two replicas never claim
the same connection — and queues ``sync.requested.<provider>`` for each. The dedupe id
names the slot (connection + the due time), so a claim retried after a crash between the
publish and the commit queues nothing twice.

The same tick runs the enrichment pass: activities stored without weather or a place
(the provider was down, the breaker open, or geocoding's 1/s policy deferred them) are
completed a batch at a time.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from prometheus_client import Counter, Histogram
from syncplane_common.contracts import SyncRequested

from sync_worker import strava_store, sync_state
from sync_worker.engine import Engine
from sync_worker.enrichment.activities import ActivityEnricher, Point

log = logging.getLogger(__name__)

CLAIMED = Counter(
    "syncplane_scheduler_connections_total",
    "Due connections claimed by the scheduler, by outcome (queued, recently_synced).",
    ["provider", "outcome"],
)
CLAIM_SECONDS = Histogram(
    "syncplane_scheduler_claim_seconds",
    "Time of one scheduler claim transaction (claim + publishes + commit).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
ENRICHED = Counter(
    "syncplane_enrichment_pass_total",
    "Activities the enrichment pass completed, by outcome (completed, still_missing).",
    ["outcome"],
)


@dataclass
class Scheduler:
    engine: Engine
    intervals: dict[str, int]
    batch_size: int
    enricher: ActivityEnricher | None = None
    enrichment_batch: int = 50

    async def tick(self) -> int:
        """Claim and queue every due connection now (batch after batch); how many queued."""
        queued = 0
        while True:
            batch, skipped = await self.claim_batch()
            queued += batch
            if batch + skipped < self.batch_size:
                return queued

    async def claim_batch(self) -> tuple[int, int]:
        engine = self.engine
        now = engine.clock.now()
        with CLAIM_SECONDS.time():
            async with engine.pool.acquire() as conn, conn.transaction():
                due, skipped = await sync_state.claim_due(
                    conn, now, self.intervals, self.batch_size
                )
                # Inside the transaction: a publish that fails rolls the claim back, so
                # the connection stays due instead of silently missing its sync.
                await asyncio.gather(*(self._queue(item) for item in due))
        for item in due:
            CLAIMED.labels(item.provider, "queued").inc()
        if skipped:
            CLAIMED.labels("any", "recently_synced").inc(skipped)
        return len(due), skipped

    async def _queue(self, item: sync_state.Due) -> None:
        request_id = f"scheduled:{item.user_id}:{item.provider}:{int(item.slot.timestamp())}"
        command = SyncRequested(
            request_id=request_id,
            user_id=item.user_id,
            provider=item.provider,
            kind="scheduled",
            requested_at=self.engine.clock.now(),
            priority="background",
        )
        await self.engine.publish(command.subject, command, request_id)

    async def enrichment_pass(self) -> int:
        """Fill what earlier enrichment missed; how many activities it completed."""
        if self.enricher is None:
            return 0
        completed = 0
        async with self.engine.pool.acquire() as conn, conn.transaction():
            items = await strava_store.unenriched(conn, self.enrichment_batch)
            points = [
                None
                if i.start_lat is None or i.start_lng is None
                else Point(i.start_lat, i.start_lng, i.start_date)
                for i in items
            ]
            # Geocoding is 1/s: a few lookups per tick, the rest in the next ones.
            found = await self.enricher.find(points, lookups=min(len(points), 5))
            for item, result in zip(items, found, strict=True):
                status = {k: item.status.get(k, False) or v for k, v in result.status.items()}
                await strava_store.set_enrichment(
                    conn,
                    item,
                    weather=result.weather,
                    city=result.place.city if result.place else None,
                    state=result.place.state if result.place else None,
                    country=result.place.country if result.place else None,
                    status=status,
                )
                done = all(status.values())
                completed += done
                ENRICHED.labels("completed" if done else "still_missing").inc()
        return completed

    async def run_once(self) -> None:
        """One tick: queue what is due, then fill missing enrichment. A failing tick
        does not skip the enrichment pass."""
        try:
            await self.tick()
        finally:
            await self.enrichment_pass()
