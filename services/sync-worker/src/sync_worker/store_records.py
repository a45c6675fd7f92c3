"""The SQL every provider record table shares (migrations 0006, 0007): a batched upsert
that leaves unchanged rows alone, deletes by id, and newest-first reads.

A table is described once (:class:`Table`) by its provider modules (``store_whoop``,
``store_google_fit``); the statements are built from that description only, never from
input. The upsert sends one array per column through ``unnest`` (one round trip per
batch) and updates a conflicting row only when its ``content_hash`` differs, so an
unchanged record costs no new tuple and is reported neither as added nor as updated: the
engine publishes ``records.changed.<provider>.<type>`` for exactly what it returns.

jsonb goes over the wire as text (``::text`` / ``::jsonb`` casts) so these functions work
on any connection, with or without the pool's jsonb codec. Every function takes the
caller's connection: inside the engine's transaction the rows commit with the checkpoint.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar

import asyncpg

from sync_worker import sync_state

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Db: TypeAlias = (
        asyncpg.Pool[asyncpg.Record]
        | PoolConnectionProxy[asyncpg.Record]
        | asyncpg.Connection[asyncpg.Record]
    )

__all__ = [
    "Changes",
    "Column",
    "Row",
    "StoredRow",
    "Table",
    "delete",
    "delete_user",
    "newest",
    "recent",
    "recent_synced",
    "upsert",
    "versions",
]

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    pg_type: str


@dataclass(frozen=True, slots=True)
class Table:
    """A provider record table: ``(user_id, key)`` is its primary key, ``columns`` its
    typed columns in the order :class:`Row` values come, ``order_by`` the column reads
    sort on (newest first) and filter by."""

    name: str
    key: Column
    columns: tuple[Column, ...]
    order_by: str


@dataclass(frozen=True, slots=True)
class Row:
    """One record to store: its key, typed values (in the table's column order), the raw
    payload and its content hash."""

    key: Any
    values: tuple[Any, ...]
    raw: Any
    content_hash: str


@dataclass(frozen=True, slots=True)
class Changes(Generic[K]):
    """What an upsert really changed: keys inserted and keys whose content moved."""

    added: tuple[K, ...] = ()
    updated: tuple[K, ...] = ()

    @property
    def changed(self) -> tuple[K, ...]:
        return self.added + self.updated


@dataclass(frozen=True, slots=True)
class StoredRow:
    """A stored record as reads return it: key, sort instant or date, the typed columns by
    name, the raw payload decoded, and our bookkeeping."""

    key: Any
    at: datetime | date | None
    columns: dict[str, Any]
    raw: Any
    content_hash: str
    fetched_at: datetime
    updated_at: datetime
    # The row version (see :func:`versions`): what a cache of answered rows checks.
    version: str = ""


def _last_per_key(rows: Sequence[Row]) -> list[Row]:
    # One statement cannot touch a row twice (ON CONFLICT DO UPDATE refuses): of several
    # versions in a batch, the last one is what the provider said most recently.
    by_key: dict[Any, Row] = {}
    for row in rows:
        by_key.pop(row.key, None)
        by_key[row.key] = row
    return list(by_key.values())


def _upsert_sql(table: Table) -> str:
    columns = (table.key, *table.columns)
    n = len(columns)
    arrays = ", ".join(f"${i + 2}::{c.pg_type}[]" for i, c in enumerate(columns))
    names = ", ".join(c.name for c in columns)
    typed = ", ".join(c.name for c in table.columns)
    updates = ",\n            ".join(f"{c.name} = EXCLUDED.{c.name}" for c in table.columns)
    return f"""
        WITH input AS (
            SELECT * FROM unnest({arrays}, ${n + 2}::text[], ${n + 3}::text[])
                AS t({names}, raw, content_hash)
        )
        INSERT INTO {table.name} AS stored (
            user_id, {names}, raw, content_hash, fetched_at, updated_at
        )
        SELECT $1, {table.key.name}, {typed}, raw::jsonb, content_hash, ${n + 4}, ${n + 4}
        FROM input
        ON CONFLICT (user_id, {table.key.name}) DO UPDATE SET
            {updates},
            raw = EXCLUDED.raw,
            content_hash = EXCLUDED.content_hash,
            updated_at = EXCLUDED.updated_at
        WHERE stored.content_hash IS DISTINCT FROM EXCLUDED.content_hash
        RETURNING {table.key.name} AS key, (xmax = 0) AS inserted
    """  # noqa: S608 - built from the fixed table description only


async def upsert(
    db: Db, table: Table, user_id: str, rows: Sequence[Row], now: datetime
) -> Changes[Any]:
    """Stores ``rows`` for ``user_id``; a row whose hash equals the stored one is not
    written. Returns the keys added and updated, in the order given."""
    batch = _last_per_key(rows)
    if not batch:
        return Changes()
    width = len(table.columns)
    for row in batch:
        if len(row.values) != width:
            raise ValueError(f"{table.name} rows have {width} values, got {len(row.values)}")
    arrays = [[row.key for row in batch]]
    arrays += [[row.values[i] for row in batch] for i in range(width)]
    raws = [json.dumps(row.raw, ensure_ascii=False) for row in batch]
    hashes = [row.content_hash for row in batch]
    records = await db.fetch(_upsert_sql(table), user_id, *arrays, raws, hashes, now)
    inserted = {r["key"]: r["inserted"] for r in records}
    order = [row.key for row in batch if row.key in inserted]
    return Changes(
        added=tuple(k for k in order if inserted[k]),
        updated=tuple(k for k in order if not inserted[k]),
    )


async def delete(db: Db, table: Table, user_id: str, keys: Sequence[Any]) -> list[Any]:
    """Deletes ``keys`` of ``user_id``; returns those that existed."""
    if not keys:
        return []
    records = await db.fetch(
        f"DELETE FROM {table.name} WHERE user_id = $1 AND {table.key.name} = ANY($2::"  # noqa: S608
        f"{table.key.pg_type}[]) RETURNING {table.key.name} AS key",
        user_id,
        list(keys),
    )
    return [r["key"] for r in records]


async def delete_user(db: Db, table: Table, user_id: str) -> int:
    """Deletes every row of ``user_id`` (a revoked connection's data); how many."""
    status = await db.execute(f"DELETE FROM {table.name} WHERE user_id = $1", user_id)  # noqa: S608
    return int(status.split()[-1])


async def newest(db: Db, table: Table, user_id: str) -> Any:
    """The greatest ``order_by`` value stored for ``user_id`` (None when nothing is)."""
    return await db.fetchval(
        f"SELECT max({table.order_by}) FROM {table.name} WHERE user_id = $1",  # noqa: S608
        user_id,
    )


async def recent(
    db: Db,
    table: Table,
    user_id: str,
    *,
    since: datetime | date | None = None,
    until: datetime | date | None = None,
    limit: int = 30,
) -> list[StoredRow]:
    """``user_id``'s newest rows first: ``since`` inclusive, ``until`` exclusive, on the
    table's ``order_by`` column."""
    rows, _ = await recent_synced(db, table, user_id, None, since=since, until=until, limit=limit)
    return rows


async def recent_synced(
    db: Db,
    table: Table,
    user_id: str,
    log: tuple[str, str] | None,
    *,
    since: datetime | date | None = None,
    until: datetime | date | None = None,
    limit: int = 30,
) -> tuple[list[StoredRow], datetime | None]:
    """:func:`recent`, and with ``log`` (provider, data type) the sync log's last success
    of that type read by the same statement (None when no row came back: it rides on
    the rows, see :func:`sync_state.last_success_column`)."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    records = await db.fetch(
        _recent_sql(table, synced=log is not None),
        user_id,
        since,
        until,
        limit,
        *(log or ()),
    )
    order = table.order_by
    rows = [
        StoredRow(
            key=r["key"],
            at=r[order] if order != table.key.name else r["key"],
            columns={c.name: r[c.name] for c in table.columns},
            raw=json.loads(r["raw_text"]),
            content_hash=r["content_hash"],
            fetched_at=r["fetched_at"],
            updated_at=r["updated_at"],
            version=r["version"],
        )
        for r in records
    ]
    last: datetime | None = records[0]["last_success_at"] if records and log else None
    return rows, last


# A row's version: its key and the transaction that wrote this version of it. Every
# UPDATE writes a new row version with the writing transaction's id, so two committed
# versions of one row never share it (freezing keeps the raw xmin since PostgreSQL 9.4).
# The cheapest exact answer to "is this still the row I answered before?".
_VERSION = "{key}::text || '@' || xmin::text"


async def versions(
    db: Db,
    table: Table,
    user_id: str,
    log: tuple[str, str],
    *,
    since: datetime | date | None = None,
    until: datetime | date | None = None,
    limit: int = 30,
) -> tuple[tuple[str, ...], datetime | None]:
    """The versions of the rows :func:`recent_synced` would return, in its order, and the
    sync log's last success of ``log`` (None when no row came back): reading neither the
    rows nor their payloads."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    records = await db.fetch(
        _versions_sql(table),
        user_id,
        since,
        until,
        limit,
        *log,
    )
    last: datetime | None = records[0]["last_success_at"] if records else None
    return tuple(r["version"] for r in records), last


# The statements are built once per table: at a thousand reads a second building them
# again each time showed in the profile.


@functools.cache
def _recent_sql(table: Table, *, synced: bool) -> str:
    typed = ", ".join(c.name for c in table.columns)
    version = _VERSION.format(key=table.key.name)
    last = f", {sync_state.last_success_column(1, 5, 6)}" if synced else ""
    return f"""
        SELECT {table.key.name} AS key, {typed}, raw::text AS raw_text, content_hash,
               fetched_at, updated_at, {version} AS version{last}
        {_window(table)}
        """


@functools.cache
def _versions_sql(table: Table) -> str:
    return f"""
        SELECT {_VERSION.format(key=table.key.name)} AS version,
               {sync_state.last_success_column(1, 5, 6)}
        {_window(table)}
        """


def _window(table: Table) -> str:
    """FROM ... LIMIT of the newest-first reads: ``$1`` the user, ``$2`` / ``$3`` the
    bounds on ``order_by`` (inclusive / exclusive), ``$4`` the limit."""
    order = table.order_by
    order_type = next((c.pg_type for c in table.columns if c.name == order), table.key.pg_type)
    return f"""
        FROM {table.name}
        WHERE user_id = $1
          AND ($2::{order_type} IS NULL OR {order} >= $2)
          AND ($3::{order_type} IS NULL OR {order} < $3)
        ORDER BY {order} DESC, {table.key.name} DESC
        LIMIT $4"""
