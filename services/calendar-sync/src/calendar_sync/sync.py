"""The sync engine: local writes (event + outbox row in one transaction), the sender that
pushes them to Google with ``If-Match``, the inbound incremental sync, and reconciliation
of conflicts. Decisions come from :mod:`calendar_sync.domain`; this module does the I/O.

Ordering: an event row is locked (``FOR UPDATE``) by whoever reconciles it — the sender
during its Google call, the inbound sync while it applies an item, a local write — so
the three never interleave on one event, and a push notification that beats the insert
it echoes waits for the insert to be recorded, then sees its own etag.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

import asyncpg
from syncplane_common import subjects
from syncplane_common.clock import Clock
from syncplane_common.contracts import (
    CalendarConflictDetected,
    CalendarEventBody,
    CalendarLocalChanged,
    CalendarRemoteChanged,
)
from syncplane_common.errors import (
    ConflictError,
    CursorInvalidError,
    NotConnectedError,
    NotFoundError,
    PermanentError,
    ReauthRequiredError,
    RetryableError,
    RevokedError,
    TokenRejectedError,
)
from syncplane_common.http import backoff_delay
from syncplane_common.tokens import TokenLease, TokenSource

from calendar_sync import store
from calendar_sync.domain import (
    Fields,
    Mapping,
    Pacer,
    Policy,
    Remote,
    Side,
    Winner,
    content_hash,
    decide_inbound,
    decide_outbound,
    resolve,
    same_content,
)
from calendar_sync.ports import Ids
from calendar_sync.providers.google_calendar import GoogleCalendarClient, from_google, to_google

log = logging.getLogger(__name__)

# The connection whose token every Google call uses.
PROVIDER = "google_calendar"
T = TypeVar("T")
FIELD_NAMES = set(Fields.__dataclass_fields__)

# A 412 means Google moved on under us: re-resolve and retry this many times in one go.
MAX_RERESOLVE = 3
# A connection that is gone holds its pushes this long before looking again.
DISCONNECTED_HOLD_SECONDS = 3600.0


@dataclass(frozen=True)
class EngineConfig:
    policy: Policy = Policy.LAST_WRITE_WINS
    rate_per_user: float = 10.0
    max_retries: int = 3
    retry_base_seconds: float = 2.0
    retry_max_seconds: float = 300.0
    window_past_days: int = 30
    window_future_days: int = 365


def body_of(row: store.EventRow) -> CalendarEventBody:
    local = row.local
    return CalendarEventBody(
        id=local.id,
        calendar_id=row.calendar_id,
        **local.fields.to_json(),
        updated_at=local.updated_at,
        deleted=local.deleted,
    )


def fields_of(body: CalendarEventBody) -> Fields:
    # The contract names the shared content as Fields does.
    return Fields.from_json(body.model_dump(include=FIELD_NAMES))


@dataclass
class SyncStats:
    list_calls: int = 0
    google_writes: int = 0
    echoes: int = 0


@dataclass
class Engine:
    pool: asyncpg.Pool
    google: GoogleCalendarClient
    tokens: TokenSource
    clock: Clock
    ids: Ids
    config: EngineConfig = field(default_factory=EngineConfig)
    wake_sender: Callable[[], None] = lambda: None
    wake_publisher: Callable[[], None] = lambda: None
    stats: SyncStats = field(default_factory=SyncStats)

    def __post_init__(self) -> None:
        self.pacer = Pacer(self.config.rate_per_user)
        self._claiming = asyncio.Lock()
        self._syncing: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._again: set[tuple[str, str]] = set()

    # -- Google calls: pacing and the one 401 retry --------------------------------------

    async def call(self, user_id: str, fn: Callable[[str], Awaitable[T]]) -> T:
        await self.clock.sleep(self.pacer.reserve(user_id, self.clock.monotonic()))
        try:
            return await TokenLease(self.tokens, user_id, PROVIDER).call(fn)
        except TokenRejectedError as err:
            raise ReauthRequiredError(
                "Google refused a freshly refreshed token", details=err.details
            ) from err

    # -- the local side ------------------------------------------------------------------

    async def write_local(
        self,
        conn: store.Conn,
        user_id: str,
        event_id: str,
        calendar_id: str,
        fields: Fields,
        *,
        deleted: bool = False,
    ) -> store.EventRow:
        """Store a local change and its outbox row in the caller's transaction; the
        caller wakes the sender once it has committed."""
        now = self.clock.now()
        await store.ensure_calendar(conn, user_id, calendar_id)
        stored = await store.save_event(
            conn,
            event_id=event_id,
            user_id=user_id,
            calendar_id=calendar_id,
            fields=fields,
            deleted=deleted,
            now=now,
        )
        await store.enqueue_push(conn, user_id, calendar_id, event_id, now)
        return stored

    async def create(self, user_id: str, body: CalendarEventBody) -> CalendarEventBody:
        event_id = body.id or self.ids.event_id()
        async with self.pool.acquire() as conn, conn.transaction():
            if await store.get_event(conn, user_id, event_id, lock=True) is not None:
                raise PermanentError(f"event {event_id} exists already")
            row = await self.write_local(conn, user_id, event_id, body.calendar_id, fields_of(body))
        self.wake_sender()
        return body_of(row)

    async def update(
        self, user_id: str, event_id: str, changes: dict[str, Any]
    ) -> CalendarEventBody:
        async with self.pool.acquire() as conn, conn.transaction():
            current = await store.get_event(conn, user_id, event_id, lock=True)
            if current is None or current.local.deleted:
                raise NotFoundError(f"no event {event_id}")
            merged = {**body_of(current).model_dump(mode="json"), **changes}
            body = CalendarEventBody.model_validate(merged)
            row = await self.write_local(
                conn, user_id, event_id, current.calendar_id, fields_of(body)
            )
        self.wake_sender()
        return body_of(row)

    async def delete(self, user_id: str, event_id: str) -> CalendarEventBody:
        async with self.pool.acquire() as conn, conn.transaction():
            current = await store.get_event(conn, user_id, event_id, lock=True)
            if current is None or current.local.deleted:
                raise NotFoundError(f"no event {event_id}")
            row = await self.write_local(
                conn, user_id, event_id, current.calendar_id, current.local.fields, deleted=True
            )
        self.wake_sender()
        return body_of(row)

    async def get(self, user_id: str, event_id: str) -> CalendarEventBody:
        async with self.pool.acquire() as conn:
            row = await store.get_event(conn, user_id, event_id)
        if row is None:
            raise NotFoundError(f"no event {event_id}")
        return body_of(row)

    async def list(
        self,
        user_id: str,
        *,
        calendar_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        include_deleted: bool = False,
        limit: int | None = None,
    ) -> list[CalendarEventBody]:
        async with self.pool.acquire() as conn:
            rows = await store.list_events(
                conn,
                user_id,
                calendar_id=calendar_id,
                start=start,
                end=end,
                include_deleted=include_deleted,
                limit=limit,
            )
        return [body_of(row) for row in rows]

    async def local_changed(self, message: CalendarLocalChanged) -> None:
        """A change published by the app. A redelivered or overtaken message (older than
        what is stored) changes nothing."""
        body = message.event
        event_id = body.id or message.change_id
        async with self.pool.acquire() as conn, conn.transaction():
            current = await store.get_event(conn, message.user_id, event_id, lock=True)
            stamp = body.updated_at or message.at
            if current is not None and current.local.updated_at >= stamp:
                return
            if (
                current is not None
                and current.local.fields == fields_of(body)
                and current.local.deleted == body.deleted
            ):
                return
            await self.write_local(
                conn,
                message.user_id,
                event_id,
                body.calendar_id,
                fields_of(body),
                deleted=body.deleted,
            )
        self.wake_sender()

    # -- outbound ------------------------------------------------------------------------

    async def push_one(self) -> bool:
        """Push the oldest due outbox row, a row of a user free to call Google now first;
        False when none is due."""
        async with self.pool.acquire() as conn, conn.transaction():
            row, slot = await self._claim(conn)
            if row is None:
                return False
            try:
                await self._push_claimed(conn, row)
            finally:
                self.pacer.release(row.user_id, slot)
        return True

    async def _claim(self, conn: store.Conn) -> tuple[store.OutboxRow | None, float]:
        # One claim at a time in this process, and the claimed user's slot held before the
        # next claim looks: two workers never pick one user's rows for the same slot, and
        # none waits holding a row while another user's row could go out now.
        async with self._claiming:
            paced = self.pacer.paced(self.clock.monotonic())
            row = await store.claim_push(conn, self.clock.now(), paced)
            if row is None:
                return None, 0.0
            return row, self.pacer.hold(row.user_id, self.clock.monotonic())

    async def _push_claimed(self, conn: store.Conn, row: store.OutboxRow) -> None:
        try:
            async with conn.transaction():
                await self._push(conn, row)
        except (ReauthRequiredError, NotConnectedError, RevokedError) as err:
            later = self.clock.now() + timedelta(seconds=DISCONNECTED_HOLD_SECONDS)
            await store.retry_push(conn, row.id, row.attempts, later, str(err))
            return
        except Exception as err:
            await self._push_failed(conn, row, err)
            return
        await store.finish_push(conn, row.id, "done", self.clock.now())

    async def flush_outbox(self) -> int:
        pushed = 0
        while await self.push_one():
            pushed += 1
        return pushed

    async def _push_failed(self, conn: store.Conn, row: store.OutboxRow, err: Exception) -> None:
        now = self.clock.now()
        attempts = row.attempts + 1
        message = getattr(err, "message", None) or f"{type(err).__name__}: {err}"
        retryable = not isinstance(err, PermanentError)
        if retryable and attempts <= self.config.max_retries:
            delay = backoff_delay(
                attempts, self.config.retry_base_seconds, self.config.retry_max_seconds
            )
            if isinstance(err, RetryableError) and err.retry_after:
                delay = max(delay, err.retry_after)
            await store.retry_push(conn, row.id, attempts, now + timedelta(seconds=delay), message)
            return
        log.warning("push to Google failed for good", extra={"event_id": row.event_id})
        await store.finish_push(conn, row.id, "failed", now, message)
        await store.audit(
            conn,
            user_id=row.user_id,
            calendar_id=row.calendar_id,
            event_id=row.event_id,
            action="push",
            direction="outbound",
            outcome="failed",
            details={"error": message, "attempts": attempts},
            now=now,
        )
        event = await store.get_event(conn, row.user_id, row.event_id)
        if event is not None:
            # The dead letter is the change itself: a replay pushes it again.
            letter = CalendarLocalChanged(
                change_id=f"outbox-{row.id}",
                user_id=row.user_id,
                event=body_of(event),
                at=now,
            )
            await store.enqueue_message(
                conn,
                subjects.dead_letter(subjects.CALENDAR_LOCAL_CHANGED),
                f"calendar-outbox-failed:{row.id}",
                letter.model_dump(mode="json"),
                now,
            )
            self.wake_publisher()

    async def _push(self, conn: store.Conn, row: store.OutboxRow) -> None:
        for _ in range(MAX_RERESOLVE):
            event = await store.get_event(conn, row.user_id, row.event_id, lock=True)
            if event is None:
                return
            mapping = await store.get_mapping(conn, row.event_id)
            try:
                await self._push_event(conn, event, mapping)
                return
            except ConflictError:
                # A 412 on patch or delete (an insert's 409 is settled in _push_event).
                if mapping is None:
                    raise
                remote = await self._fetch(event, mapping.google_id)
                await self._reconcile(conn, event, mapping, remote, "outbound")
            except NotFoundError:
                if mapping is None:
                    raise
                gone = Remote(mapping.google_id, None, None, None)
                if event.local.deleted:
                    await self._record(conn, event, mapping, None, deleted=True)
                    return
                await self._reconcile(conn, event, mapping, gone, "outbound")
        raise ConflictError(f"event {row.event_id} kept changing on Google")

    async def _fetch(self, event: store.EventRow, google_id: str) -> Remote:
        user, cal = event.user_id, event.calendar_id
        try:
            item = await self.call(user, lambda t: self.google.get(t, cal, google_id))
        except NotFoundError:
            return Remote(google_id, None, None, None)
        return from_google(item)

    async def _push_event(
        self, conn: store.Conn, event: store.EventRow, mapping: Mapping | None
    ) -> None:
        local, user, cal = event.local, event.user_id, event.calendar_id
        action = decide_outbound(local, mapping)
        if action == "skip":
            # Google held this content when we last looked. The change stays "pending"
            # until the next listing confirms Google still does: a deletion or edit made
            # there meanwhile is then a conflict, not silently applied over the local edit.
            self.stats.echoes += 1
            await self._audit(conn, event, mapping, "push", "skipped")
            return
        body = to_google(local.fields, local.id)
        if action == "delete":
            assert mapping is not None
            await self.call(
                user,
                lambda t: self.google.delete(t, cal, mapping.google_id, etag=mapping.etag),
            )
            self.stats.google_writes += 1
            await self._record(conn, event, mapping, None, deleted=True)
            return
        if action == "insert":
            # The first copy takes our id, so a retried insert is a 409, not a duplicate;
            # a recreation after Google deleted the event needs a fresh one.
            google_id = local.id if mapping is None else self.ids.event_id()
            try:
                result = await self.call(
                    user, lambda t: self.google.insert(t, cal, body, event_id=google_id)
                )
            except ConflictError as err:
                result = await self._adopt(event, google_id, err)
        else:
            assert mapping is not None
            result = await self.call(
                user,
                lambda t: self.google.patch(t, cal, mapping.google_id, body, etag=mapping.etag),
            )
        self.stats.google_writes += 1
        await self._record(conn, event, mapping, result)

    async def _adopt(
        self, event: store.EventRow, google_id: str, err: ConflictError
    ) -> dict[str, Any]:
        """A 409 on our own id: an earlier attempt did insert it (its answer was lost)."""
        item = await self.call(
            event.user_id, lambda t: self.google.get(t, event.calendar_id, google_id)
        )
        if from_google(item).local_id != event.local.id:
            raise PermanentError(f"Google event id {google_id} is taken") from err
        return item

    async def _record(
        self,
        conn: store.Conn,
        event: store.EventRow,
        mapping: Mapping | None,
        result: dict[str, Any] | None,
        *,
        deleted: bool = False,
    ) -> None:
        """What Google holds now that we wrote it (``result``), or deleted it."""
        local = event.local
        if result is not None:
            written = from_google(result)
            digest = content_hash(written.fields) if written.fields else None
            mapping = Mapping(written.google_id, written.etag, digest, local.version, local.fields)
            updated = written.updated
        else:
            assert mapping is not None
            mapping = replace(
                mapping, version=local.version, google_deleted=deleted or mapping.google_deleted
            )
            digest, updated = None, None
        await store.save_mapping(
            conn,
            event_id=local.id,
            user_id=event.user_id,
            calendar_id=event.calendar_id,
            mapping=mapping,
            google_updated=updated,
            source="local",
            now=self.clock.now(),
            written_hash=digest,
        )
        if result is not None or deleted:
            await self._audit(conn, event, mapping, "delete" if deleted else "push", "written")

    async def _audit(
        self,
        conn: store.Conn,
        event: store.EventRow,
        mapping: Mapping | None,
        action: str,
        outcome: str,
        direction: str = "outbound",
        details: dict[str, Any] | None = None,
    ) -> None:
        await store.audit(
            conn,
            user_id=event.user_id,
            calendar_id=event.calendar_id,
            event_id=event.local.id,
            google_event_id=mapping.google_id if mapping else None,
            action=action,
            direction=direction,
            outcome=outcome,
            details=details,
            now=self.clock.now(),
        )

    # -- inbound -------------------------------------------------------------------------

    async def sync_calendar(self, user_id: str, calendar_id: str) -> None:
        """Incremental sync of one calendar. Notifications arriving while one runs are
        folded into a single extra pass (bursts cost one listing, not one each)."""
        key = (user_id, calendar_id)
        running = self._syncing.get(key)
        if running is not None:
            self._again.add(key)
            await asyncio.shield(running)
            return
        # The task removes itself from _syncing when it ends (see _sync_until_quiet).
        task = asyncio.ensure_future(self._sync_until_quiet(user_id, calendar_id))
        self._syncing[key] = task
        await asyncio.shield(task)

    async def _sync_until_quiet(self, user_id: str, calendar_id: str) -> None:
        key = (user_id, calendar_id)
        try:
            while True:
                self._again.discard(key)
                await self._sync(user_id, calendar_id)
                if key not in self._again:
                    return
        finally:
            self._syncing.pop(key, None)

    async def _sync(self, user_id: str, calendar_id: str) -> None:
        async with self.pool.acquire() as conn:
            await store.ensure_calendar(conn, user_id, calendar_id)
            cal = await store.get_calendar(conn, user_id, calendar_id)
        assert cal is not None
        if not cal.sync_enabled:
            return
        try:
            await self._list_all(user_id, calendar_id, cal.sync_token)
        except CursorInvalidError:
            log.info("sync token expired: full resync", extra={"calendar_id": calendar_id})
            async with self.pool.acquire() as conn:
                await store.save_sync_token(conn, user_id, calendar_id, None, self.clock.now())
                await store.audit(
                    conn,
                    user_id=user_id,
                    calendar_id=calendar_id,
                    action="full_resync",
                    direction="inbound",
                    outcome="started",
                    now=self.clock.now(),
                )
            await self._list_all(user_id, calendar_id, None)
        self.wake_publisher()
        self.wake_sender()

    async def _list_all(self, user_id: str, calendar_id: str, sync_token: str | None) -> None:
        now = self.clock.now()
        time_min = now - timedelta(days=self.config.window_past_days)
        time_max = now + timedelta(days=self.config.window_future_days)
        page_token: str | None = None
        while True:
            current = page_token

            def listing(token: str, current: str | None = current) -> Awaitable[Any]:
                return self.google.list_page(
                    token,
                    calendar_id,
                    sync_token=sync_token,
                    page_token=current,
                    time_min=None if sync_token else time_min,
                    time_max=None if sync_token else time_max,
                )

            page = await self.call(user_id, listing)
            self.stats.list_calls += 1
            async with self.pool.acquire() as conn, conn.transaction():
                for item in page.items:
                    await self._apply_remote(conn, user_id, calendar_id, from_google(item))
                if page.next_page_token is None:
                    # The cursor moves only after the last page: a crash mid-listing
                    # repeats it, and every item is idempotent to apply again.
                    await store.save_sync_token(
                        conn, user_id, calendar_id, page.next_sync_token, self.clock.now()
                    )
                    await self._confirm_skipped(conn, user_id, calendar_id)
                    return
            page_token = page.next_page_token

    async def _confirm_skipped(self, conn: store.Conn, user_id: str, calendar_id: str) -> None:
        """Local changes whose content Google holds (their push skipped, or not tried yet)
        and that the listing just completed did not contradict: in sync. Left pending, a
        later Google edit would look like a conflict with a change that changed nothing."""
        for event_id in await store.unconfirmed(conn, user_id, calendar_id):
            event = await store.get_event(conn, user_id, event_id, lock=True)
            mapping = await store.get_mapping(conn, event_id)
            if event is None or mapping is None or mapping.version >= event.local.version:
                continue
            if decide_outbound(event.local, mapping) == "skip":
                await self._record(conn, event, replace(mapping, version=event.local.version), None)

    async def _apply_remote(
        self, conn: store.Conn, user_id: str, calendar_id: str, remote: Remote
    ) -> None:
        event_id = await store.event_id_by_google(conn, user_id, calendar_id, remote.google_id)
        if event_id is None and remote.local_id is not None:
            # Ours, and its insert may still be in flight: the lock below waits for it.
            mine = await store.get_event(conn, user_id, remote.local_id)
            if mine is not None and mine.calendar_id == calendar_id:
                event_id = remote.local_id
        event = await store.get_event(conn, user_id, event_id, lock=True) if event_id else None
        mapping = await store.get_mapping(conn, event.local.id) if event is not None else None
        if event is not None and mapping is None:
            # Our insert whose answer was lost: Google held nothing of ours before.
            mapping = Mapping(remote.google_id, None, None, 0, None)
        decision = decide_inbound(remote, mapping, event.local if event else None)
        if decision.kind == "ignore":
            return
        if decision.kind == "create":
            await self._create_from_remote(conn, user_id, calendar_id, remote)
            return
        assert event is not None
        assert mapping is not None
        if decision.kind == "echo":
            self.stats.echoes += 1
            if mapping.etag != remote.etag:
                await self._save_read(conn, event, replace(mapping, etag=remote.etag), remote)
            return
        if decision.kind == "conflict":
            await self._reconcile(conn, event, mapping, remote, "inbound")
            return
        await self._apply(conn, event, mapping, remote)

    async def _create_from_remote(
        self, conn: store.Conn, user_id: str, calendar_id: str, remote: Remote
    ) -> None:
        assert remote.fields is not None
        event = await store.save_event(
            conn,
            event_id=self.ids.event_id(),
            user_id=user_id,
            calendar_id=calendar_id,
            fields=remote.fields,
            deleted=False,
            now=self.clock.now(),
        )
        digest = content_hash(remote.fields)
        mapping = Mapping(remote.google_id, remote.etag, digest, event.local.version, remote.fields)
        await self._save_read(conn, event, mapping, remote)
        await self._remote_changed(conn, event, remote.google_id)

    async def _apply(
        self, conn: store.Conn, event: store.EventRow, mapping: Mapping, remote: Remote
    ) -> None:
        if remote.deleted or not same_content(remote.fields, event.local.content):
            event = await self._overwrite_local(conn, event, remote.fields)
            await self._remote_changed(conn, event, mapping.google_id)
        digest = content_hash(remote.fields) if remote.fields else None
        base = remote.fields if remote.fields else mapping.base
        agreed = Mapping(
            mapping.google_id, remote.etag, digest, event.local.version, base, remote.deleted
        )
        await self._save_read(conn, event, agreed, remote)

    async def _overwrite_local(
        self, conn: store.Conn, event: store.EventRow, fields: Fields | None
    ) -> store.EventRow:
        return await store.save_event(
            conn,
            event_id=event.local.id,
            user_id=event.user_id,
            calendar_id=event.calendar_id,
            fields=fields if fields is not None else event.local.fields,
            deleted=fields is None,
            now=self.clock.now(),
        )

    async def _save_read(
        self, conn: store.Conn, event: store.EventRow, mapping: Mapping, remote: Remote
    ) -> None:
        await store.save_mapping(
            conn,
            event_id=event.local.id,
            user_id=event.user_id,
            calendar_id=event.calendar_id,
            mapping=mapping,
            google_updated=remote.updated,
            source="google",
            now=self.clock.now(),
            read_hash=content_hash(remote.fields) if remote.fields else None,
        )

    async def _remote_changed(
        self, conn: store.Conn, event: store.EventRow, google_id: str
    ) -> None:
        now = self.clock.now()
        change_id = f"remote:{event.local.id}:{event.local.version}"
        message = CalendarRemoteChanged(
            change_id=change_id,
            user_id=event.user_id,
            google_event_id=google_id,
            event=body_of(event),
            at=now,
        )
        await store.enqueue_message(
            conn, subjects.CALENDAR_REMOTE_CHANGED, change_id, message.model_dump(mode="json"), now
        )
        await self._audit(conn, event, None, "apply", "applied", direction="inbound")

    # -- conflicts -----------------------------------------------------------------------

    async def _reconcile(
        self,
        conn: store.Conn,
        event: store.EventRow,
        mapping: Mapping,
        remote: Remote,
        direction: str,
    ) -> None:
        """Both sides changed since they last agreed: the policy picks the content, the
        local side takes it now, and Google gets it through the outbox if it differs."""
        local = event.local
        policy = self.config.policy
        mine = Side(local.content, local.updated_at)
        theirs = Side(remote.fields, remote.updated)
        result = resolve(policy, mapping.base, mine, theirs)
        before = body_of(event)
        if not same_content(result.fields, local.content):
            event = await self._overwrite_local(conn, event, result.fields)
            await self._remote_changed(conn, event, mapping.google_id)
        remote_has = same_content(result.fields, remote.fields)
        digest = content_hash(remote.fields) if remote.fields else None
        agreed = replace(
            mapping,
            etag=remote.etag,
            hash_google=digest,
            google_deleted=remote.deleted,
            version=event.local.version if remote_has else mapping.version,
            base=result.fields if remote_has and result.fields else mapping.base,
        )
        await self._save_read(conn, event, agreed, remote)
        if not remote_has:
            await store.enqueue_push(
                conn, event.user_id, event.calendar_id, local.id, self.clock.now()
            )
        await self._conflict(conn, event, mapping, before, remote, result.winner, direction)

    async def _conflict(
        self,
        conn: store.Conn,
        event: store.EventRow,
        mapping: Mapping,
        local: CalendarEventBody,
        remote: Remote,
        winner: Winner,
        direction: str,
    ) -> None:
        now = self.clock.now()
        if remote.fields is not None:
            theirs = CalendarEventBody(
                id=mapping.google_id,
                calendar_id=event.calendar_id,
                **remote.fields.to_json(),
                updated_at=remote.updated,
            )
        else:
            theirs = local.model_copy(update={"id": mapping.google_id, "deleted": True})
        conflict_id = f"conflict:{event.local.id}:{remote.etag or 'deleted'}:{local.updated_at}"
        message = CalendarConflictDetected(
            conflict_id=conflict_id,
            user_id=event.user_id,
            local=local,
            remote=theirs,
            policy=self.config.policy.value,
            winner=winner,
            at=now,
        )
        payload = message.model_dump(mode="json")
        await store.enqueue_message(
            conn, subjects.CALENDAR_CONFLICT_DETECTED, conflict_id, payload, now
        )
        await self._audit(
            conn,
            event,
            mapping,
            "conflict",
            f"{winner}_won",
            direction=direction,
            details={
                "policy": self.config.policy.value,
                "local": payload["local"],
                "remote": payload["remote"],
            },
        )
