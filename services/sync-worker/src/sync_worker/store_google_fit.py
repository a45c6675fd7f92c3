"""The SQL of Google Fit days and sessions (tables ``sync.google_fit_daily`` and
``sync.google_fit_sessions``, migration 0007).

Days are keyed by (user, local date) and hashed on their values, so re-syncing the last
``days_back`` days every run rewrites, and reports, only the days whose numbers moved.
Sessions are keyed by (user, Google's session id). The machinery is
:mod:`sync_worker.store_records`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING

from sync_worker import store_records
from sync_worker.providers.google_fit import FitDay, FitSession
from sync_worker.store_records import Changes, Column, Row, StoredRow, Table

if TYPE_CHECKING:
    from sync_worker.store_records import Db

__all__ = [
    "DAILY",
    "SESSIONS",
    "Changes",
    "StoredRow",
    "delete_days",
    "delete_sessions",
    "recent_days",
    "recent_sessions",
    "upsert_days",
    "upsert_sessions",
]

DAILY = Table(
    "google_fit_daily",
    Column("day", "date"),
    (
        Column("time_zone", "text"),
        Column("day_start", "timestamptz"),
        Column("day_end", "timestamptz"),
        Column("steps", "bigint"),
        Column("calories_kcal", "float8"),
        Column("distance_m", "float8"),
        Column("heart_rate_avg", "float8"),
        Column("heart_rate_min", "float8"),
        Column("heart_rate_max", "float8"),
        Column("active_minutes", "int4"),
    ),
    "day",
)

SESSIONS = Table(
    "google_fit_sessions",
    Column("session_id", "text"),
    (
        Column("name", "text"),
        Column("description", "text"),
        Column("activity_type", "int4"),
        Column("start_at", "timestamptz"),
        Column("end_at", "timestamptz"),
        Column("active_time_ms", "bigint"),
        Column("modified_at", "timestamptz"),
        Column("package_name", "text"),
    ),
    "start_at",
)


def _day_row(day: FitDay) -> Row:
    values = (
        day.time_zone,
        day.start,
        day.end,
        day.steps,
        day.calories_kcal,
        day.distance_m,
        day.heart_rate_avg,
        day.heart_rate_min,
        day.heart_rate_max,
        day.active_minutes,
    )
    return Row(day.day, values, day.raw, day.content_hash)


def _session_row(session: FitSession) -> Row:
    values = (
        session.name,
        session.description,
        session.activity_type,
        session.start,
        session.end,
        session.active_time_millis,
        session.modified_at,
        session.package_name,
    )
    return Row(session.id, values, session.raw, session.content_hash)


async def upsert_days(db: Db, user_id: str, days: Sequence[FitDay], now: datetime) -> Changes[date]:
    """Stores ``days`` for ``user_id``; returns the dates added and the dates changed."""
    return await store_records.upsert(db, DAILY, user_id, [_day_row(d) for d in days], now)


async def upsert_sessions(
    db: Db, user_id: str, sessions: Sequence[FitSession], now: datetime
) -> Changes[str]:
    """Stores ``sessions`` for ``user_id``; returns the session ids added and changed."""
    rows = [_session_row(s) for s in sessions]
    return await store_records.upsert(db, SESSIONS, user_id, rows, now)


async def delete_days(db: Db, user_id: str, days: Sequence[date]) -> list[date]:
    return await store_records.delete(db, DAILY, user_id, days)


async def delete_sessions(db: Db, user_id: str, session_ids: Sequence[str]) -> list[str]:
    """Deletes sessions Google reported in ``deletedSession``; returns those we had."""
    return await store_records.delete(db, SESSIONS, user_id, session_ids)


async def recent_days(
    db: Db,
    user_id: str,
    *,
    since: date | None = None,
    until: date | None = None,
    limit: int = 30,
) -> list[StoredRow]:
    """Smart reads: newest days first, ``since`` inclusive, ``until`` exclusive."""
    return await store_records.recent(db, DAILY, user_id, since=since, until=until, limit=limit)


async def recent_sessions(
    db: Db,
    user_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 30,
) -> list[StoredRow]:
    """Smart reads: newest sessions first by start, ``since`` inclusive, ``until``
    exclusive."""
    return await store_records.recent(db, SESSIONS, user_id, since=since, until=until, limit=limit)
