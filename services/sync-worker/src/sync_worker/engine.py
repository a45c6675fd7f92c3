"""The sync engine: runs one session page by page, whatever the provider (ARCHITECTURE
§4 "Sync session"; the robust sync design, seeds/001).

    load or create the session (its id follows from the request id, so a redelivered
    command finds the session it started) → for each page: wait for the rate budget →
    fetch → enrich → in ONE transaction upsert the rows, save the checkpoint and publish
    the change events → publish progress. A crash anywhere resumes after the last page
    whose transaction committed; a page is fetched at most once more.

What differs per provider and data type is a :class:`Source`; the engine holds only what
is common. A provider may have several data types (WHOOP: recovery, sleep, cycle,
workout): one session runs the types the command names (all of the provider's when it
names none) one after the other, its checkpoint carrying the current type under
``_type`` and the types still to run under ``_next``; each type's sync log moves to
success as soon as its last page is stored, so a failure later in the session never
undoes an earlier type's freshness.
A session that must wait for the rate budget longer than a moment is not retried into
429s: its message is acknowledged and a continuation is queued with ``not_before`` at
the window boundary (:class:`Deferred`), so waiting never spends deliveries.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator, Sequence
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


@dataclass(frozen=True, slots=True)
class Rows:
    """Stored rows as a smart read answers them (:meth:`Source.read_versioned`)."""

    rows: list[dict[str, Any]]
    # Per row, in order: its key and version, new with every write of the row.
    versions: tuple[str, ...]
    # The sync log's last success of the data type, read with the rows; it rides on
    # them, so with no rows it is None whatever the log holds.
    last_success: datetime | None


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

    async def read_versioned(
        self,
        conn: Conn,
        user_id: str,
        *,
        start: datetime | None,
        end: datetime | None,
        limit: int,
    ) -> Rows:
        """:meth:`read`, with the rows' versions and the sync log's last success of this
        data type read by the same statement."""
        ...

    async def versions(
        self,
        conn: Conn,
        user_id: str,
        *,
        start: datetime | None,
        end: datetime | None,
        limit: int,
    ) -> tuple[tuple[str, ...], datetime | None]:
        """What :meth:`read_versioned` would say but the rows: their versions, in order,
        and the last success. A cached smart read asks this, not for the rows, when it
        has answered these very rows before."""
        ...

    async def purge(self, conn: Conn, user_id: str) -> int:
        """Delete everything stored for the user (revocation with DELETE_DATA_ON_REVOKE)."""
        ...


# Checkpoint keys the engine owns; a source never sees them.
TYPE_KEY = "_type"
NEXT_KEY = "_next"
# Stored count of the session when the current type started: its own records_synced.
STORED_KEY = "_stored_before"
ENGINE_KEYS = frozenset({TYPE_KEY, NEXT_KEY, STORED_KEY})


class Sources:
    """Every (provider, data type) the worker syncs, in the order a session runs them."""

    def __init__(self, sources: Sequence[Source] = ()) -> None:
        self._all = tuple(sources)
        self._by_key: dict[tuple[str, str], Source] = {
            (s.provider, s.data_type): s for s in self._all
        }
        if len(self._by_key) != len(self._all):
            raise ValueError("two sources for one provider and data type")

    def __iter__(self) -> Iterator[Source]:
        return iter(self._all)

    def __contains__(self, provider: object) -> bool:
        return any(s.provider == provider for s in self._all)

    @property
    def providers(self) -> list[str]:
        return sorted({s.provider for s in self._all})

    def get(self, provider: str, data_type: str) -> Source | None:
        return self._by_key.get((provider, data_type))

    def of(self, provider: str) -> tuple[Source, ...]:
        return tuple(s for s in self._all if s.provider == provider)

    def for_webhook(self, provider: str, kind: str) -> Source | None:
        return next((s for s in self.of(provider) if kind in s.webhook_kinds), None)

    def select(self, provider: str, data_types: Sequence[str]) -> tuple[Source, ...]:
        """The sources a command names, in registry order; all of the provider's when it
        names none. An unknown type is a permanent error: redelivery cannot fix it."""
        mine = self.of(provider)
        if not mine:
            raise _unsupported(provider)
        if not data_types:
            return mine
        unknown = sorted(set(data_types) - {s.data_type for s in mine})
        if unknown:
            raise PermanentError(
                f"sync-worker has no {provider} data type {', '.join(map(repr, unknown))}",
                details={"provider": provider, "data_types": unknown},
            )
        return tuple(s for s in mine if s.data_type in data_types)


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
    sources: Sources
    budget: RateBudget | None = None
    app_focus_min_age: timedelta = timedelta(hours=1)
    inline_wait: float = INLINE_WAIT_SECONDS

    # -- entry points ----------------------------------------------------------------------

    async def run(self, command: SyncRequested, *, last_delivery: bool = False) -> Session | None:
        """Run (or resume) the session ``command`` names; None when nothing had to run.

        Raises :class:`Deferred` when the budget says wait, the provider's retryable
        errors after recording them on the session, and nothing for a cancelled session.
        """
        chosen = self.sources.select(command.provider, command.data_types)
        if command.mode == "app_focus" and not await self._stale_enough(command):
            log.info("app_focus sync skipped: synced recently", extra=_ids(command))
            return None
        session_id = (
            uuid.UUID(command.session_id)
            if command.session_id
            else session_id_for(command.request_id)
        )
        session = await self._open(command, chosen, session_id)
        if session.terminal:
            return session
        try:
            return await self._pages(command, session)
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
        self, user_id: str, source: Source, event_id: str, object_id: str, action: str
    ) -> Session | None:
        """A webhook's one object, refetched (a webhook is a hint, not data) or deleted,
        as a one-page session written in one transaction; None for a duplicate event."""
        provider = source.provider
        now = self.clock.now()
        session = sessions.start(
            sessions.new(
                id=session_id_for(f"webhook:{provider}:{event_id}"),
                user_id=user_id,
                provider=provider,
                kind=SessionKind.WEBHOOK,
                now=now,
                checkpoint={
                    "object_id": object_id,
                    "action": action,
                    TYPE_KEY: source.data_type,
                },
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
                await self._changed(source, session, stored, now)
        return session

    async def _stale_enough(self, command: SyncRequested) -> bool:
        last = await sync_state.last_synced_at(self.pool, command.user_id, command.provider)
        return last is None or self.clock.now() - last >= self.app_focus_min_age

    async def _open(
        self, command: SyncRequested, chosen: Sequence[Source], session_id: uuid.UUID
    ) -> Session:
        now = self.clock.now()
        session = await session_store.load(self.pool, session_id)
        if session is None:
            first, *rest = chosen
            async with self.pool.acquire() as conn:
                checkpoint = await self._start_type(conn, command, first, rest, 0, now)
            fresh = sessions.new(
                id=session_id,
                user_id=command.user_id,
                provider=command.provider,
                kind=SessionKind(command.kind),
                now=now,
                checkpoint=checkpoint,
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
            for source in chosen:
                await sync_state.attempt(self.pool, session, source.data_type, now)
        elif session.state is SessionState.FAILED:
            session = _back_to_fetching(sessions.retry(session, now), now)
        elif session.state is SessionState.RETRYING:
            session = _back_to_fetching(session, now)
        elif session.state is not SessionState.FETCHING:
            # A crash between phases: the page in memory is gone, fetch it again.
            session = _back_to_fetching(session, now)
        return await session_store.save(self.pool, session)

    async def _start_type(
        self,
        conn: Conn,
        command: SyncRequested,
        source: Source,
        rest: Sequence[Source],
        stored_before: int,
        now: datetime,
    ) -> dict[str, Any]:
        """The checkpoint that starts ``source``'s pages, with the engine's own keys."""
        newest = await source.newest_stored(conn, command.user_id)
        return {
            **source.initial_checkpoint(command, newest, now),
            TYPE_KEY: source.data_type,
            NEXT_KEY: [s.data_type for s in rest],
            STORED_KEY: stored_before,
        }

    def _current(self, session: Session) -> tuple[Source, dict[str, Any]]:
        """The source a session is on and its own part of the checkpoint."""
        checkpoint = {k: v for k, v in session.checkpoint.items() if k not in ENGINE_KEYS}
        data_type = session.checkpoint.get(TYPE_KEY)
        source = None
        if data_type is not None:
            source = self.sources.get(session.provider, str(data_type))
        elif len(self.sources.of(session.provider)) == 1:
            source = self.sources.of(session.provider)[0]
        if source is None:
            raise PermanentError(
                f"session {session.id} is on {session.provider}/{data_type}, "
                "which this worker does not sync"
            )
        return source, checkpoint

    async def _pages(self, command: SyncRequested, session: Session) -> Session:
        lease = TokenLease(self.tokens, command.user_id, command.provider)
        priority = command.priority
        while True:
            if not await sync_state.is_active(self.pool, command.user_id, command.provider):
                await self._cancel(session)
                raise Cancelled(f"{command.provider} connection of {command.user_id} is gone")
            source, own = self._current(session)
            await self._wait_for_budget(session, source, priority)
            page = await source.fetch(lease, own)
            now = self.clock.now()
            engine_keys = {k: v for k, v in session.checkpoint.items() if k in ENGINE_KEYS}
            checkpoint = {**page.checkpoint, **engine_keys}
            following = _following(session)
            has_rows = bool(page.items or page.filtered)
            if page.last and not has_rows and not following:
                # The empty page that ends the list: its cursor is kept for the record.
                return await self._complete(command, source, session, checkpoint, page, now)
            async with self.pool.acquire() as conn:
                stored = Stored()
                prepared: Sequence[Any] = ()
                session = sessions.advance(session, Phase.ENRICHING, now)
                if has_rows:
                    prepared = await source.enrich(conn, command.user_id, page.items)
                session = sessions.advance(session, Phase.STORING, self.clock.now())
                async with conn.transaction():
                    if has_rows:
                        stored = await source.store(
                            conn, command.user_id, prepared, now, filtered=page.filtered
                        )
                    if page.last and following:
                        # This type is done: its freshness is recorded with its last page,
                        # and the session moves on to the next type's first page.
                        await self._type_done(conn, session, source, stored, now)
                        nxt, *rest = self.sources.select(command.provider, following)
                        checkpoint = await self._start_type(
                            conn, command, nxt, rest, session.counts.stored + stored.written, now
                        )
                    session = sessions.page_done(
                        session,
                        checkpoint,
                        now,
                        fetched=len(page.items) + len(page.filtered) + page.invalid,
                        enriched=len(prepared),
                        stored=stored.written,
                        skipped=stored.unchanged + stored.skipped,
                        failed=page.invalid,
                    )
                    if not page.last or following:
                        session = sessions.advance(session, Phase.FETCHING, now)
                    session = await session_store.save(self.pool, session, conn=conn)
                    # Inside the transaction: a crash before the commit redoes the page
                    # and republishes under the same id, which JetStream drops.
                    await self._changed(source, session, stored, now)
            await self._progress(session, now)
            if page.last and not following:
                return await self._complete(command, source, session, None, None, now)

    async def _type_done(
        self, conn: Conn, session: Session, source: Source, stored: Stored, now: datetime
    ) -> None:
        before = _stored_before(session)
        records = session.counts.stored + stored.written - before
        await sync_state.succeeded(
            conn, session, source.data_type, now, records=records, connection=False
        )

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
        checkpoint: dict[str, Any] | None,
        page: FetchedPage | None,
        now: datetime,
    ) -> Session:
        if page is not None and checkpoint is not None:
            session = sessions.page_done(session, checkpoint, now, failed=page.invalid)
        session = sessions.complete(session, now)
        async with self.pool.acquire() as conn, conn.transaction():
            session = await session_store.save(self.pool, session, conn=conn)
            before = _stored_before(session)
            await sync_state.succeeded(
                conn, session, source.data_type, now, records=session.counts.stored - before
            )
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
        # The type it failed on and the ones it never reached; earlier types succeeded.
        current = session.checkpoint.get(TYPE_KEY)
        failed_types = [str(current), *_following(session)] if current else []
        failed_types = failed_types or [s.data_type for s in self.sources.of(command.provider)]
        for data_type in failed_types:
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
        self, source: Source, session: Session, stored: Stored, now: datetime
    ) -> None:
        msg_id = f"changed:{session.id}:{session.pages_done}"
        await publish_changed(self.publish, source, session.user_id, stored, now, msg_id)

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


async def publish_changed(
    publish: Publisher, source: Source, user_id: str, stored: Stored, now: datetime, msg_id: str
) -> None:
    """``records.changed.<provider>.<type>`` for what a store really changed; nothing when
    it changed nothing (an unchanged record is news to no one)."""
    if not (stored.added or stored.updated or stored.deleted):
        return
    await publish(
        subjects.records_changed(source.provider, source.data_type),
        RecordsChanged(
            user_id=user_id,
            provider=source.provider,
            data_type=source.data_type,
            added=stored.added,
            updated=stored.updated,
            deleted=stored.deleted,
            at=now,
        ),
        msg_id,
    )


def _following(session: Session) -> list[str]:
    """The data types the session still has to run after the current one."""
    rest = session.checkpoint.get(NEXT_KEY)
    return [str(t) for t in rest] if isinstance(rest, list) else []


def _stored_before(session: Session) -> int:
    value = session.checkpoint.get(STORED_KEY)
    return value if isinstance(value, int) else 0


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
    "Sources",
    "Stored",
    "publish_changed",
    "session_id_for",
]
