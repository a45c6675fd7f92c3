"""What sync-worker answers: one session, the sync status of a user, and smart reads
(ARCHITECTURE §4 "Smart read"; the WHOOP smart-sync design, seeds/004), plus the two
lifecycle chores that touch stored data (cancel running sessions, purge on revoke).

A smart read answers from storage when the data is fresh enough, else syncs now and
answers what that stored; a provider failure with data on hand answers the stored rows
as ``stale_cache`` with the warning and the error. Concurrent stale reads of one user's
data type in this process share one sync (a single flight), so a burst of app opens
costs one provider fetch.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

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
    NotFoundError,
    PermanentError,
    RetryableError,
    SyncplaneError,
)

from sync_worker import session_store, sessions, sync_state
from sync_worker.engine import Cancelled, Deferred, Engine

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 100

# Freshness thresholds per (provider, data type) for smart reads and status.
THRESHOLDS: dict[tuple[str, str], float] = {("strava", "activities"): 3600.0}


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


def _threshold(provider: str, data_type: str, fallback: float) -> float:
    return THRESHOLDS.get((provider, data_type), fallback)


async def status(engine: Engine, intervals: dict[str, int], ask: SyncStatusGet) -> SyncStatusReply:
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
        threshold = _threshold(provider, data_type, float(intervals.get(provider, 3600)))
        last = None if entry is None else entry.last_success_at
        age = None if last is None else (now - last).total_seconds()
        statuses.append(
            DataTypeStatus(
                provider=provider,
                data_type=data_type,
                connection_status=known.get(provider),
                sync_status="never" if entry is None else entry.status,
                last_sync_at=last,
                last_attempt_at=None if entry is None else entry.last_attempt_at,
                records_synced=0 if entry is None else entry.records_synced,
                time_since_sync_seconds=age,
                time_since_sync_hours=None if age is None else round(age / 3600, 2),
                threshold_seconds=threshold,
                threshold_hours=round(threshold / 3600, 2),
                needs_sync=age is None or age >= threshold,
                error_message=None if entry is None else entry.error,
                session_id=None if entry is None else entry.session_id,
            )
        )
    return SyncStatusReply(user_id=ask.user_id, statuses=tuple(statuses))


_flights: dict[tuple[str, str, str], asyncio.Task[None]] = {}


async def _sync_now(engine: Engine, user_id: str, provider: str, data_type: str) -> None:
    """One on-demand incremental sync per (user, provider, type) at a time in this
    process; concurrent callers await the same one."""
    key = (user_id, provider, data_type)
    flight = _flights.get(key)
    if flight is None:
        command = SyncRequested(
            request_id=f"read:{uuid.uuid4().hex}",
            user_id=user_id,
            provider=provider,
            kind="on_demand",
            data_types=(data_type,),
            requested_at=engine.clock.now(),
            priority="interactive",
        )
        flight = asyncio.get_running_loop().create_task(_run(engine, command))
        _flights[key] = flight
        flight.add_done_callback(lambda _: _flights.pop(key, None))
    await asyncio.shield(flight)


async def _run(engine: Engine, command: SyncRequested) -> None:
    try:
        await engine.run(command, last_delivery=True)
    except Deferred as deferred:
        raise RetryableError(
            f"{command.provider} rate budget spent", retry_after=deferred.seconds
        ) from deferred
    except Cancelled as cancelled:
        raise PermanentError(str(cancelled)) from cancelled


async def data(engine: Engine, ask: DataQuery) -> DataReply:
    source = engine.sources.get(ask.provider, ask.data_type)
    if source is None:
        raise PermanentError(
            f"sync-worker does not serve {ask.provider}/{ask.data_type} yet",
            details={"provider": ask.provider, "data_type": ask.data_type},
        )
    threshold = _threshold(ask.provider, ask.data_type, 3600.0)
    last = await _last_success(engine, ask)
    now = engine.clock.now()
    fresh = last is not None and (now - last).total_seconds() < threshold
    meta: dict[str, Any] = {"threshold_seconds": threshold}
    warning: str | None = None
    if fresh and not ask.force_refresh:
        meta["source"] = "cache"
        meta["cached_enough"] = True
        meta["note"] = "data is fresh enough; served from storage"
    else:
        try:
            await _sync_now(engine, ask.user_id, ask.provider, ask.data_type)
            meta["source"] = f"{ask.provider}_api"
            meta["cached_enough"] = False
            meta["note"] = "forced refresh" if ask.force_refresh else "data was stale; synced now"
        except SyncplaneError as err:
            rows = await _rows(engine, ask)
            if not rows:
                raise RetryableError(
                    f"{ask.provider} is unavailable and nothing is stored yet: {err}",
                    retry_after=getattr(err, "retry_after", None),
                ) from err
            meta["source"] = "stale_cache"
            meta["cached_enough"] = False
            meta["error"] = f"{type(err).__name__}: {err}"
            warning = f"{ask.provider} could not be reached; showing stored data"
            meta["warning"] = warning
            return _reply(rows, meta, await _last_success(engine, ask), now, warning)
    rows = await _rows(engine, ask)
    return _reply(rows, meta, await _last_success(engine, ask), now, warning)


def _reply(
    rows: list[dict[str, Any]],
    meta: dict[str, Any],
    last: datetime | None,
    now: datetime,
    warning: str | None,
) -> DataReply:
    age = None if last is None else (now - last).total_seconds()
    meta.update(
        record_count=len(rows),
        last_sync_at=None if last is None else last.astimezone(UTC).isoformat(),
        time_since_sync_seconds=None if age is None else round(age, 3),
        time_since_sync_hours=None if age is None else round(age / 3600, 3),
    )
    return DataReply(
        status="success_with_warning" if warning else "success",
        data=tuple(rows),
        metadata=meta,
    )


async def _last_success(engine: Engine, ask: DataQuery) -> datetime | None:
    return await sync_state.last_success(engine.pool, ask.user_id, ask.provider, ask.data_type)


async def _rows(engine: Engine, ask: DataQuery) -> list[dict[str, Any]]:
    source = engine.sources.get(ask.provider, ask.data_type)
    assert source is not None  # data() checked it
    async with engine.pool.acquire() as conn:
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
