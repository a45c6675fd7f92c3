"""The SQL of sync-worker's view of connections and of the sync log (migration 0004):
which connections are active, when each is due, when each last synced, and the claim
that lets every replica schedule without a leader.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypeAlias

import asyncpg

from sync_worker.sessions import Session

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Db: TypeAlias = (
        asyncpg.Pool[asyncpg.Record]
        | PoolConnectionProxy[asyncpg.Record]
        | asyncpg.Connection[asyncpg.Record]
    )


# -- connections ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connection:
    user_id: str
    provider: str
    provider_account_id: str | None
    status: str


async def connected(
    db: Db,
    user_id: str,
    provider: str,
    account_id: str | None,
    *,
    occurred_at: datetime,
    first_sync_at: datetime,
    now: datetime,
) -> bool:
    """Active from ``occurred_at`` on. False when a newer event already decided the
    status (events may arrive out of order after a redelivery)."""
    result = await db.fetchval(
        """
        INSERT INTO connections (user_id, provider, provider_account_id, status, next_sync_at,
            status_at, created_at, updated_at)
        VALUES ($1, $2, $3, 'active', $4, $5, $6, $6)
        ON CONFLICT (user_id, provider) DO UPDATE SET
            provider_account_id = COALESCE(EXCLUDED.provider_account_id,
                                           connections.provider_account_id),
            status = 'active', status_reason = NULL, next_sync_at = EXCLUDED.next_sync_at,
            status_at = EXCLUDED.status_at, updated_at = EXCLUDED.updated_at
        WHERE connections.status_at <= EXCLUDED.status_at
        RETURNING true
        """,
        user_id,
        provider,
        account_id,
        first_sync_at,
        occurred_at,
        now,
    )
    return bool(result)


async def stopped(
    db: Db,
    user_id: str,
    provider: str,
    status: str,
    reason: str | None,
    *,
    occurred_at: datetime,
    now: datetime,
) -> bool:
    """Revoked or reauth_required; the scheduler skips it from now on."""
    result = await db.fetchval(
        """
        INSERT INTO connections (user_id, provider, status, status_reason, next_sync_at,
            status_at, created_at, updated_at)
        VALUES ($1, $2, $3, $4, $6, $5, $6, $6)
        ON CONFLICT (user_id, provider) DO UPDATE SET
            status = EXCLUDED.status, status_reason = EXCLUDED.status_reason,
            status_at = EXCLUDED.status_at, updated_at = EXCLUDED.updated_at
        WHERE connections.status_at <= EXCLUDED.status_at
        RETURNING true
        """,
        user_id,
        provider,
        status,
        reason,
        occurred_at,
        now,
    )
    return bool(result)


async def is_active(db: Db, user_id: str, provider: str) -> bool:
    """Unknown connections count as active: a sync requested before the connected event
    was consumed must not be refused; token.get is the authority on the credential."""
    status = await db.fetchval(
        "SELECT status FROM connections WHERE user_id = $1 AND provider = $2",
        user_id,
        provider,
    )
    return status is None or status == "active"


async def by_account(db: Db, provider: str, account_id: str) -> Connection | None:
    record = await db.fetchrow(
        """
        SELECT user_id, provider, provider_account_id, status FROM connections
        WHERE provider = $1 AND provider_account_id = $2
        ORDER BY (status = 'active') DESC, updated_at DESC
        LIMIT 1
        """,
        provider,
        account_id,
    )
    return None if record is None else Connection(**dict(record))


async def statuses(db: Db, user_id: str) -> dict[str, str]:
    """The user's connections known here: provider → status."""
    records = await db.fetch("SELECT provider, status FROM connections WHERE user_id = $1", user_id)
    return {r["provider"]: r["status"] for r in records}


async def last_synced_at(db: Db, user_id: str, provider: str) -> datetime | None:
    value: datetime | None = await db.fetchval(
        "SELECT last_synced_at FROM connections WHERE user_id = $1 AND provider = $2",
        user_id,
        provider,
    )
    return value


# -- the scheduler's claim -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Due:
    user_id: str
    provider: str
    slot: datetime  # the next_sync_at that made it due: the dedupe id's time part


# ``next_sync_at`` moves one interval on whether or not a sync is queued: a connection
# synced recently (by a webhook or the app) is pushed to last_synced_at + interval instead.
CLAIM = """
WITH due AS (
    SELECT user_id, provider, next_sync_at, last_synced_at
    FROM connections
    WHERE status = 'active' AND next_sync_at <= $1 AND provider = ANY($2::text[])
    ORDER BY next_sync_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
), planned AS (
    SELECT d.*, (i.seconds * interval '1 second') AS every
    FROM due d JOIN unnest($2::text[], $4::int[]) AS i(provider, seconds) USING (provider)
)
UPDATE connections c SET
    next_sync_at = CASE
        WHEN p.last_synced_at IS NOT NULL AND p.last_synced_at > $1 - p.every
            THEN p.last_synced_at + p.every
        ELSE $1 + p.every END,
    last_scheduled_at = CASE
        WHEN p.last_synced_at IS NOT NULL AND p.last_synced_at > $1 - p.every
            THEN c.last_scheduled_at
        ELSE $1 END,
    updated_at = $1
FROM planned p
WHERE c.user_id = p.user_id AND c.provider = p.provider
RETURNING c.user_id, c.provider, p.next_sync_at AS slot,
    NOT (p.last_synced_at IS NOT NULL AND p.last_synced_at > $1 - p.every) AS enqueue
"""


async def claim_due(
    conn: Db, now: datetime, intervals: dict[str, int], limit: int
) -> tuple[list[Due], int]:
    """Due connections to enqueue, and how many were skipped as recently synced. Run it in
    a transaction with the publishes, so a failed publish gives the claim back."""
    providers = sorted(intervals)
    records = await conn.fetch(CLAIM, now, providers, limit, [int(intervals[p]) for p in providers])
    due = [Due(r["user_id"], r["provider"], r["slot"]) for r in records if r["enqueue"]]
    return due, len(records) - len(due)


# -- the sync log --------------------------------------------------------------------------


async def attempt(db: Db, session: Session, data_type: str, now: datetime) -> None:
    await db.execute(
        """
        INSERT INTO sync_log (user_id, provider, data_type, last_attempt_at, status, session_id)
        VALUES ($1, $2, $3, $4, 'running', $5)
        ON CONFLICT (user_id, provider, data_type) DO UPDATE SET
            last_attempt_at = EXCLUDED.last_attempt_at, status = 'running',
            session_id = EXCLUDED.session_id
        """,
        session.user_id,
        session.provider,
        data_type,
        now,
        session.id,
    )


async def succeeded(
    db: Db,
    session: Session,
    data_type: str,
    now: datetime,
    *,
    records: int | None = None,
    connection: bool = True,
) -> None:
    """``connection``: the whole session is done, so the connection counts as synced
    (one type of several finishing does not make the connection fresh)."""
    await db.execute(
        """
        INSERT INTO sync_log (user_id, provider, data_type, last_attempt_at, last_success_at,
            status, records_synced, session_id)
        VALUES ($1, $2, $3, $4, $4, 'success', $5, $6)
        ON CONFLICT (user_id, provider, data_type) DO UPDATE SET
            last_attempt_at = EXCLUDED.last_attempt_at,
            last_success_at = EXCLUDED.last_success_at, status = 'success',
            records_synced = EXCLUDED.records_synced, error = NULL,
            session_id = EXCLUDED.session_id
        """,
        session.user_id,
        session.provider,
        data_type,
        now,
        session.counts.stored if records is None else records,
        session.id,
    )
    if not connection:
        return
    await db.execute(
        "UPDATE connections SET last_synced_at = $3 WHERE user_id = $1 AND provider = $2 "
        "AND (last_synced_at IS NULL OR last_synced_at < $3)",
        session.user_id,
        session.provider,
        now,
    )


async def failed(db: Db, session: Session, data_type: str, now: datetime) -> None:
    error = None if session.error is None else f"{session.error.type}: {session.error.message}"
    await db.execute(
        """
        INSERT INTO sync_log (user_id, provider, data_type, last_attempt_at, status, error,
            session_id)
        VALUES ($1, $2, $3, $4, 'failed', $5, $6)
        ON CONFLICT (user_id, provider, data_type) DO UPDATE SET
            last_attempt_at = EXCLUDED.last_attempt_at, status = 'failed',
            error = EXCLUDED.error, session_id = EXCLUDED.session_id
        """,
        session.user_id,
        session.provider,
        data_type,
        now,
        error,
        session.id,
    )


def last_success_column(user_id: int, provider: int, data_type: int) -> str:
    """:func:`last_success` as a column of another statement (its ``$n`` parameters
    numbered as given), so a read that needs both its rows and their freshness makes one
    round trip. It rides on the rows: a statement that finds none tells nothing."""
    where = f"user_id = ${user_id} AND provider = ${provider} AND data_type = ${data_type}"
    return f"(SELECT last_success_at FROM sync_log WHERE {where}) AS last_success_at"  # noqa: S608


async def last_success(db: Db, user_id: str, provider: str, data_type: str) -> datetime | None:
    value: datetime | None = await db.fetchval(
        "SELECT last_success_at FROM sync_log WHERE user_id = $1 AND provider = $2 "
        "AND data_type = $3",
        user_id,
        provider,
        data_type,
    )
    return value


@dataclass(frozen=True, slots=True)
class LogEntry:
    provider: str
    data_type: str
    last_attempt_at: datetime
    last_success_at: datetime | None
    status: str
    records_synced: int
    error: str | None
    session_id: str | None


async def log_for(db: Db, user_id: str, provider: str | None = None) -> list[LogEntry]:
    records = await db.fetch(
        """
        SELECT provider, data_type, last_attempt_at, last_success_at, status,
            records_synced, error, session_id::text AS session_id
        FROM sync_log WHERE user_id = $1 AND ($2::text IS NULL OR provider = $2)
        ORDER BY provider, data_type
        """,
        user_id,
        provider,
    )
    return [LogEntry(**dict(r)) for r in records]
