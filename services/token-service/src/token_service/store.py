"""The SQL of token-service (schema ``tokens``, migrations 0001-0002).

Functions take the pool, or a connection already inside a transaction where several
statements must commit together (a rotated refresh token with its access token, a
status change with its audit row and its event).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from token_service.domain import Status

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Tx: TypeAlias = PoolConnectionProxy[asyncpg.Record] | asyncpg.Connection[asyncpg.Record]
    Db: TypeAlias = asyncpg.Pool[asyncpg.Record] | Tx

_COLUMNS = """
    id, user_id, provider, provider_account_id, scopes, status, status_reason,
    access_token_ct, refresh_token_ct, key_id, expires_at, last_refreshed_at, last_used_at,
    refresh_count, consecutive_failures, connected_at, updated_at
"""


@dataclass(frozen=True, slots=True)
class ConnectionRow:
    id: uuid.UUID
    user_id: str
    provider: str
    provider_account_id: str | None
    scopes: tuple[str, ...]
    status: Status
    status_reason: str | None
    access_token_ct: bytes | None
    refresh_token_ct: bytes | None
    key_id: str | None
    expires_at: datetime | None
    last_refreshed_at: datetime | None
    last_used_at: datetime | None
    refresh_count: int
    consecutive_failures: int
    connected_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, record: asyncpg.Record) -> ConnectionRow:
        values = dict(record)
        values["scopes"] = tuple(values["scopes"] or ())
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Sealed:
    """Both tokens of a connection, sealed under one key."""

    key_id: str
    access: bytes
    refresh: bytes | None


# -- reading -------------------------------------------------------------------------------


async def load(db: Db, user_id: str, provider: str) -> ConnectionRow | None:
    record = await db.fetchrow(
        f"SELECT {_COLUMNS} FROM connections WHERE user_id = $1 AND provider = $2",  # noqa: S608
        user_id,
        provider,
    )
    return None if record is None else ConnectionRow.of(record)


async def lock(tx: Tx, user_id: str, provider: str) -> ConnectionRow | None:
    """The connection's row, locked until the transaction ends: the cluster-wide
    per-connection lock every refresh, reconnect and revocation takes."""
    record = await tx.fetchrow(
        f"SELECT {_COLUMNS} FROM connections"  # noqa: S608
        " WHERE user_id = $1 AND provider = $2 FOR UPDATE",
        user_id,
        provider,
    )
    return None if record is None else ConnectionRow.of(record)


async def list_for_user(db: Db, user_id: str) -> list[ConnectionRow]:
    records = await db.fetch(
        f"SELECT {_COLUMNS} FROM connections WHERE user_id = $1 ORDER BY provider",  # noqa: S608
        user_id,
    )
    return [ConnectionRow.of(r) for r in records]


async def lock_by_id(tx: Tx, connection_id: uuid.UUID) -> ConnectionRow | None:
    record = await tx.fetchrow(
        f"SELECT {_COLUMNS} FROM connections WHERE id = $1 FOR UPDATE",  # noqa: S608
        connection_id,
    )
    return None if record is None else ConnectionRow.of(record)


async def holders_of_account(
    db: Db, family: str, account_id: str, *, active_only: bool
) -> list[uuid.UUID]:
    """Connections to one provider account (``family``: a provider, or "google" for both
    Google products): the active ones, or all that are not revoked."""
    providers = ["google_fit", "google_calendar"] if family == "google" else [family]
    statuses = ["active"] if active_only else ["active", "reauth_required"]
    records = await db.fetch(
        "SELECT id FROM connections WHERE provider = ANY($1::text[])"
        " AND provider_account_id = $2 AND status = ANY($3::text[]) ORDER BY id",
        providers,
        account_id,
        statuses,
    )
    return [r["id"] for r in records]


async def keepalive_due(db: Db, cutoff: datetime, limit: int) -> list[tuple[str, str]]:
    """Active connections whose refresh token has not been used since ``cutoff``."""
    records = await db.fetch(
        "SELECT user_id, provider FROM connections"
        " WHERE status = 'active' AND coalesce(last_refreshed_at, connected_at) < $1"
        " ORDER BY coalesce(last_refreshed_at, connected_at) LIMIT $2",
        cutoff,
        limit,
    )
    return [(r["user_id"], r["provider"]) for r in records]


# -- writing: connect ----------------------------------------------------------------------


async def insert(
    tx: Tx,
    *,
    connection_id: uuid.UUID,
    user_id: str,
    provider: str,
    account_id: str | None,
    scopes: Sequence[str],
    sealed: Sealed,
    expires_at: datetime,
    now: datetime,
) -> None:
    await tx.execute(
        "INSERT INTO connections (id, user_id, provider, provider_account_id, scopes, status,"
        " access_token_ct, refresh_token_ct, key_id, expires_at, connected_at, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $8, $9, $10, $10)",
        connection_id,
        user_id,
        provider,
        account_id,
        list(scopes),
        sealed.access,
        sealed.refresh,
        sealed.key_id,
        expires_at,
        now,
    )


async def reconnect(
    tx: Tx,
    connection_id: uuid.UUID,
    *,
    account_id: str | None,
    scopes: Sequence[str],
    sealed: Sealed,
    expires_at: datetime,
    now: datetime,
) -> None:
    await tx.execute(
        "UPDATE connections SET provider_account_id = $2, scopes = $3, status = 'active',"
        " status_reason = NULL, access_token_ct = $4, refresh_token_ct = $5, key_id = $6,"
        " expires_at = $7, consecutive_failures = 0, connected_at = $8, updated_at = $8,"
        " revoked_at = NULL WHERE id = $1",
        connection_id,
        account_id,
        list(scopes),
        sealed.access,
        sealed.refresh,
        sealed.key_id,
        expires_at,
        now,
    )


async def claim_nonce(
    db: Db, nonce_sha256: str, user_id: str, provider: str, now: datetime
) -> bool:
    """Record a state nonce as used; False when it was used before (a replay)."""
    inserted = await db.fetchval(
        "INSERT INTO used_state_nonces (nonce_sha256, user_id, provider, used_at)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
        nonce_sha256,
        user_id,
        provider,
        now,
    )
    return bool(inserted)


async def release_nonce(db: Db, nonce_sha256: str) -> None:
    """Undo a claim whose exchange never reached a verdict, so the callback can be retried."""
    await db.execute("DELETE FROM used_state_nonces WHERE nonce_sha256 = $1", nonce_sha256)


async def forget_nonces(db: Db, used_before: datetime) -> None:
    await db.execute("DELETE FROM used_state_nonces WHERE used_at < $1", used_before)


# -- writing: refresh ----------------------------------------------------------------------


async def save_refresh(
    tx: Tx, connection_id: uuid.UUID, sealed: Sealed, expires_at: datetime, now: datetime
) -> None:
    """The rotated refresh token lands together with the access token it came with."""
    await tx.execute(
        "UPDATE connections SET access_token_ct = $2, refresh_token_ct = $3, key_id = $4,"
        " expires_at = $5, last_refreshed_at = $6, refresh_count = refresh_count + 1,"
        " consecutive_failures = 0, updated_at = $6 WHERE id = $1",
        connection_id,
        sealed.access,
        sealed.refresh,
        sealed.key_id,
        expires_at,
        now,
    )


async def note_failure(db: Db, connection_id: uuid.UUID, reason: str, now: datetime) -> None:
    """A refresh that failed without a verdict: counted, the status stays as it is."""
    await db.execute(
        "UPDATE connections SET consecutive_failures = consecutive_failures + 1,"
        " total_failures = total_failures + 1, last_failure_at = $2, last_failure_reason = $3"
        " WHERE id = $1",
        connection_id,
        now,
        reason[:500],
    )


async def touch(db: Db, connection_id: uuid.UUID, now: datetime, unless_after: datetime) -> None:
    await db.execute(
        "UPDATE connections SET last_used_at = $2"
        " WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)",
        connection_id,
        now,
        unless_after,
    )


# -- writing: end of a connection ----------------------------------------------------------


async def wipe(
    tx: Tx, connection_id: uuid.UUID, status: Status, reason: str, now: datetime
) -> None:
    """Change the status and destroy the token material: the ciphertexts themselves, not
    a flag beside them."""
    await tx.execute(
        "UPDATE connections SET status = $2, status_reason = $3, access_token_ct = NULL,"
        " refresh_token_ct = NULL, key_id = NULL, expires_at = NULL, updated_at = $4,"
        " revoked_at = CASE WHEN $2 = 'revoked' THEN $4 ELSE revoked_at END WHERE id = $1",
        connection_id,
        status,
        reason[:500],
        now,
    )


async def audit(
    tx: Tx,
    row: ConnectionRow | None,
    *,
    connection_id: uuid.UUID,
    user_id: str,
    provider: str,
    action: str,
    status_after: Status,
    reason: str | None,
    now: datetime,
) -> None:
    await tx.execute(
        "INSERT INTO connection_audit (connection_id, user_id, provider, action, status_before,"
        " status_after, reason, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        connection_id,
        user_id,
        provider,
        action,
        None if row is None else row.status,
        status_after,
        reason,
        now,
    )


# -- event outbox --------------------------------------------------------------------------


async def enqueue_event(tx: Tx, subject: str, payload: dict[str, Any], now: datetime) -> None:
    await tx.execute(
        "INSERT INTO event_outbox (msg_id, subject, payload, created_at) VALUES ($1, $2, $3, $4)",
        f"token-service:{uuid.uuid4()}",
        subject,
        payload,
        now,
    )


@dataclass(frozen=True, slots=True)
class PendingEvent:
    id: int
    msg_id: str
    subject: str
    payload: dict[str, Any]


async def pending_events(tx: Tx, limit: int) -> list[PendingEvent]:
    """Unpublished events, locked so two replicas do not publish the same batch at once."""
    records = await tx.fetch(
        "SELECT id, msg_id, subject, payload FROM event_outbox WHERE published_at IS NULL"
        " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit,
    )
    return [PendingEvent(r["id"], r["msg_id"], r["subject"], r["payload"]) for r in records]


async def mark_published(tx: Tx, ids: Sequence[int], now: datetime) -> None:
    await tx.execute(
        "UPDATE event_outbox SET published_at = $2 WHERE id = ANY($1::bigint[])", list(ids), now
    )


# -- key rotation --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SealedRow:
    id: uuid.UUID
    provider: str
    key_id: str
    access: bytes
    refresh: bytes | None


async def sealed_under_other_keys(tx: Tx, active_key_id: str, limit: int) -> list[SealedRow]:
    """A batch of rows sealed under a key other than the active one, locked: a refresh
    running at the same moment is waited for, never overwritten."""
    records = await tx.fetch(
        "SELECT id, provider, key_id, access_token_ct, refresh_token_ct FROM connections"
        " WHERE key_id IS NOT NULL AND key_id <> $1 ORDER BY id LIMIT $2 FOR UPDATE",
        active_key_id,
        limit,
    )
    return [
        SealedRow(r["id"], r["provider"], r["key_id"], r["access_token_ct"], r["refresh_token_ct"])
        for r in records
    ]


async def reseal(tx: Tx, connection_id: uuid.UUID, sealed: Sealed) -> None:
    await tx.execute(
        "UPDATE connections SET access_token_ct = $2, refresh_token_ct = $3, key_id = $4"
        " WHERE id = $1",
        connection_id,
        sealed.access,
        sealed.refresh,
        sealed.key_id,
    )


async def count_by_key(db: Db) -> dict[str, int]:
    records = await db.fetch(
        "SELECT key_id, count(*) AS n FROM connections WHERE key_id IS NOT NULL GROUP BY key_id"
    )
    return {r["key_id"]: r["n"] for r in records}
