"""The SQL of sync sessions (table ``sync.sessions``, migration 0002).

Saves are optimistic: each row carries a ``version`` that every save bumps, and a save
names the version it loaded, so of two workers holding the same session only the first
write lands and the other gets :class:`ConflictError` (reload, and decide again).

jsonb goes over the wire as text (``::text`` / ``::jsonb`` casts) so these functions
work on any connection, with or without the pool's jsonb codec.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, TypeAlias

import asyncpg
from syncplane_common.errors import ConflictError

from sync_worker import _session_metrics
from sync_worker.sessions import (
    Counts,
    Phase,
    Session,
    SessionError,
    SessionKind,
    SessionState,
)

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Tx: TypeAlias = PoolConnectionProxy[asyncpg.Record] | asyncpg.Connection[asyncpg.Record]
    Db: TypeAlias = asyncpg.Pool[asyncpg.Record] | Tx


_COLUMNS = """
    id, user_id, provider, kind, state, phase, failed_phase, checkpoint::text AS checkpoint,
    pages_done, pages_expected, fetched, enriched, stored, failed, skipped,
    error::text AS error, retry_count, version, created_at, started_at, updated_at,
    finished_at
"""


def _session(record: asyncpg.Record) -> Session:
    error = json.loads(record["error"]) if record["error"] is not None else None
    return Session(
        id=record["id"],
        user_id=record["user_id"],
        provider=record["provider"],
        kind=SessionKind(record["kind"]),
        state=SessionState(record["state"]),
        phase=None if record["phase"] is None else Phase(record["phase"]),
        failed_phase=None if record["failed_phase"] is None else Phase(record["failed_phase"]),
        checkpoint=json.loads(record["checkpoint"]),
        pages_done=record["pages_done"],
        pages_expected=record["pages_expected"],
        counts=Counts(
            fetched=record["fetched"],
            enriched=record["enriched"],
            stored=record["stored"],
            failed=record["failed"],
            skipped=record["skipped"],
        ),
        error=None if error is None else SessionError(**error),
        retry_count=record["retry_count"],
        version=record["version"],
        created_at=record["created_at"],
        started_at=record["started_at"],
        updated_at=record["updated_at"],
        finished_at=record["finished_at"],
    )


def _error_json(session: Session) -> str | None:
    if session.error is None:
        return None
    e = session.error
    return json.dumps({"type": e.type, "message": e.message, "retryable": e.retryable})


def _values(session: Session) -> tuple[object, ...]:
    """The mutable columns, in the order $2.. of both the INSERT and the UPDATE."""
    c = session.counts
    return (
        str(session.state),
        None if session.phase is None else str(session.phase),
        None if session.failed_phase is None else str(session.failed_phase),
        json.dumps(dict(session.checkpoint)),
        session.pages_done,
        session.pages_expected,
        c.fetched,
        c.enriched,
        c.stored,
        c.failed,
        c.skipped,
        _error_json(session),
        session.retry_count,
        session.started_at,
        session.updated_at,
        session.finished_at,
    )


async def create(db: Db, session: Session) -> Session:
    """Inserts a new session; :class:`ConflictError` if its id is already taken."""
    record = await db.fetchrow(
        f"""
        INSERT INTO sessions (
            id, state, phase, failed_phase, checkpoint, pages_done, pages_expected,
            fetched, enriched, stored, failed, skipped, error, retry_count,
            started_at, updated_at, finished_at, user_id, provider, kind, created_at
        ) VALUES (
            $1, $2, $3, $4, $5::text::jsonb, $6, $7, $8, $9, $10, $11, $12,
            $13::text::jsonb, $14, $15, $16, $17, $18, $19, $20, $21
        )
        ON CONFLICT (id) DO NOTHING
        RETURNING {_COLUMNS}
        """,  # noqa: S608 - only the fixed column list is interpolated
        session.id,
        *_values(session),
        session.user_id,
        session.provider,
        str(session.kind),
        session.created_at,
    )
    if record is None:
        raise ConflictError(
            f"session {session.id} already exists", details={"session_id": str(session.id)}
        )
    return _finished(_session(record))


async def load(db: Db, session_id: uuid.UUID) -> Session | None:
    record = await db.fetchrow(
        f"SELECT {_COLUMNS} FROM sessions WHERE id = $1",  # noqa: S608
        session_id,
    )
    return None if record is None else _session(record)


async def save(db: Db, session: Session, *, conn: Tx | None = None) -> Session:
    """Writes ``session`` if the row is still at ``session.version``; the saved session
    (with its new version) is returned, else :class:`ConflictError`.

    ``conn``: a connection inside the caller's transaction, so the checkpoint commits
    together with the page it follows.
    """
    target = conn if conn is not None else db
    record = await target.fetchrow(
        f"""
        UPDATE sessions SET
            state = $2, phase = $3, failed_phase = $4, checkpoint = $5::text::jsonb,
            pages_done = $6, pages_expected = $7, fetched = $8, enriched = $9,
            stored = $10, failed = $11, skipped = $12, error = $13::text::jsonb,
            retry_count = $14, started_at = $15, updated_at = $16, finished_at = $17,
            version = version + 1
        WHERE id = $1 AND version = $18
        RETURNING {_COLUMNS}
        """,  # noqa: S608
        session.id,
        *_values(session),
        session.version,
    )
    if record is None:
        raise ConflictError(
            f"session {session.id} changed since it was loaded at version {session.version}",
            details={"session_id": str(session.id), "version": session.version},
        )
    return _finished(_session(record))


def _finished(saved: Session) -> Session:
    # Only the save that lands a terminal state gets here with it (the version check
    # above), so each finished session is counted once.
    _session_metrics.saved(saved)
    return saved


async def running_for(db: Db, user_id: str, provider: str) -> list[Session]:
    """Sessions of a connection that can still move (not finished), oldest first."""
    records = await db.fetch(
        f"""
        SELECT {_COLUMNS} FROM sessions
        WHERE user_id = $1 AND provider = $2 AND finished_at IS NULL
        ORDER BY created_at, id
        """,  # noqa: S608
        user_id,
        provider,
    )
    return [_session(r) for r in records]


async def latest(db: Db, user_id: str, provider: str, kind: SessionKind) -> Session | None:
    record = await db.fetchrow(
        f"""
        SELECT {_COLUMNS} FROM sessions
        WHERE user_id = $1 AND provider = $2 AND kind = $3
        ORDER BY created_at DESC, id DESC
        LIMIT 1
        """,  # noqa: S608
        user_id,
        provider,
        str(kind),
    )
    return None if record is None else _session(record)
