"""The SQL of WHOOP records (tables ``sync.whoop_*``, migration 0006).

Ids in and out are WHOOP's, as text: a cycle's int64 as digits, a sleep's or workout's
UUID, a recovery's sleep UUID (what its webhooks carry), i.e. ``record.key``. Upserts
store a batch of one kind and return the ids really added and updated
(:class:`~sync_worker.store_records.Changes`); the rest of the machinery is
:mod:`sync_worker.store_records`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from sync_worker import store_records
from sync_worker.providers.whoop import Cycle, Kind, Recovery, Sleep, WhoopRecord, Workout
from sync_worker.store_records import Changes, Column, Row, StoredRow, Table

if TYPE_CHECKING:
    from sync_worker.store_records import Db

__all__ = [
    "TABLES",
    "Changes",
    "StoredRow",
    "delete",
    "delete_user",
    "newest",
    "recent",
    "upsert",
]


def _columns(*spec: str) -> tuple[Column, ...]:
    return tuple(Column(*item.split(":")) for item in spec)


_COMMON_TAIL = ("whoop_created_at:timestamptz", "whoop_updated_at:timestamptz")

TABLES: dict[Kind, Table] = {
    "cycle": Table(
        "whoop_cycles",
        Column("cycle_id", "bigint"),
        _columns(
            "whoop_user_id:bigint",
            "start_at:timestamptz",
            "end_at:timestamptz",
            "timezone_offset:text",
            "score_state:text",
            "strain:float8",
            "kilojoule:float8",
            "average_heart_rate:int4",
            "max_heart_rate:int4",
            *_COMMON_TAIL,
        ),
        "start_at",
    ),
    "recovery": Table(
        "whoop_recoveries",
        Column("sleep_id", "uuid"),
        _columns(
            "cycle_id:bigint",
            "whoop_user_id:bigint",
            "score_state:text",
            "user_calibrating:bool",
            "recovery_score:float8",
            "resting_heart_rate:float8",
            "hrv_rmssd_milli:float8",
            "spo2_percentage:float8",
            "skin_temp_celsius:float8",
            *_COMMON_TAIL,
        ),
        "whoop_created_at",
    ),
    "sleep": Table(
        "whoop_sleeps",
        Column("sleep_id", "uuid"),
        _columns(
            "cycle_id:bigint",
            "v1_id:bigint",
            "whoop_user_id:bigint",
            "start_at:timestamptz",
            "end_at:timestamptz",
            "timezone_offset:text",
            "nap:bool",
            "score_state:text",
            "respiratory_rate:float8",
            "sleep_performance_percentage:float8",
            "sleep_consistency_percentage:float8",
            "sleep_efficiency_percentage:float8",
            "total_in_bed_time_milli:bigint",
            "total_awake_time_milli:bigint",
            "total_light_sleep_time_milli:bigint",
            "total_slow_wave_sleep_time_milli:bigint",
            "total_rem_sleep_time_milli:bigint",
            *_COMMON_TAIL,
        ),
        "start_at",
    ),
    "workout": Table(
        "whoop_workouts",
        Column("workout_id", "uuid"),
        _columns(
            "v1_id:bigint",
            "whoop_user_id:bigint",
            "start_at:timestamptz",
            "end_at:timestamptz",
            "timezone_offset:text",
            "sport_name:text",
            "sport_id:int4",
            "score_state:text",
            "strain:float8",
            "average_heart_rate:int4",
            "max_heart_rate:int4",
            "kilojoule:float8",
            "percent_recorded:float8",
            "distance_meter:float8",
            "altitude_gain_meter:float8",
            *_COMMON_TAIL,
        ),
        "start_at",
    ),
}


def _of(model: BaseModel | None, *names: str) -> tuple[Any, ...]:
    """The named fields of an optional score part; all null when WHOOP sent none."""
    return tuple(None if model is None else getattr(model, name) for name in names)


def _cycle(r: Cycle) -> tuple[Any, ...]:
    score = _of(r.score, "strain", "kilojoule", "average_heart_rate", "max_heart_rate")
    return (r.user_id, r.start, r.end, r.timezone_offset, r.score_state, *score)


def _recovery(r: Recovery) -> tuple[Any, ...]:
    score = _of(
        r.score,
        "user_calibrating",
        "recovery_score",
        "resting_heart_rate",
        "hrv_rmssd_milli",
        "spo2_percentage",
        "skin_temp_celsius",
    )
    return (r.cycle_id, r.user_id, r.score_state, *score)


def _sleep(r: Sleep) -> tuple[Any, ...]:
    score = _of(
        r.score,
        "respiratory_rate",
        "sleep_performance_percentage",
        "sleep_consistency_percentage",
        "sleep_efficiency_percentage",
    )
    stages = _of(
        r.score.stage_summary if r.score is not None else None,
        "total_in_bed_time_milli",
        "total_awake_time_milli",
        "total_light_sleep_time_milli",
        "total_slow_wave_sleep_time_milli",
        "total_rem_sleep_time_milli",
    )
    head = (r.cycle_id, r.v1_id, r.user_id, r.start, r.end, r.timezone_offset, r.nap)
    return (*head, r.score_state, *score, *stages)


def _workout(r: Workout) -> tuple[Any, ...]:
    score = _of(
        r.score,
        "strain",
        "average_heart_rate",
        "max_heart_rate",
        "kilojoule",
        "percent_recorded",
        "distance_meter",
        "altitude_gain_meter",
    )
    head = (r.v1_id, r.user_id, r.start, r.end, r.timezone_offset, r.sport_name, r.sport_id)
    return (*head, r.score_state, *score)


def _db_key(kind: Kind, key: str) -> int | uuid.UUID:
    return int(key) if kind == "cycle" else uuid.UUID(key)


def _row(kind: Kind, record: WhoopRecord) -> Row:
    if record.kind != kind:
        raise ValueError(f"a {record.kind} record in a batch of {kind}")
    if isinstance(record, Cycle):
        values = _cycle(record)
    elif isinstance(record, Recovery):
        values = _recovery(record)
    elif isinstance(record, Sleep):
        values = _sleep(record)
    else:
        values = _workout(record)
    values += (record.created_at, record.updated_at)
    return Row(_db_key(kind, record.key), values, record.raw, record.content_hash)


async def upsert(
    db: Db, user_id: str, kind: Kind, records: Sequence[WhoopRecord], now: datetime
) -> Changes[str]:
    """Stores ``records`` (all of ``kind``) for ``user_id``; unchanged ones are not
    rewritten. Returns the WHOOP ids added and updated."""
    rows = [_row(kind, record) for record in records]
    changes = await store_records.upsert(db, TABLES[kind], user_id, rows, now)
    return Changes(
        added=tuple(str(k) for k in changes.added),
        updated=tuple(str(k) for k in changes.updated),
    )


async def delete(db: Db, user_id: str, kind: Kind, ids: Sequence[str]) -> list[str]:
    """Deletes records by WHOOP id (``*.deleted`` webhooks); returns those that existed.
    An id that is not even well formed cannot be stored, so it is not there to delete."""
    keys: list[int | uuid.UUID] = []
    for record_id in ids:
        try:
            keys.append(_db_key(kind, str(record_id)))
        except ValueError:
            continue
    return [str(k) for k in await store_records.delete(db, TABLES[kind], user_id, keys)]


async def recent(
    db: Db,
    user_id: str,
    kind: Kind,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 30,
) -> list[StoredRow]:
    """Smart reads: ``user_id``'s newest records of ``kind`` (by start; a recovery by its
    creation), ``since`` inclusive and ``until`` exclusive. Keys come back as text ids."""
    rows = await store_records.recent(
        db, TABLES[kind], user_id, since=since, until=until, limit=limit
    )
    return [replace(r, key=str(r.key)) for r in rows]


async def newest(db: Db, user_id: str, kind: Kind) -> datetime | None:
    """The newest stored record's instant (a span's start, a recovery's creation)."""
    value: datetime | None = await store_records.newest(db, TABLES[kind], user_id)
    return value


async def delete_user(db: Db, user_id: str, kind: Kind) -> int:
    return await store_records.delete_user(db, TABLES[kind], user_id)
