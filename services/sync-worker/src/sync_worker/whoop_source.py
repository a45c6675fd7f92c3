"""WHOOP recovery, sleep, cycle and workout as engine :class:`~sync_worker.engine.Source`\\ s
(issue 7; PROVIDERS.md §7.3, §7.4, §7.6). One class, one instance per collection: the
four differ only in the collection they walk and the table they fill.

Checkpoint (the session's cursor for the current type, saved with each stored page)::

    {"start": RFC 3339 | null, "end": null, "next_token": "<WHOOP's token>" | null}

A backfill walks from ``start`` = the configured horizon (null: all history); an
incremental walk starts ``overlap`` before the newest stored record, so records scored
or edited after we stored them are read again (an unchanged one is not rewritten).
``end`` stays open (WHOOP: now): collections are listed newest first behind a keyset
token, so records created during the walk land before the token, never inside the pages
still to come; the next walk catches them. WHOOP's token is only meaningful with the
bounds it was issued for, so they travel with it; a token WHOOP refuses restarts the
walk of that type from its first page (upserts make a re-read harmless).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from syncplane_common.contracts import ProviderName, SyncRequested
from syncplane_common.errors import CursorInvalidError, NotFoundError
from syncplane_common.tokens import TokenLease

from sync_worker import store_whoop
from sync_worker._source_base import TableSource, walk_start
from sync_worker.budget import RateBudget, whoop_client_observed
from sync_worker.engine import FetchedPage, Source, Stored
from sync_worker.providers._http import utc_millis
from sync_worker.providers.whoop import KINDS, MAX_LIMIT, Kind, WhoopClient, WhoopUsage

if TYPE_CHECKING:
    from sync_worker.engine import Conn
    from sync_worker.store_records import StoredRow


def _instant(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError as err:
        raise CursorInvalidError(f"whoop checkpoint bound is not a date-time: {value!r}") from err


def _text(value: datetime | None) -> str | None:
    return None if value is None else utc_millis(value, "WHOOP bounds")


class WhoopCollection(TableSource):
    provider: ProviderName = "whoop"

    def __init__(
        self,
        kind: Kind,
        client: WhoopClient,
        *,
        per_page: int = MAX_LIMIT,
        backfill_since: datetime | None = None,
        overlap: timedelta = timedelta(days=2),
        budget: RateBudget | None = None,
    ) -> None:
        self.data_type: str = kind
        self.kind: Kind = kind
        self.table = store_whoop.TABLES[kind]
        # WHOOP sends no cycle events today; the gateway would carry one if it came.
        self.webhook_kinds: frozenset[str] = frozenset({kind})
        self.client = client
        self.per_page = per_page
        self.backfill_since = backfill_since
        self.overlap = overlap
        self.budget = budget

    def initial_checkpoint(
        self, command: SyncRequested, newest_stored: datetime | None, now: datetime
    ) -> dict[str, Any]:
        start, _ = walk_start(
            command, newest_stored, backfill_since=self.backfill_since, overlap=self.overlap
        )
        return {"start": _text(start), "end": None, "next_token": None}

    async def fetch(self, lease: TokenLease, checkpoint: dict[str, Any]) -> FetchedPage:
        start, end = _instant(checkpoint.get("start")), _instant(checkpoint.get("end"))
        token = checkpoint.get("next_token") or None

        async def page(next_token: str | None) -> Any:
            return await lease.call(
                lambda access: self.client.list_page(
                    access,
                    self.kind,
                    start=start,
                    end=end,
                    next_token=next_token,
                    limit=self.per_page,
                )
            )

        try:
            got = await page(token)
        except CursorInvalidError:
            if token is None:
                raise
            got = await page(None)
        await self.observe(got.usage)
        after = None if got.next_cursor is None else got.next_cursor["next_token"]
        return FetchedPage(
            items=got.items,
            checkpoint={**checkpoint, "next_token": after},
            last=got.is_last,
            invalid=len(got.invalid),
        )

    async def observe(self, usage: WhoopUsage | None) -> None:
        """WHOOP's X-RateLimit-* headers correct the shared budget (PROVIDERS.md §7.2)."""
        if self.budget is not None and usage is not None:
            await self.budget.observe(self.provider, whoop_client_observed(usage))

    async def _upsert(self, conn: Conn, user_id: str, items: list[Any], now: datetime) -> Stored:
        changes = await store_whoop.upsert(conn, user_id, self.kind, items, now)
        return Stored(
            added=changes.added,
            updated=changes.updated,
            unchanged=len(items) - len(changes.added) - len(changes.updated),
        )

    def _answer(self, row: StoredRow) -> dict[str, Any]:
        return _row(row, self.table.key.name)

    async def fetch_one(self, lease: TokenLease, object_id: str) -> Any | None:
        try:
            fetched = await lease.call(lambda access: self.client.get(access, self.kind, object_id))
        except NotFoundError:
            return None
        await self.observe(fetched.usage)
        return fetched.record

    async def delete(self, conn: Conn, user_id: str, object_ids: Sequence[str]) -> Stored:
        gone = await store_whoop.delete(conn, user_id, self.kind, object_ids)
        return Stored(deleted=tuple(gone))


def _row(stored: StoredRow, key: str) -> dict[str, Any]:
    """A stored record as a smart read answers it: WHOOP's id (as ``id`` and under its
    column name), the typed columns (instants as RFC 3339) and the record exactly as WHOOP
    sent it."""
    row = {"id": str(stored.key), key: str(stored.key)}
    for name, value in stored.columns.items():
        row[name] = value.isoformat() if isinstance(value, datetime) else value
    row["record"] = stored.raw
    row["synced_at"] = stored.updated_at.isoformat()
    return row


def whoop_sources(
    client: WhoopClient,
    *,
    per_page: int = MAX_LIMIT,
    backfill_since: datetime | None = None,
    overlap: timedelta = timedelta(days=2),
    budget: RateBudget | None = None,
) -> list[Source]:
    """The four collections, in the order a session runs them (KINDS)."""
    return [
        WhoopCollection(
            kind,
            client,
            per_page=per_page,
            backfill_since=backfill_since,
            overlap=overlap,
            budget=budget,
        )
        for kind in KINDS
    ]
