"""What the engine's sources (:class:`~sync_worker.engine.Source`) have in common beyond
the engine: where a walk starts, and the methods of a type whose rows live in one
:mod:`sync_worker.store_records` table (WHOOP's four, Google Fit's two). A provider module
keeps only how it fetches, which rows it writes and how a stored row reads back.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeAlias

from syncplane_common.contracts import SyncRequested

from sync_worker import store_records
from sync_worker.engine import Stored

if TYPE_CHECKING:
    from sync_worker.engine import Conn
    from sync_worker.store_records import Table

__all__ = ["Rows", "Span", "TableSource", "from_horizon", "walk_start"]

# What a smart read asks for (``since`` inclusive, ``until`` exclusive) and answers.
Span: TypeAlias = tuple[datetime | None, datetime | None]
Rows: TypeAlias = list[dict[str, Any]]


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
    rows. Subclasses write rows in :meth:`_upsert` and shape them in :meth:`_read`."""

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
    ) -> Rows:
        return await self._read(conn, user_id, (start, end), limit)

    async def newest_stored(self, conn: Conn, user_id: str) -> datetime | None:
        value: datetime | None = await store_records.newest(conn, self.table, user_id)
        return value

    async def purge(self, conn: Conn, user_id: str) -> int:
        return await store_records.delete_user(conn, self.table, user_id)

    async def _upsert(self, conn: Conn, user_id: str, items: list[Any], now: datetime) -> Stored:
        raise NotImplementedError

    async def _read(self, conn: Conn, user_id: str, span: Span, limit: int) -> Rows:
        raise NotImplementedError
