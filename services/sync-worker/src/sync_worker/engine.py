"""The sync engine: runs one session page by page, whatever the provider (ARCHITECTURE
§4 "Sync session"; the robust sync design, seeds/001).

    load or create the session (its id follows from the request id, so a redelivered
    command finds the session it started) → for each page: wait for the rate budget →
    fetch → enrich → in ONE transaction upsert the rows, save the checkpoint and publish
    the change events → publish progress. A crash anywhere resumes after the last page
    whose transaction committed; a page is fetched at most once more.

What differs per provider is a :class:`Source`; the engine holds only what is common.
A session that must wait for the rate budget longer than a moment is not retried into
429s: its message is acknowledged and a continuation is queued with ``not_before`` at
the window boundary (:class:`Deferred`), so waiting never spends deliveries.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import asyncpg
from pydantic import BaseModel
from syncplane_common import subjects
from syncplane_common.clock import Clock
from syncplane_common.contracts import (
    ProviderName,
    RecordsChanged,
    SyncCompleted,
    SyncFailed,
    SyncProgress,
    SyncRequested,
)
from syncplane_common.errors import ConflictError, PermanentError, RetryableError
from syncplane_common.tokens import TokenLease, TokenSource

from sync_worker import session_store, sessions, sync_state
from sync_worker.budget import Priority, RateBudget
from sync_worker.sessions import Phase, Session, SessionKind, SessionState

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Conn: TypeAlias = PoolConnectionProxy[asyncpg.Record] | asyncpg.Connection[asyncpg.Record]

log = logging.getLogger(__name__)

# Session ids are derived from request ids in this namespace (uuid5), so every delivery
# of one command, and every continuation of it, works on the same session row.
SESSION_NAMESPACE = uuid.UUID("0f5b7f6e-5a0c-4d61-9a35-6a3b0f1f7c11")

# A budget wait shorter than this is slept through; a longer one defers the session.
INLINE_WAIT_SECONDS = 2.0


def session_id_for(request_id: str) -> uuid.UUID:
    return uuid.uuid5(SESSION_NAMESPACE, request_id)


class Publisher(Protocol):
    async def __call__(self, subject: str, message: BaseModel, msg_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class FetchedPage:
    """One provider page. ``checkpoint`` is the cursor after it; ``last`` ends the session."""

    items: Sequence[Any]
    checkpoint: dict[str, Any]
    last: bool
    invalid: int = 0
    # Ids the source's filter left out: counted as skipped; a stored copy is removed.
    filtered: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Stored:
    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    unchanged: int = 0
    skipped: int = 0  # filtered out, never stored

    @property
    def written(self) -> int:
        return len(self.added) + len(self.updated)


class Source(Protocol):
    """What one provider's data type needs from the engine."""

    provider: ProviderName
    data_type: str
    # The webhook kinds (``WebhookReceived.kind``) that name one object of this type.
    webhook_kinds: frozenset[str]

    def initial_checkpoint(
        self, command: SyncRequested, newest_stored: datetime | None, now: datetime
    ) -> dict[str, Any]: ...

    async def newest_stored(self, conn: Conn, user_id: str) -> datetime | None: ...

    async def fetch(self, lease: TokenLease, checkpoint: dict[str, Any]) -> FetchedPage: ...

    async def enrich(
        self, conn: Conn, user_id: str, items: Sequence[Any], *, quick: bool = False
    ) -> Sequence[Any]:
        """``quick``: one interactive object; enrich from caches, leave the rest to the
        enrichment pass."""
        ...

    async def store(
        self,
        conn: Conn,
        user_id: str,
        items: Sequence[Any],
        now: datetime,
        *,
        filtered: Sequence[str] = (),
    ) -> Stored: ...

    async def fetch_one(self, lease: TokenLease, object_id: str) -> Any | None:
        """One object a webhook named; None when the provider no longer has it."""
        ...

    async def delete(self, conn: Conn, user_id: str, object_ids: Sequence[str]) -> Stored: ...

    async def read(
        self,
        conn: Conn,
        user_id: str,
        *,
        start: datetime | None,
        end: datetime | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """Stored rows, newest first: what a smart read answers."""
        ...

    async def purge(self, conn: Conn, user_id: str) -> int:
        """Delete everything stored for the user (revocation with DELETE_DATA_ON_REVOKE)."""
        ...


class Deferred(Exception):
    """The session must wait ``seconds`` for the rate budget; its progress is saved."""

    def __init__(self, session: Session, seconds: float) -> None:
        super().__init__(f"session {session.id} waits {seconds:.1f}s for the rate budget")
        self.session = session
        self.seconds = seconds


class Cancelled(Exception):
    """The connection stopped being active while its session ran."""


@dataclass
class Engine:
    pool: asyncpg.Pool[asyncpg.Record]
    tokens: TokenSource
    publish: Publisher
    clock: Clock
    sources: dict[str, Source]
    budget: RateBudget | None = None
    app_focus_min_age: timedelta = timedelta(hours=1)
    inline_wait: float = INLINE_WAIT_SECONDS

    # -- entry points ----------------------------------------------------------------------

    async def run(self, command: SyncRequested, *, last_delivery: bool = False) -> Session | None:
        """Run (or resume) the session ``command`` names; None when nothing had to run.

        Raises :class:`Deferred` when the budget says wait, the provider's retryable
        errors after recording them on the session, and nothing for a cancelled session.
        """
        source = self.sources.get(command.provider)
        if source is None:
            raise _unsupported(command.provider)
        if command.mode == "app_focus" and not await self._stale_enough(command):
            log.info("app_focus sync skipped: synced recently", extra=_ids(command))
            return None
        session_id = (
            uuid.UUID(command.session_id)
            if command.session_id
            else session_id_for(command.request_id)
        )
        session = await self._open(command, source, session_id)
        if session.terminal:
            return session
        try:
            return await self._pages(command, source, session)
        except (Deferred, Cancelled):
            raise
        except ConflictError:
            # Someone else moved the session (a revoke cancelled it): theirs stands.
            latest = await session_store.load(self.pool, session_id)
            if latest is not None and latest.terminal:
                return latest
            raise
        except Exception as err:
            await self._failed(command, session_id, err, last_delivery=last_delivery)
            raise

    async def apply_webhook(
        self, user_id: str, provider: str, event_id: str, object_id: str, action: str
    ) -> Session | None:
        """A webhook's one object, refetched (a webhook is a hint, not data) or deleted,
        as a one-page session written in one transaction; None for a duplicate event."""
        source = self.sources.get(provider)
        if source is None:
            raise _unsupported(provider)
        now = self.clock.now()
        session = sessions.start(
            sessions.new(
                id=session_id_for(f"webhook:{provider}:{event_id}"),
                user_id=user_id,
                provider=provider,
                kind=SessionKind.WEBHOOK,
                now=now,
                checkpoint={"object_id": object_id, "action": action},
            ),
            now,
        )
        # A duplicate event is caught by the session row's primary key below; looking it
        # up first would cost every event a round trip to save a rare refetch.
        item = None
        if action != "delete":
            await self._wait_for_budget(session, source, "interactive", defer=False)
            lease = TokenLease(self.tokens, user_id, provider)
            item = await source.fetch_one(lease, object_id)
        async with self.pool.acquire() as conn:
            prepared = (
                [] if item is None else await source.enrich(conn, user_id, [item], quick=True)
            )
            now = self.clock.now()
            async with conn.transaction():
                if item is None:
                    # Deleted, or no longer visible to us (made private, filtered out).
                    stored = await source.delete(conn, user_id, [object_id])
                else:
                    stored = await source.store(conn, user_id, prepared, now)
                session = sessions.advance(session, Phase.STORING, now)
                session = sessions.page_done(
                    session,
                    session.checkpoint,
                    now,
                    fetched=0 if item is None else 1,
                    enriched=len(prepared),
                    stored=stored.written,
                    skipped=stored.unchanged + stored.skipped,
                )
                session = sessions.complete(session, now)
                try:
                    session = await session_store.create(conn, session)
                except ConflictError:
                    return None  # the same event, handled meanwhile by another delivery
                await self._changed(provider, source, session, stored, now)
        return session

    async def _stale_enough(self, command: SyncRequested) -> bool:
        last = await sync_state.last_synced_at(self.pool, command.user_id, command.provider)
        return last is None or self.clock.now() - last >= self.app_focus_min_age

    async def _open(self, command: SyncRequested, source: Source, session_id: uuid.UUID) -> Session:
        now = self.clock.now()
        session = await session_store.load(self.pool, session_id)
        if session is None:
            async with self.pool.acquire() as conn:
                newest = await source.newest_stored(conn, command.user_id)
            fresh = sessions.new(
                id=session_id,
                user_id=command.user_id,
                provider=command.provider,
                kind=SessionKind(command.kind),
                now=now,
                checkpoint=source.initial_checkpoint(command, newest, now),
            )
            try:
                session = await session_store.create(self.pool, fresh)
            except ConflictError:
                loaded = await session_store.load(self.pool, session_id)
                assert loaded is not None
                session = loaded
        if session.terminal:
            return session
        if session.state is SessionState.INITIATED:
            session = sessions.start(session, now)
            await sync_state.attempt(self.pool, session, source.data_type, now)
        elif session.state is SessionState.FAILED:
            session = _back_to_fetching(sessions.retry(session, now), now)
        elif session.state is SessionState.RETRYING:
            session = _back_to_fetching(session, now)
        elif session.state is not SessionState.FETCHING:
            # A crash between phases: the page in memory is gone, fetch it again.
            session = _back_to_fetching(session, now)
        return await session_store.save(self.pool, session)

    async def _pages(self, command: SyncRequested, source: Source, session: Session) -> Session:
        lease = TokenLease(self.tokens, command.user_id, command.provider)
        priority = command.priority
        while True:
            if not await sync_state.is_active(self.pool, command.user_id, command.provider):
                await self._cancel(session)
                raise Cancelled(f"{command.provider} connection of {command.user_id} is gone")
            await self._wait_for_budget(session, source, priority)
            page = await source.fetch(lease, dict(session.checkpoint))
            now = self.clock.now()
            if page.last and not page.items:
                return await self._complete(command, source, session, page, now)
            async with self.pool.acquire() as conn:
                session = sessions.advance(session, Phase.ENRICHING, now)
                prepared = await source.enrich(conn, command.user_id, page.items)
                session = sessions.advance(session, Phase.STORING, self.clock.now())
                async with conn.transaction():
                    stored = await source.store(
                        conn, command.user_id, prepared, now, filtered=page.filtered
                    )
                    session = sessions.page_done(
                        session,
                        page.checkpoint,
                        now,
                        fetched=len(page.items) + len(page.filtered) + page.invalid,
                        enriched=len(prepared),
                        stored=stored.written,
                        skipped=stored.unchanged + stored.skipped,
                        failed=page.invalid,
                    )
                    if not page.last:
                        session = sessions.advance(session, Phase.FETCHING, now)
                    session = await session_store.save(self.pool, session, conn=conn)
                    # Inside the transaction: a crash before the commit redoes the page
                    # and republishes under the same id, which JetStream drops.
                    await self._changed(command.provider, source, session, stored, now)
            await self._progress(session, now)
            if page.last:
                return await self._complete(command, source, session, None, now)

    async def _wait_for_budget(
        self, session: Session, source: Source, priority: str, *, defer: bool = True
    ) -> None:
        if self.budget is None:
            return
        while True:
            wait = await self.budget.acquire(source.provider, Priority(priority))
            if wait <= 0:
                return
            if wait > self.inline_wait:
                if defer:
                    raise Deferred(session, wait)
                raise RetryableError(
                    f"{source.provider} rate budget spent; retry at the window boundary",
                    retry_after=wait,
                )
            await self.clock.sleep(wait)

    async def _complete(
        self,
        command: SyncRequested,
        source: Source,
        session: Session,
        page: FetchedPage | None,
        now: datetime,
    ) -> Session:
        if page is not None:
            # The empty page that ends the list: its cursor is kept for the record.
            session = sessions.page_done(session, page.checkpoint, now, failed=page.invalid)
        session = sessions.complete(session, now)
        async with self.pool.acquire() as conn, conn.transaction():
            session = await session_store.save(self.pool, session, conn=conn)
            await sync_state.succeeded(conn, session, source.data_type, now)
        c = session.counts
        await self.publish(
            subjects.sync_event("completed", command.provider),
            SyncCompleted(
                session_id=str(session.id),
                user_id=session.user_id,
                provider=command.provider,
                kind=command.kind,
                fetched=c.fetched,
                stored=c.stored,
                failed=c.failed,
                skipped=c.skipped,
                completed_at=now,
            ),
            f"completed:{session.id}",
        )
        return session

    async def _failed(
        self, command: SyncRequested, session_id: uuid.UUID, err: Exception, *, last_delivery: bool
    ) -> None:
        session = await session_store.load(self.pool, session_id)
        if session is None or session.terminal:
            return
        now = self.clock.now()
        if session.state is SessionState.INITIATED:
            session = sessions.start(session, now)
        session = sessions.fail(session, err, now)
        if last_delivery and not session.terminal:
            session = sessions.give_up(session, now)
        try:
            session = await session_store.save(self.pool, session)
        except ConflictError:
            return
        data_type = self.sources[command.provider].data_type
        await sync_state.failed(self.pool, session, data_type, now)
        if session.terminal:
            assert session.error is not None
            await self.publish(
                subjects.sync_event("failed", command.provider),
                SyncFailed(
                    session_id=str(session.id),
                    user_id=session.user_id,
                    provider=command.provider,
                    kind=command.kind,
                    error={
                        "type": session.error.type,
                        "message": session.error.message,
                        "retryable": session.error.retryable,
                    },
                    failed_at=now,
                ),
                f"failed:{session.id}",
            )

    async def _cancel(self, session: Session) -> None:
        # ConflictError: the revoke handler cancelled it first.
        with contextlib.suppress(ConflictError):
            await session_store.save(self.pool, sessions.cancel(session, self.clock.now()))

    async def _changed(
        self, provider: str, source: Source, session: Session, stored: Stored, now: datetime
    ) -> None:
        if not (stored.added or stored.updated or stored.deleted):
            return
        await self.publish(
            subjects.records_changed(provider, source.data_type),
            RecordsChanged(
                user_id=session.user_id,
                provider=source.provider,
                data_type=source.data_type,
                added=stored.added,
                updated=stored.updated,
                deleted=stored.deleted,
                at=now,
            ),
            f"changed:{session.id}:{session.pages_done}",
        )

    async def _progress(self, session: Session, now: datetime) -> None:
        estimate = sessions.estimate(session, now)
        c = session.counts
        await self.publish(
            subjects.sync_event("progress", session.provider),
            SyncProgress(
                session_id=str(session.id),
                user_id=session.user_id,
                provider=session.provider,
                phase=str(session.phase or session.state),
                fetched=c.fetched,
                stored=c.stored,
                failed=c.failed,
                skipped=c.skipped,
                estimated_completion=None if estimate is None else estimate.eta,
                at=now,
            ),
            f"progress:{session.id}:{session.pages_done}",
        )


def _back_to_fetching(session: Session, now: datetime) -> Session:
    """Into FETCHING through the legal transitions: the data of the page that was in
    flight is gone, and the checkpoint says which page to fetch again."""
    if session.state is SessionState.RETRYING:
        session = sessions.resume(session, now)
    if session.state is SessionState.ENRICHING:
        session = sessions.advance(session, Phase.STORING, now)
    if session.state is SessionState.STORING:
        session = sessions.advance(session, Phase.FETCHING, now)
    return session


def _unsupported(provider: str) -> Exception:
    return PermanentError(f"sync-worker has no sync for provider {provider!r}")


def _ids(command: SyncRequested) -> dict[str, str]:
    return {"user_id": command.user_id, "provider": command.provider}


__all__ = [
    "Cancelled",
    "Deferred",
    "Engine",
    "FetchedPage",
    "Publisher",
    "Source",
    "Stored",
    "session_id_for",
]
