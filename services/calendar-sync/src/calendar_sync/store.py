"""calendar-sync's SQL (schema ``calendar``, migrations 0002): the local mirror, mappings,
per-calendar state, the push outbox, the message outbox and the audit. Functions take a
connection so callers choose the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from calendar_sync.domain import Fields, Local, Mapping, instant

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
Record = asyncpg.Record


# -- events --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventRow:
    local: Local
    user_id: str
    calendar_id: str


def _event(row: Record) -> EventRow:
    fields = Fields(
        title=row["title"],
        description=row["description"],
        location=row["location"],
        all_day=row["all_day"],
        start=row["start_value"],
        end=row["end_value"],
        time_zone=row["time_zone"],
        metadata=dict(row["metadata"] or {}),
    )
    local = Local(row["id"], fields, row["version"], row["updated_at"], row["deleted"])
    return EventRow(local, row["user_id"], row["calendar_id"])


async def get_event(
    conn: Conn, user_id: str, event_id: str, *, lock: bool = False
) -> EventRow | None:
    sql = "SELECT * FROM calendar.events WHERE id = $1 AND user_id = $2"
    row = await conn.fetchrow(sql + (" FOR UPDATE" if lock else ""), event_id, user_id)
    return _event(row) if row is not None else None


async def save_event(
    conn: Conn,
    *,
    event_id: str,
    user_id: str,
    calendar_id: str,
    fields: Fields,
    deleted: bool,
    now: datetime,
) -> EventRow:
    """Insert or overwrite the event; its version grows by one. Returns it as stored."""
    row = await conn.fetchrow(
        """
        INSERT INTO calendar.events (id, user_id, calendar_id, title, description, location,
            all_day, start_value, end_value, starts_at, ends_at, time_zone, metadata,
            version, updated_at, deleted, created_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1, $14, $15, $14)
        ON CONFLICT (id) DO UPDATE SET calendar_id = EXCLUDED.calendar_id,
            title = EXCLUDED.title, description = EXCLUDED.description,
            location = EXCLUDED.location, all_day = EXCLUDED.all_day,
            start_value = EXCLUDED.start_value, end_value = EXCLUDED.end_value,
            starts_at = EXCLUDED.starts_at, ends_at = EXCLUDED.ends_at,
            time_zone = EXCLUDED.time_zone, metadata = EXCLUDED.metadata,
            version = calendar.events.version + 1, updated_at = EXCLUDED.updated_at,
            deleted = EXCLUDED.deleted
        RETURNING *
        """,
        event_id,
        user_id,
        calendar_id,
        fields.title,
        fields.description,
        fields.location,
        fields.all_day,
        fields.start,
        fields.end,
        instant(fields.start, fields.all_day),
        instant(fields.end, fields.all_day),
        fields.time_zone,
        fields.metadata,
        now,
        deleted,
    )
    assert row is not None
    return _event(row)


async def list_events(
    conn: Conn,
    user_id: str,
    *,
    calendar_id: str | None,
    start: datetime | None,
    end: datetime | None,
    include_deleted: bool,
    limit: int | None,
) -> list[EventRow]:
    rows = await conn.fetch(
        """
        SELECT * FROM calendar.events
        WHERE user_id = $1 AND ($2::text IS NULL OR calendar_id = $2)
          AND ($3::timestamptz IS NULL OR ends_at > $3)
          AND ($4::timestamptz IS NULL OR starts_at < $4)
          AND ($5 OR NOT deleted)
        ORDER BY starts_at, id
        LIMIT $6
        """,
        user_id,
        calendar_id,
        start,
        end,
        include_deleted,
        limit,
    )
    return [_event(row) for row in rows]


# -- mappings ------------------------------------------------------------------------------


def _mapping(row: Record) -> Mapping:
    base = row["base"]
    return Mapping(
        google_id=row["google_event_id"],
        etag=row["etag"],
        hash_google=row["hash_google"],
        version=row["version"],
        base=Fields.from_json(base) if base is not None else None,
        google_deleted=row["google_deleted"],
    )


async def get_mapping(conn: Conn, event_id: str) -> Mapping | None:
    row = await conn.fetchrow("SELECT * FROM calendar.mappings WHERE event_id = $1", event_id)
    return _mapping(row) if row is not None else None


async def event_id_by_google(
    conn: Conn, user_id: str, calendar_id: str, google_id: str
) -> str | None:
    value: str | None = await conn.fetchval(
        "SELECT event_id FROM calendar.mappings"
        " WHERE user_id = $1 AND calendar_id = $2 AND google_event_id = $3",
        user_id,
        calendar_id,
        google_id,
    )
    return value


async def save_mapping(
    conn: Conn,
    *,
    event_id: str,
    user_id: str,
    calendar_id: str,
    mapping: Mapping,
    google_updated: datetime | None,
    source: str,
    now: datetime,
    written_hash: str | None = None,
    read_hash: str | None = None,
) -> None:
    await conn.execute(
        """
        INSERT INTO calendar.mappings (event_id, user_id, calendar_id, google_event_id, etag,
            hash_written, hash_read, hash_google, base, google_updated, last_modified_at,
            sync_source, version, google_deleted)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
        ON CONFLICT (event_id) DO UPDATE SET google_event_id = EXCLUDED.google_event_id,
            calendar_id = EXCLUDED.calendar_id, etag = EXCLUDED.etag,
            hash_written = COALESCE(EXCLUDED.hash_written, calendar.mappings.hash_written),
            hash_read = COALESCE(EXCLUDED.hash_read, calendar.mappings.hash_read),
            hash_google = EXCLUDED.hash_google, base = EXCLUDED.base,
            google_updated = EXCLUDED.google_updated,
            last_modified_at = EXCLUDED.last_modified_at, sync_source = EXCLUDED.sync_source,
            version = EXCLUDED.version, google_deleted = EXCLUDED.google_deleted
        """,
        event_id,
        user_id,
        calendar_id,
        mapping.google_id,
        mapping.etag,
        written_hash,
        read_hash,
        mapping.hash_google,
        mapping.base.to_json() if mapping.base is not None else None,
        google_updated,
        now,
        source,
        mapping.version,
        mapping.google_deleted,
    )


async def unconfirmed(conn: Conn, user_id: str, calendar_id: str) -> list[str]:
    """Events with a local version Google has not acknowledged, push waiting or not: the
    caller confirms those whose content Google holds already."""
    rows = await conn.fetch(
        """
        SELECT m.event_id FROM calendar.mappings m
        JOIN calendar.events e ON e.id = m.event_id
        WHERE m.user_id = $1 AND m.calendar_id = $2 AND m.version < e.version
        """,
        user_id,
        calendar_id,
    )
    return [row["event_id"] for row in rows]


# -- calendars -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CalendarRow:
    user_id: str
    calendar_id: str
    sync_token: str | None
    channel_id: str | None
    resource_id: str | None
    channel_token: str | None
    channel_expires_at: datetime | None
    push_enabled: bool
    sync_enabled: bool
    renew_failures: int
    last_synced_at: datetime | None


def _calendar(row: Record) -> CalendarRow:
    return CalendarRow(**{k: row[k] for k in CalendarRow.__dataclass_fields__})


async def ensure_calendar(conn: Conn, user_id: str, calendar_id: str) -> None:
    await conn.execute(
        "INSERT INTO calendar.calendars (user_id, calendar_id) VALUES ($1, $2)"
        " ON CONFLICT DO NOTHING",
        user_id,
        calendar_id,
    )


async def get_calendar(
    conn: Conn, user_id: str, calendar_id: str, *, lock: bool = False
) -> CalendarRow | None:
    sql = "SELECT * FROM calendar.calendars WHERE user_id = $1 AND calendar_id = $2"
    row = await conn.fetchrow(sql + (" FOR UPDATE" if lock else ""), user_id, calendar_id)
    return _calendar(row) if row is not None else None


async def calendars_of(conn: Conn, user_id: str) -> list[CalendarRow]:
    rows = await conn.fetch(
        "SELECT * FROM calendar.calendars WHERE user_id = $1 ORDER BY calendar_id", user_id
    )
    return [_calendar(row) for row in rows]


async def save_sync_token(
    conn: Conn, user_id: str, calendar_id: str, token: str | None, now: datetime
) -> None:
    await conn.execute(
        "UPDATE calendar.calendars SET sync_token = $3, last_synced_at = $4"
        " WHERE user_id = $1 AND calendar_id = $2",
        user_id,
        calendar_id,
        token,
        now,
    )


async def update_calendar(conn: Conn, user_id: str, calendar_id: str, **values: Any) -> None:
    allowed = set(CalendarRow.__dataclass_fields__) - {"user_id", "calendar_id"}
    if not values or set(values) - allowed:
        raise ValueError(f"cannot set {sorted(set(values) - allowed)}")
    names = list(values)
    sets = ", ".join(f"{name} = ${i + 3}" for i, name in enumerate(names))
    await conn.execute(
        f"UPDATE calendar.calendars SET {sets} WHERE user_id = $1 AND calendar_id = $2",  # noqa: S608
        user_id,
        calendar_id,
        *(values[n] for n in names),
    )


async def set_sync_enabled(conn: Conn, user_id: str, enabled: bool) -> None:
    await conn.execute(
        "UPDATE calendar.calendars SET sync_enabled = $2 WHERE user_id = $1", user_id, enabled
    )


async def channels_to_renew(conn: Conn, before: datetime, limit: int = 100) -> list[CalendarRow]:
    rows = await conn.fetch(
        """
        SELECT * FROM calendar.calendars
        WHERE sync_enabled AND push_enabled
          AND (channel_expires_at IS NULL OR channel_expires_at <= $1)
        ORDER BY channel_expires_at NULLS FIRST LIMIT $2
        """,
        before,
        limit,
    )
    return [_calendar(row) for row in rows]


async def calendars_to_poll(
    conn: Conn, push_before: datetime, poll_before: datetime, limit: int = 100
) -> list[CalendarRow]:
    rows = await conn.fetch(
        """
        SELECT * FROM calendar.calendars
        WHERE sync_enabled AND (last_synced_at IS NULL
            OR (push_enabled AND last_synced_at <= $1)
            OR (NOT push_enabled AND last_synced_at <= $2))
        ORDER BY last_synced_at NULLS FIRST LIMIT $3
        """,
        push_before,
        poll_before,
        limit,
    )
    return [_calendar(row) for row in rows]


# -- the push outbox -----------------------------------------------------------------------


@dataclass(frozen=True)
class OutboxRow:
    id: int
    user_id: str
    calendar_id: str
    event_id: str
    attempts: int


async def enqueue_push(
    conn: Conn, user_id: str, calendar_id: str, event_id: str, now: datetime
) -> None:
    """One pending row per event: a later edit joins the row already waiting."""
    await conn.execute(
        """
        INSERT INTO calendar.outbox (user_id, calendar_id, event_id, next_attempt_at, created_at)
        VALUES ($1, $2, $3, $4, $4)
        ON CONFLICT (event_id) WHERE status = 'pending' DO NOTHING
        """,
        user_id,
        calendar_id,
        event_id,
        now,
    )


CLAIM_PUSH = """
SELECT o.id, o.user_id, o.calendar_id, o.event_id, o.attempts
FROM calendar.outbox o
LEFT JOIN calendar.calendars c USING (user_id, calendar_id)
WHERE o.status = 'pending' AND o.next_attempt_at <= $1
  AND COALESCE(c.sync_enabled, true)
  AND {users}
ORDER BY {order}
LIMIT 1
FOR UPDATE OF o SKIP LOCKED
"""
# Due rows in the outbox_due index's order, skipping users that must wait for a slot...
CLAIM_FREE = CLAIM_PUSH.format(
    users="o.user_id <> ALL($2::text[])", order="o.next_attempt_at, o.id"
)
# ...and only when none is left, a row of the paced user whose slot comes first.
CLAIM_PACED = CLAIM_PUSH.format(
    users="o.user_id = ANY($2::text[])",
    order="array_position($2::text[], o.user_id), o.next_attempt_at, o.id",
)


async def claim_push(conn: Conn, now: datetime, paced: Sequence[str] = ()) -> OutboxRow | None:
    """The oldest due push of a calendar that syncs, locked for this transaction.
    ``paced``: users without a free Google slot now, soonest free first; their rows are
    taken only when no other user's row is due."""
    row = await conn.fetchrow(CLAIM_FREE, now, list(paced))
    if row is None and paced:
        row = await conn.fetchrow(CLAIM_PACED, now, list(paced))
    return OutboxRow(**dict(row)) if row is not None else None


async def finish_push(
    conn: Conn, row_id: int, status: str, now: datetime, error: str | None = None
) -> None:
    await conn.execute(
        "UPDATE calendar.outbox SET status = $2, done_at = $3, last_error = $4 WHERE id = $1",
        row_id,
        status,
        now,
        error,
    )


async def retry_push(conn: Conn, row_id: int, attempts: int, next_at: datetime, error: str) -> None:
    await conn.execute(
        "UPDATE calendar.outbox SET attempts = $2, next_attempt_at = $3, last_error = $4"
        " WHERE id = $1",
        row_id,
        attempts,
        next_at,
        error,
    )


async def clean_outbox(conn: Conn, before: datetime) -> int:
    result: str = await conn.execute(
        "DELETE FROM calendar.outbox WHERE status <> 'pending' AND done_at < $1", before
    )
    return int(result.split()[-1])


# -- the message outbox --------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    id: int
    subject: str
    msg_id: str
    payload: dict[str, Any]


async def enqueue_message(
    conn: Conn, subject: str, msg_id: str, payload: dict[str, Any], now: datetime
) -> None:
    await conn.execute(
        "INSERT INTO calendar.messages (subject, msg_id, payload, created_at)"
        " VALUES ($1, $2, $3, $4)",
        subject,
        msg_id,
        payload,
        now,
    )


async def pending_messages(conn: Conn, limit: int) -> list[Message]:
    rows = await conn.fetch(
        "SELECT id, subject, msg_id, payload FROM calendar.messages"
        " WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit,
    )
    return [Message(**dict(row)) for row in rows]


async def mark_published(conn: Conn, ids: list[int], now: datetime) -> None:
    await conn.execute(
        "UPDATE calendar.messages SET published_at = $2 WHERE id = ANY($1::bigint[])", ids, now
    )


async def clean_messages(conn: Conn, before: datetime) -> None:
    await conn.execute(
        "DELETE FROM calendar.messages WHERE published_at IS NOT NULL AND published_at < $1",
        before,
    )


# -- audit ---------------------------------------------------------------------------------


async def audit(
    conn: Conn,
    *,
    user_id: str,
    action: str,
    direction: str,
    outcome: str,
    now: datetime,
    calendar_id: str | None = None,
    event_id: str | None = None,
    google_event_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        """
        INSERT INTO calendar.audit (user_id, calendar_id, event_id, google_event_id, action,
            direction, outcome, details, at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        """,
        user_id,
        calendar_id,
        event_id,
        google_event_id,
        action,
        direction,
        outcome,
        details or {},
        now,
    )
