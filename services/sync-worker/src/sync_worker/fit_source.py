"""Google Fit daily aggregates and sessions as engine :class:`~sync_worker.engine.Source`s
(``google_fit/daily``, ``google_fit/sessions``; issue 7, PROVIDERS.md §6). The unified
run (:mod:`sync_worker.fit_run`) uses the same fetch and store.

Daily checkpoint: before the first page ``{"stream": "daily", "plan_days": N, "as_of":
<instant>}``, the last N local days up to ``as_of`` in the user's zone (read when the
first page is fetched, so a zone set meanwhile counts); then the client's daily cursor
(``next_day`` / ``last_day`` / ``time_zone``), one ``dataset:aggregate`` window of at
most 89 days a page. A backfill plans ``backfill_days``, any other sync ``days_back``:
Google revises recent days, so they are read again every time and a row is rewritten
only when a value moved.

Sessions checkpoint: ``{"stream": "sessions_window", "start": ..., "end": ...}``, one
time-bounded ``sessions.list`` (the sessions that end in the window; Google answers it in
one page), over the same span as the days.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from syncplane_common.contracts import ProviderName, SyncRequested
from syncplane_common.errors import CursorInvalidError, PermanentError
from syncplane_common.tokens import TokenLease

from sync_worker import store_google_fit
from sync_worker._source_base import Bounds, TableSource, from_horizon
from sync_worker.engine import FetchedPage, Stored
from sync_worker.fit_store import TimeZones
from sync_worker.providers._records import Cursor, CursorPage
from sync_worker.providers.google_fit import (
    MAX_DAYS_PER_REQUEST,
    FitDay,
    FitSession,
    GoogleFitClient,
    zone_of,
)

if TYPE_CHECKING:
    from sync_worker.engine import Conn
    from sync_worker.store_records import StoredRow

__all__ = ["GoogleFitDaily", "GoogleFitSessions", "local_days"]


def local_days(now: datetime, time_zone: str, count: int) -> tuple[date, date]:
    """The ``count`` local calendar days ending today in ``time_zone``."""
    today = now.astimezone(zone_of(time_zone)).date()
    return today - timedelta(days=count - 1), today


def _plan_days(command: SyncRequested, backfill: int, recent: int, newest: object) -> int:
    return backfill if from_horizon(command, newest) else recent


async def _first(pages: AsyncIterator[CursorPage[Any, None]]) -> CursorPage[Any, None]:
    async for page in pages:
        return page
    raise CursorInvalidError("the cursor named no window")


class GoogleFitDaily(TableSource):
    provider: ProviderName = "google_fit"
    data_type = "daily"
    table = store_google_fit.DAILY
    webhook_kinds: frozenset[str] = frozenset()  # Fit has no push (§6.1): it is polled

    def __init__(
        self, client: GoogleFitClient, zones: TimeZones, *, days_back: int, backfill_days: int
    ) -> None:
        self.client = client
        self.zones = zones
        self.days_back = days_back
        self.backfill_days = backfill_days

    def initial_checkpoint(
        self, command: SyncRequested, newest_stored: datetime | None, now: datetime
    ) -> dict[str, Any]:
        days = _plan_days(command, self.backfill_days, self.days_back, newest_stored)
        return {"stream": "daily", "plan_days": days, "as_of": now.isoformat()}

    async def newest_stored(self, conn: Conn, user_id: str) -> datetime | None:
        rows = await store_google_fit.recent_days(conn, user_id, limit=1)
        return rows[0].columns["day_start"] if rows else None

    async def window(self, user_id: str, now: datetime, days: int) -> Cursor:
        """The daily cursor of the last ``days`` local days of ``user_id``."""
        zone = await self.zones.get(user_id)
        first, last = local_days(now, zone, days)
        return {
            "stream": "daily",
            "next_day": first.isoformat(),
            "last_day": last.isoformat(),
            "time_zone": zone,
            "days_per_request": MAX_DAYS_PER_REQUEST,
        }

    async def fetch(self, lease: TokenLease, checkpoint: dict[str, Any]) -> FetchedPage:
        cursor: Cursor = checkpoint
        if "next_day" not in checkpoint:
            try:
                as_of = datetime.fromisoformat(str(checkpoint["as_of"]))
                days = int(checkpoint["plan_days"])
            except (KeyError, ValueError) as err:
                raise PermanentError(f"not a Google Fit daily plan: {checkpoint!r}") from err
            cursor = await self.window(lease.user_id, as_of, days)
        page = await lease.call(lambda token: _first(self.client.resume_daily(token, cursor)))
        return FetchedPage(
            items=page.items,
            # The last window keeps its own cursor: where the session ended, for the record.
            checkpoint=page.next_cursor or {**cursor, "done": True},
            last=page.is_last,
            invalid=len(page.invalid),
        )

    async def _upsert(self, conn: Conn, user_id: str, items: list[Any], now: datetime) -> Stored:
        days: list[FitDay] = items
        changes = await store_google_fit.upsert_days(conn, user_id, days, now)
        return Stored(
            added=tuple(d.isoformat() for d in changes.added),
            updated=tuple(d.isoformat() for d in changes.updated),
            unchanged=len({d.day for d in days}) - len(changes.changed),
        )

    async def fetch_one(self, lease: TokenLease, object_id: str) -> Any | None:
        raise PermanentError("Google Fit sends no webhooks; days are only listed")

    async def delete(self, conn: Conn, user_id: str, object_ids: Sequence[str]) -> Stored:
        gone = await store_google_fit.delete_days(
            conn, user_id, [date.fromisoformat(d) for d in object_ids]
        )
        return Stored(deleted=tuple(d.isoformat() for d in gone))

    def _answer(self, row: StoredRow) -> dict[str, Any]:
        return _row(row.columns, date=row.key.isoformat(), updated_at=row.updated_at)

    def _bounds(self, start: datetime | None, end: datetime | None) -> Bounds:
        # Days are keyed by their local date: a bound instant stands for its day.
        return None if start is None else start.date(), None if end is None else end.date()


class GoogleFitSessions(TableSource):
    provider: ProviderName = "google_fit"
    data_type = "sessions"
    table = store_google_fit.SESSIONS
    webhook_kinds: frozenset[str] = frozenset()

    def __init__(self, client: GoogleFitClient, *, days_back: int, backfill_days: int) -> None:
        self.client = client
        self.days_back = days_back
        self.backfill_days = backfill_days

    def initial_checkpoint(
        self, command: SyncRequested, newest_stored: datetime | None, now: datetime
    ) -> dict[str, Any]:
        days = _plan_days(command, self.backfill_days, self.days_back, newest_stored)
        return self.window(now, days)

    @staticmethod
    def window(now: datetime, days: int) -> dict[str, Any]:
        start = now - timedelta(days=days)
        return {"stream": "sessions_window", "start": start.isoformat(), "end": now.isoformat()}

    async def fetch(self, lease: TokenLease, checkpoint: dict[str, Any]) -> FetchedPage:
        try:
            start = datetime.fromisoformat(str(checkpoint["start"]))
            end = datetime.fromisoformat(str(checkpoint["end"]))
        except (KeyError, ValueError) as err:
            raise PermanentError(f"not a Google Fit sessions window: {checkpoint!r}") from err
        page = await lease.call(
            lambda token: self.client.list_sessions(token, start=start, end=end)
        )
        return FetchedPage(
            items=page.items,
            checkpoint={**checkpoint, "done": True},
            last=True,
            invalid=len(page.invalid),
        )

    async def _upsert(self, conn: Conn, user_id: str, items: list[Any], now: datetime) -> Stored:
        sessions: list[FitSession] = items
        changes = await store_google_fit.upsert_sessions(conn, user_id, sessions, now)
        return Stored(
            added=changes.added,
            updated=changes.updated,
            unchanged=len({s.id for s in sessions}) - len(changes.changed),
        )

    async def fetch_one(self, lease: TokenLease, object_id: str) -> Any | None:
        raise PermanentError("Google Fit sends no webhooks; sessions are only listed")

    async def delete(self, conn: Conn, user_id: str, object_ids: Sequence[str]) -> Stored:
        gone = await store_google_fit.delete_sessions(conn, user_id, list(object_ids))
        return Stored(deleted=tuple(gone))

    def _answer(self, row: StoredRow) -> dict[str, Any]:
        return _row(row.columns, session_id=row.key, updated_at=row.updated_at)


def _row(columns: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A stored row as JSON values: instants and dates as ISO 8601."""
    row = {**extra, **columns}
    return {k: v.isoformat() if isinstance(v, date | datetime) else v for k, v in row.items()}
