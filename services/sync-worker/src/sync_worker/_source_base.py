"""What the engine's sources (:class:`~sync_worker.engine.Source`) have in common beyond
the engine: where a walk starts, and the methods of a type whose rows live in one
:mod:`sync_worker.store_records` table (WHOOP's four, Google Fit's two). A provider module
keeps only how it fetches, which rows it writes and how a stored row reads back.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeAlias

from syncplane_common.contracts import SyncRequested

from sync_worker import store_records
from sync_worker.engine import Rows, Stored

if TYPE_CHECKING:
    from sync_worker.engine import Conn
    from sync_worker.store_records import StoredRow, Table

__all__ = ["Bounds", "TableSource", "from_horizon", "walk_start"]

# What a smart read bounds the rows by (``since`` inclusive, ``until`` exclusive), in the
# table's own sort column: instants, or local dates for Fit's days.
Bounds: TypeAlias = tuple[datetime | date | None, datetime | date | None]


def from_horizon(command: SyncRequested, newest_stored: object) -> bool:
    """Whether the walk reads the whole horizon: a backfill does, and so does any sync of
    a type with nothing stored yet (there is no newest record to overlap from)."""
    return command.kind == "backfill" or newest_stored is None


def walk_start(
    command: SyncRequested,
    newest_stored: datetime | None,
    *,
    backfill_since: datetime | None,
    overlap: timedelta,
) -> tuple[datetime | None, bool]:
    """Where a time-bounded walk starts, and whether it is a backfill: the command's own
    ``since`` or the configured horizon (None: all history), else ``overlap`` before the
    newest stored record, so records the provider revised after we stored them are read
    again."""
    if from_horizon(command, newest_stored):
        return command.since or backfill_since, True
    assert newest_stored is not None  # from_horizon reads a type with nothing stored
    return newest_stored - overlap, False


class TableSource:
    """The :class:`~sync_worker.engine.Source` methods of a type stored in ``table`` as
        the provider sent it: no enrichment, reads newest first, a purge deletes the user's
        rows. Subclasses write rows in :meth:`_upsert` and shape them in :meth:`_answer`; a
    smart read gets the rows' versions and the type's last success in the same statement."""

    provider: str
    data_type: str
    table: Table

    async def enrich(
        self, conn: Conn, user_id: str, items: Sequence[Any], *, quick: bool = False
    ) -> Sequence[Any]:
        return items

    async def store(
        self,
        conn: Conn,
        user_id: str,
        items: Sequence[Any],
        now: datetime,
        *,
        filtered: Sequence[str] = (),
    ) -> Stored:
        # No source over a table filters what it lists: ``filtered`` is always empty.
        return await self._upsert(conn, user_id, list(items), now)

    async def read(
        self,
        conn: Conn,
        user_id: str,
        *,
        start: datetime | None,
        end: datetime | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        return (await self._rows(conn, user_id, None, start, end, limit)).rows

    async def read_versioned(
        self,
        conn: Conn,
        user_id: str,
        *,
        start: datetime | None,
        end: datetime | None,
        limit: int,
    ) -> Rows:
        return await self._rows(conn, user_id, self._log, start, end, limit)

    async def versions(
        self,
        conn: Conn,
        user_id: str,
        *,
        start: datetime | None,
        end: datetime | None,
        limit: int,
    ) -> tuple[tuple[str, ...], datetime | None]:
        since, until = self._bounds(start, end)
        return await store_records.versions(
            conn, self.table, user_id, self._log, since=since, until=until, limit=limit
        )

    async def newest_stored(self, conn: Conn, user_id: str) -> datetime | None:
        value: datetime | None = await store_records.newest(conn, self.table, user_id)
        return value

    async def purge(self, conn: Conn, user_id: str) -> int:
        return await store_records.delete_user(conn, self.table, user_id)

    @property
    def _log(self) -> tuple[str, str]:
        """This type's sync-log key, read with the rows."""
        return (self.provider, self.data_type)

    async def _rows(
        self,
        conn: Conn,
        user_id: str,
        log: tuple[str, str] | None,
        start: datetime | None,
        end: datetime | None,
        limit: int,
    ) -> Rows:
        since, until = self._bounds(start, end)
        rows, last = await store_records.recent_synced(
            conn, self.table, user_id, log, since=since, until=until, limit=limit
        )
        return Rows([self._answer(r) for r in rows], tuple(r.version for r in rows), last)

    def _bounds(self, start: datetime | None, end: datetime | None) -> Bounds:
        return start, end

    async def _upsert(self, conn: Conn, user_id: str, items: list[Any], now: datetime) -> Stored:
        raise NotImplementedError

    def _answer(self, row: StoredRow) -> dict[str, Any]:
        """A stored row as a smart read answers it."""
        raise NotImplementedError
