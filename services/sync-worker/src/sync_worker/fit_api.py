"""sync-worker's Google Fit request/reply subjects (queue group ``sync-worker``): the
latest runs for the admin console (``sync.fit_runs.get``) and the zone a user's days are
counted in (``sync.time_zone.set`` / ``sync.time_zone.get``). Thin: parse (the contracts
do), call the store, answer."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
from faststream.nats import NatsBroker
from syncplane_common import rpc, subjects
from syncplane_common.clock import Clock
from syncplane_common.contracts import (
    FitRunsGet,
    FitRunsReply,
    TimeZoneGet,
    TimeZoneReply,
    TimeZoneSet,
)

from sync_worker import fit_store
from sync_worker.fit_store import TimeZones
from sync_worker.providers.google_fit import zone_of


@dataclass
class FitApi:
    pool: asyncpg.Pool[asyncpg.Record]
    clock: Clock
    # The same reader the daily sync asks, so the answer is the zone the next sync uses.
    zones: TimeZones

    async def runs(self, ask: FitRunsGet) -> FitRunsReply:
        return FitRunsReply(runs=tuple(await fit_store.latest_runs(self.pool, ask.limit)))

    async def set_time_zone(self, ask: TimeZoneSet) -> TimeZoneReply:
        zone = zone_of(ask.time_zone).key  # an unknown zone is a bad request, not stored
        await fit_store.set_time_zone(self.pool, ask.user_id, zone, self.clock.now())
        return TimeZoneReply(user_id=ask.user_id, time_zone=zone)

    async def time_zone(self, ask: TimeZoneGet) -> TimeZoneReply:
        return TimeZoneReply(user_id=ask.user_id, time_zone=await self.zones.get(ask.user_id))


def register(broker: NatsBroker, api: Callable[[], FitApi], *, queue: str) -> None:
    serve = functools.partial(rpc.responder, broker, queue=queue, max_workers=4)

    async def runs(ask: FitRunsGet) -> FitRunsReply:
        return await api().runs(ask)

    async def set_time_zone(ask: TimeZoneSet) -> TimeZoneReply:
        return await api().set_time_zone(ask)

    async def time_zone(ask: TimeZoneGet) -> TimeZoneReply:
        return await api().time_zone(ask)

    serve(subjects.SYNC_FIT_RUNS_GET, FitRunsGet, FitRunsReply)(runs)
    serve(subjects.SYNC_TIME_ZONE_SET, TimeZoneSet, TimeZoneReply)(set_time_zone)
    serve(subjects.SYNC_TIME_ZONE_GET, TimeZoneGet, TimeZoneReply)(time_zone)
