"""What sync-worker answers: one session, the sync status of a user, and smart reads
(ARCHITECTURE §4 "Smart read"; the WHOOP smart-sync design, seeds/004), plus the two
lifecycle chores that touch stored data (cancel running sessions, purge on revoke).

A smart read answers from storage when the data is fresh enough, else syncs now and
answers what that stored; a provider failure with data on hand answers the stored rows
as ``stale_cache`` with the warning and the error, with nothing stored a
``ProviderUnavailableError`` (the gateway's 502). Freshness is per (provider, data type)
(:class:`Freshness`). Concurrent stale reads of one user's data type share one sync: in
a process they await one task (:class:`Flights`), across replicas a Postgres advisory lock
per (user, provider, type) serialises the syncs and the one that waited re-reads the sync
log first, finds the data fresh and serves it; a burst of app opens costs one fetch.
A fresh read is one statement (the rows' versions and the last success); the rows each
process answered lately are kept as JSON with their versions (:class:`Answered`) and sent
again while the versions match, so the cached read neither re-reads nor re-encodes them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic_core import to_json
from syncplane_common import db, rpc
from syncplane_common.contracts import (
    DataQuery,
    DataReply,
    DataTypeStatus,
    SyncRequested,
    SyncSessionGet,
    SyncSessionReply,
    SyncStatusGet,
    SyncStatusReply,
)
from syncplane_common.errors import (
    ConflictError,
    NotConnectedError,
    NotFoundError,
    PermanentError,
    ProviderUnavailableError,
    ReauthRequiredError,
    RetryableError,
    RevokedError,
    SyncplaneError,
)

from sync_worker import session_store, sessions, sync_state
from sync_worker.engine import Cancelled, Deferred, Engine, Source

if TYPE_CHECKING:
    from sync_worker.engine import Conn

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 100
DEFAULT_THRESHOLD = 3600.0
# On-demand syncs one process runs at once (each holds a pooled connection for its lock).
FLIGHT_CONCURRENCY = 4
# A replica waits this long for another's on-demand sync of the same type, then says retry.
LOCK_WAIT_SECONDS = 30.0
LOCK = "SELECT pg_advisory_lock(hashtextextended($1, 0))"
UNLOCK = "SELECT pg_advisory_unlock(hashtextextended($1, 0))"
# What Answered keeps per process: 40 users x 4 types x 10 WHOOP rows take about 3 MB.
ANSWERED_BYTES = 32 * 2**20
# How the notes name a provider, as the smart-sync design writes "WHOOP API".
PROVIDER_LABELS = {"whoop": "WHOOP", "strava": "Strava", "google_fit": "Google Fit"}


async def session(engine: Engine, ask: SyncSessionGet) -> SyncSessionReply:
    try:
        session_id = uuid.UUID(ask.session_id)
    except ValueError:
        raise NotFoundError(f"no sync session {ask.session_id}") from None
    found = await session_store.load(engine.pool, session_id)
    # Another user's session is as absent as a missing one.
    if found is None or found.user_id != ask.user_id:
        raise NotFoundError(f"no sync session {ask.session_id}")
    estimate = sessions.estimate(found, engine.clock.now())
    c = found.counts
    return SyncSessionReply(
        session_id=str(found.id),
        user_id=found.user_id,
        provider=found.provider,
        kind=str(found.kind),
        state=str(found.state),
        phase=None if found.phase is None else str(found.phase),
        counts={
            "fetched": c.fetched,
            "enriched": c.enriched,
            "stored": c.stored,
            "failed": c.failed,
            "skipped": c.skipped,
        },
        pages_done=found.pages_done,
        pages_expected=found.pages_expected,
        estimated_completion=None if estimate is None else estimate.eta,
        session_error=None
        if found.error is None
        else {
            "type": found.error.type,
            "message": found.error.message,
            "retryable": found.error.retryable,
        },
        retry_count=found.retry_count,
        created_at=found.created_at,
        started_at=found.started_at,
        updated_at=found.updated_at,
        finished_at=found.finished_at,
    )


@dataclass(frozen=True)
class Freshness:
    """How old each data type's last sync may be (``SYNC_FRESHNESS_THRESHOLDS``); a type
    left out falls back to its provider's schedule interval, then to an hour."""

    thresholds: Mapping[tuple[str, str], float] = field(default_factory=dict)
    intervals: Mapping[str, int] = field(default_factory=dict)

    def threshold(self, provider: str, data_type: str) -> float:
        found = self.thresholds.get((provider, data_type))
        if found is not None:
            return float(found)
        return float(self.intervals.get(provider, DEFAULT_THRESHOLD))


def _age(last: datetime | None, now: datetime) -> float | None:
    return None if last is None else max((now - last).total_seconds(), 0.0)


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 3600, 2)


async def status(engine: Engine, freshness: Freshness, ask: SyncStatusGet) -> SyncStatusReply:
    now = engine.clock.now()
    entries = {
        (e.provider, e.data_type): e
        for e in await sync_state.log_for(engine.pool, ask.user_id, ask.provider)
    }
    known = await sync_state.statuses(engine.pool, ask.user_id)
    wanted = {
        (source.provider, source.data_type) for source in engine.sources if source.provider in known
    } | set(entries)
    statuses = []
    for provider, data_type in sorted(wanted):
        if ask.provider and provider != ask.provider:
            continue
        if ask.data_type and data_type != ask.data_type:
            continue
        entry = entries.get((provider, data_type))
        threshold = freshness.threshold(provider, data_type)
        last = None if entry is None else entry.last_success_at
        age = _age(last, now)
        statuses.append(
            DataTypeStatus(
                provider=provider,
                data_type=data_type,
                connection_status=known.get(provider),
                sync_status="never" if entry is None else entry.status,
                last_sync_at=last,
                last_attempt_at=None if entry is None else entry.last_attempt_at,
                records_synced=0 if entry is None else entry.records_synced,
                time_since_sync_seconds=None if age is None else round(age, 3),
                time_since_sync_hours=_hours(age),
                threshold_seconds=threshold,
                threshold_hours=round(threshold / 3600, 2),
                needs_sync=age is None or age >= threshold,
                error_message=None if entry is None else entry.error,
                session_id=None if entry is None else entry.session_id,
            )
        )
    grouped: dict[str, dict[str, DataTypeStatus]] = {}
    for item in statuses:
        grouped.setdefault(item.provider, {})[item.data_type] = item
    return SyncStatusReply(
        user_id=ask.user_id, statuses=tuple(statuses), sync_status=grouped, check_timestamp=now
    )


# -- smart reads ---------------------------------------------------------------------------


class Flights:
    """The on-demand syncs of one process: concurrent stale reads of one user's data type
    await the same one. Across replicas an advisory lock per (user, provider, type) makes
    the second replica wait for the first and then find the data fresh."""

    def __init__(self, concurrency: int = FLIGHT_CONCURRENCY) -> None:
        self.running: dict[tuple[str, str, str], asyncio.Task[None]] = {}
        # Each flight holds a pooled connection for its lock while the sync takes more:
        # a bound well under the pool size keeps flights from starving their own syncs.
        self.slots = asyncio.Semaphore(concurrency)


async def _sync_now(engine: Engine, flights: Flights, ask: DataQuery, freshness: Freshness) -> None:
    key = (ask.user_id, ask.provider, ask.data_type)
    flight = flights.running.get(key)
    if flight is None:
        asked_at = engine.clock.now()
        threshold = freshness.threshold(ask.provider, ask.data_type)
        flight = asyncio.get_running_loop().create_task(
            _fly(engine, flights, ask, asked_at, None if ask.force_refresh else threshold)
        )
        flights.running[key] = flight
        flight.add_done_callback(lambda _: flights.running.pop(key, None))
    await asyncio.shield(flight)


async def _fly(
    engine: Engine,
    flights: Flights,
    ask: DataQuery,
    asked_at: datetime,
    threshold: float | None,
) -> None:
    """One on-demand sync under the cluster-wide lock of (user, provider, type), unless
    whoever held the lock before us synced it meanwhile."""
    lock = f"smart-read:{ask.user_id}:{ask.provider}:{ask.data_type}"
    async with flights.slots, engine.pool.acquire() as conn:
        try:
            await asyncio.wait_for(conn.execute(LOCK, lock), LOCK_WAIT_SECONDS)
        except TimeoutError:
            raise RetryableError(
                f"another replica is still syncing {ask.provider}/{ask.data_type}",
                retry_after=1.0,
            ) from None
        try:
            last = await sync_state.last_success(conn, ask.user_id, ask.provider, ask.data_type)
            now = engine.clock.now()
            if last is not None and (
                last >= asked_at
                or (threshold is not None and (now - last).total_seconds() < threshold)
            ):
                return
            command = SyncRequested(
                request_id=f"read:{uuid.uuid4().hex}",
                user_id=ask.user_id,
                provider=ask.provider,
                kind="on_demand",
                data_types=(ask.data_type,),
                requested_at=now,
                priority="interactive",
            )
            await _run(engine, command)
        finally:
            await conn.execute(UNLOCK, lock)


async def _run(engine: Engine, command: SyncRequested) -> None:
    try:
        await engine.run(command, last_delivery=True)
    except Deferred as deferred:
        raise RetryableError(
            f"{command.provider} rate budget spent", retry_after=deferred.seconds
        ) from deferred
    except Cancelled as cancelled:
        raise PermanentError(str(cancelled)) from cancelled


class Answered:
    """The rows of recent fresh reads as they were answered (JSON), by read, with the
    versions of the rows they were made from. A read that finds the same versions again
    (one cheap statement) sends the same bytes, neither reading the rows and their
    payloads again nor decoding and encoding them: at a thousand reads a second that
    was most of the work. A version changes with every write of a row, so an answer is
    never served for rows that changed since. Bounded in bytes, least recently used out.
    """

    def __init__(self, max_bytes: int = ANSWERED_BYTES) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._answers: OrderedDict[Hashable, tuple[tuple[str, ...], bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, read: Hashable, versions: tuple[str, ...]) -> bytes | None:
        found = self._answers.get(read)
        if found is None or found[0] != versions:
            return None
        self._answers.move_to_end(read)
        return found[1]

    def put(self, read: Hashable, versions: tuple[str, ...], data: bytes) -> None:
        old = self._answers.pop(read, None)
        if old is not None:
            self.size -= len(old[1])
        if len(data) > self.max_bytes:
            return
        self._answers[read] = (versions, data)
        self.size += len(data)
        while self.size > self.max_bytes:
            _, (_, dropped) = self._answers.popitem(last=False)
            self.size -= len(dropped)


async def data_json(
    engine: Engine, ask: DataQuery, freshness: Freshness, flights: Flights, answered: Answered
) -> rpc.Encoded:
    """A smart read, answered in the shape of the smart-sync design (seeds/004), as the
    bytes of its reply; a fresh read of rows answered before comes from ``answered``.
    The hot path, one statement: the rows' versions and freshness, on a connection only
    read from (no reset afterwards)."""
    source = _source(engine, ask)
    threshold = freshness.threshold(ask.provider, ask.data_type)
    if not ask.force_refresh:
        window = _window(ask)
        async with db.reading(engine.pool) as conn:
            versions, last = await source.versions(conn, ask.user_id, **window)
            if not versions:  # the time rides on the rows
                last = await sync_state.last_success(conn, ask.user_id, ask.provider, ask.data_type)
            age = _age(last, engine.clock.now())
            fresh = age is not None and age < threshold
            if fresh:
                key = (ask.provider, ask.data_type, ask.user_id, *window.values())
                known = answered.get(key, versions) if versions else b"[]"
                if known is None:
                    read = await source.read_versioned(conn, ask.user_id, **window)
                    rows, count = to_json(read.rows), len(read.rows)
                    answered.put(key, read.versions, rows)
                else:
                    rows, count = known, len(versions)
        if fresh:
            assert age is not None
            return _encoded("success", rows, _cache_metadata(count, last, age, threshold))
    reply = await _not_fresh(engine, source, ask, threshold, freshness, flights)
    return rpc.Encoded(reply.to_bytes())


def _source(engine: Engine, ask: DataQuery) -> Source:
    source = engine.sources.get(ask.provider, ask.data_type)
    if source is None:
        served = ", ".join(sorted(f"{s.provider}/{s.data_type}" for s in engine.sources))
        raise NotFoundError(
            f"sync-worker has no data type {ask.provider}/{ask.data_type}; it serves {served}",
            details={"provider": ask.provider, "data_type": ask.data_type},
        )
    return source


def _window(ask: DataQuery) -> dict[str, Any]:
    return {"start": ask.start, "end": ask.end, "limit": ask.limit or DEFAULT_LIMIT}


def _cache_metadata(
    count: int, last: datetime | None, age: float, threshold: float
) -> dict[str, Any]:
    return {
        "source": "cache",
        "record_count": count,
        "last_sync_at": _iso(last),
        "time_since_sync_seconds": round(age, 3),
        "time_since_sync_hours": _hours(age),
        "threshold_seconds": threshold,
        "cached_enough": True,
        "note": "Using cached data (fresh enough)",
    }


async def _not_fresh(
    engine: Engine,
    source: Source,
    ask: DataQuery,
    threshold: float,
    freshness: Freshness,
    flights: Flights,
) -> DataReply:
    """Stale or forced: sync now (shared with concurrent reads), then answer what that
    stored, or the stale cache when the provider failed."""
    label = PROVIDER_LABELS.get(ask.provider, ask.provider)
    try:
        await _sync_now(engine, flights, ask, freshness)
    except SyncplaneError as err:
        return await _stale(engine, source, ask, threshold, label, err)
    rows = await _rows(engine, source, ask)
    synced = await _last_success(engine, ask)
    since = _age(synced, engine.clock.now())
    return _answer(
        "success",
        rows,
        {
            "source": f"{ask.provider}_api",
            "record_count": len(rows),
            "synced_at": _iso(synced),
            "time_since_sync_seconds": None if since is None else round(since, 3),
            "time_since_sync_hours": _hours(since),
            "threshold_seconds": threshold,
            "cached_enough": False,
            "note": f"Fresh data from {label} API"
            + (" (forced refresh)" if ask.force_refresh else ""),
        },
    )


async def _stale(
    engine: Engine,
    source: Source,
    ask: DataQuery,
    threshold: float,
    label: str,
    err: SyncplaneError,
) -> DataReply:
    """The provider failed: the last stored rows with the warning and the error, or, with
    nothing stored, an error of our own (502 at the gateway; the reconnect errors as they
    are, since retrying will not help)."""
    rows = await _rows(engine, source, ask)
    last = await _last_success(engine, ask)
    if not rows and last is None:
        if isinstance(err, ReauthRequiredError | NotConnectedError | RevokedError):
            raise err
        raise ProviderUnavailableError(
            f"{label} API failed and no {ask.data_type} data is stored yet: {err.message}",
            retry_after=getattr(err, "retry_after", None),
        ) from err
    age = _age(last, engine.clock.now())
    log.warning(
        "smart read served stale cache",
        extra={"user_id": ask.user_id, "provider": ask.provider, "error": err.message},
    )
    return _answer(
        "success_with_warning",
        rows,
        {
            "source": "stale_cache",
            "record_count": len(rows),
            "last_sync_at": _iso(last),
            "time_since_sync_seconds": None if age is None else round(age, 3),
            "time_since_sync_hours": _hours(age),
            "threshold_seconds": threshold,
            "cached_enough": False,
            "warning": "Using stale cached data due to sync failure",
            "error": f"{label} API: {err.message}",
        },
    )


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


async def _last_success(engine: Engine, ask: DataQuery) -> datetime | None:
    return await sync_state.last_success(engine.pool, ask.user_id, ask.provider, ask.data_type)


def _answer(
    status: Literal["success", "success_with_warning"],
    rows: list[dict[str, Any]],
    metadata: dict[str, Any],
) -> DataReply:
    # Built from our own rows: validating every nested value again costs a read's worth
    # of CPU at a thousand reads a second, for nothing.
    return DataReply.model_construct(status=status, data=tuple(rows), metadata=metadata)


def _encoded(
    status: Literal["success", "success_with_warning"], rows: bytes, metadata: dict[str, Any]
) -> rpc.Encoded:
    """What ``_answer(status, rows, metadata).to_bytes()`` would write, ``rows`` being
    that list already in JSON: the same fields in the same order, written by the same
    serializer (pydantic-core)."""
    return rpc.Encoded(
        b'{"schema_version":1,"error":null,"status":'
        + to_json(status)
        + b',"data":'
        + rows
        + b',"metadata":'
        + to_json(metadata)
        + b"}"
    )


async def _rows(engine: Engine, source: Source, ask: DataQuery) -> list[dict[str, Any]]:
    async with engine.pool.acquire() as conn:
        return await _read(conn, source, ask)


async def _read(conn: Conn, source: Source, ask: DataQuery) -> list[dict[str, Any]]:
    return await source.read(
        conn, ask.user_id, start=ask.start, end=ask.end, limit=ask.limit or DEFAULT_LIMIT
    )


async def cancel_running(engine: Engine, user_id: str, provider: str) -> int:
    """Cancel the connection's unfinished sessions; the worker running one sees its next
    save refused and stops."""
    cancelled = 0
    for running in await session_store.running_for(engine.pool, user_id, provider):
        try:
            await session_store.save(engine.pool, sessions.cancel(running, engine.clock.now()))
            cancelled += 1
        except ConflictError:
            continue  # it moved meanwhile; the worker sees the connection gone
    return cancelled


async def purge(engine: Engine, user_id: str, provider: str) -> int:
    purged = 0
    async with engine.pool.acquire() as conn:
        for source in engine.sources.of(provider):
            purged += await source.purge(conn, user_id)
    return purged
