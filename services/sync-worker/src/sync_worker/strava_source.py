"""Strava activities as an engine :class:`~sync_worker.engine.Source` (issue 6;
PROVIDERS.md §3.3).

Checkpoint (the session's cursor, saved with each stored page)::

    {"mode": "backfill" | "incremental", "page": next page, "after": epoch s | null,
     "before": epoch s | null}

A backfill fixes ``before`` at the session's start, so activities uploaded meanwhile do
not shift the numbered pages under it (they are the next incremental's business). An
incremental sync asks for ``after`` = newest stored start - overlap and no ``before``:
Strava then lists oldest first, so new uploads land after the pages already read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from syncplane_common.contracts import ProviderName, SyncRequested
from syncplane_common.errors import NotFoundError
from syncplane_common.tokens import TokenLease

from sync_worker import strava_store
from sync_worker._source_base import walk_start
from sync_worker.budget import RateBudget, strava_observed
from sync_worker.engine import FetchedPage, Rows, Stored
from sync_worker.enrichment.activities import ActivityEnricher
from sync_worker.providers.strava import Activity, StravaClient, StravaUsage
from sync_worker.strava_store import StoredActivity

if TYPE_CHECKING:
    from sync_worker.engine import Conn


def _epoch(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())


class StravaActivities:
    provider: ProviderName = "strava"
    data_type = "activities"
    webhook_kinds = frozenset({"activity"})

    def __init__(
        self,
        client: StravaClient,
        enricher: ActivityEnricher | None,
        *,
        per_page: int = 200,
        backfill_since: datetime | None = None,
        overlap: timedelta = timedelta(hours=1),
        sport_types: frozenset[str] = frozenset(),
        budget: RateBudget | None = None,
    ) -> None:
        self.client = client
        self.enricher = enricher
        self.per_page = per_page
        self.backfill_since = backfill_since
        self.overlap = overlap
        self.sport_types = sport_types
        self.budget = budget

    def initial_checkpoint(
        self, command: SyncRequested, newest_stored: datetime | None, now: datetime
    ) -> dict[str, Any]:
        after, backfill = walk_start(
            command, newest_stored, backfill_since=self.backfill_since, overlap=self.overlap
        )
        if backfill:
            return {"mode": "backfill", "page": 1, "after": _epoch(after), "before": _epoch(now)}
        return {"mode": "incremental", "page": 1, "after": _epoch(after), "before": None}

    async def newest_stored(self, conn: Conn, user_id: str) -> datetime | None:
        return await strava_store.newest_start(conn, user_id)

    def _keep(self, activity: Activity) -> bool:
        return not self.sport_types or activity.sport_type in self.sport_types

    async def fetch(self, lease: TokenLease, checkpoint: dict[str, Any]) -> FetchedPage:
        number = int(checkpoint.get("page", 1))
        page = await lease.call(
            lambda token: self.client.list_activities(
                token,
                after=checkpoint.get("after"),
                before=checkpoint.get("before"),
                page=number,
                per_page=self.per_page,
            )
        )
        await self.observe(page.usage)
        kept = [a for a in page.activities if self._keep(a)]
        return FetchedPage(
            items=kept,
            checkpoint={**checkpoint, "page": number + 1},
            last=page.is_last,
            invalid=len(page.invalid),
            filtered=tuple(str(a.id) for a in page.activities if not self._keep(a)),
        )

    async def observe(self, usage: StravaUsage | None) -> None:
        """Strava's usage headers correct the shared budget (PROVIDERS.md §3.2)."""
        if self.budget is not None and usage is not None:
            await self.budget.observe(self.provider, strava_observed(usage))

    async def enrich(
        self, conn: Conn, user_id: str, items: Sequence[Any], *, quick: bool = False
    ) -> list[StoredActivity]:
        activities: list[Activity] = list(items)
        if self.enricher is None or not activities:
            return [StoredActivity(a, enrichment=_nothing_to_fill()) for a in activities]
        if quick:
            # Caches only: nothing is saved by first asking what is stored.
            return await self.enricher.enrich(activities, quick=True)
        # An activity stored with the same payload is not rewritten: do not look it up.
        stored = await strava_store.stored_hashes(conn, user_id, (a.id for a in activities))
        changed = [a for a in activities if stored.get(a.id) != strava_store.content_hash(a.raw)]
        enriched = {s.activity.id: s for s in await self.enricher.enrich(changed, quick=quick)}
        return [enriched.get(a.id) or StoredActivity(a) for a in activities]

    async def store(
        self,
        conn: Conn,
        user_id: str,
        items: Sequence[Any],
        now: datetime,
        *,
        filtered: Sequence[str] = (),
    ) -> Stored:
        written = await strava_store.upsert(conn, user_id, list(items), now)
        # An activity changed into a filtered sport type must not linger as it was.
        dropped: tuple[int, ...] = ()
        if filtered:
            dropped = await strava_store.delete(conn, user_id, (int(i) for i in filtered))
        return Stored(
            added=tuple(str(i) for i in written.added),
            updated=tuple(str(i) for i in written.updated),
            deleted=tuple(str(i) for i in dropped),
            unchanged=written.unchanged,
            skipped=len(filtered),
        )

    async def read(
        self,
        conn: Conn,
        user_id: str,
        *,
        start: datetime | None,
        end: datetime | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        rows, _, _ = await strava_store.read_synced(
            conn, user_id, None, start=start, end=end, limit=limit
        )
        return rows

    async def read_versioned(
        self,
        conn: Conn,
        user_id: str,
        *,
        start: datetime | None,
        end: datetime | None,
        limit: int,
    ) -> Rows:
        log = (self.provider, self.data_type)
        rows, versions, last = await strava_store.read_synced(
            conn, user_id, log, start=start, end=end, limit=limit
        )
        return Rows(rows, versions, last)

    async def versions(
        self,
        conn: Conn,
        user_id: str,
        *,
        start: datetime | None,
        end: datetime | None,
        limit: int,
    ) -> tuple[tuple[str, ...], datetime | None]:
        log = (self.provider, self.data_type)
        return await strava_store.versions(conn, user_id, log, start=start, end=end, limit=limit)

    async def purge(self, conn: Conn, user_id: str) -> int:
        return await strava_store.delete_user(conn, user_id)

    async def fetch_one(self, lease: TokenLease, object_id: str) -> Activity | None:
        try:
            fetched = await lease.call(
                lambda token: self.client.get_activity(token, int(object_id))
            )
        except NotFoundError:
            return None
        await self.observe(fetched.usage)
        return fetched.activity if self._keep(fetched.activity) else None

    async def delete(self, conn: Conn, user_id: str, object_ids: Sequence[str]) -> Stored:
        gone = await strava_store.delete(conn, user_id, (int(i) for i in object_ids))
        return Stored(deleted=tuple(str(i) for i in gone))


def _nothing_to_fill() -> dict[str, bool]:
    return {"weather": True, "geocoding": True}
