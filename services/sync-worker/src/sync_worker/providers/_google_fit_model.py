"""Google Fit REST v1 wire models and the daily row they make (PROVIDERS.md §6.2, §6.3;
payloads/gfit_aggregate_response.json).

Field names are Google's (camelCase aliases). Every int64 arrives as a JSON string
(``startTimeMillis``, ``startTimeNanos``, ``modifiedTimeMillis``) and is read as an int.
One ``dataset:aggregate`` bucket becomes one :class:`FitDay`: the local date it starts on
in the user's zone and the five values sync keeps. Which stream counts steps is chosen
once here (``estimated_steps``, the number the Fit app shows) and never mixed: another
stream would make the same day look changed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from sync_worker.providers._records import content_hash

__all__ = [
    "ACTIVE_MINUTES",
    "AGGREGATE_BY",
    "CALORIES",
    "DISTANCE",
    "HEART_RATE",
    "HEART_RATE_SUMMARY",
    "STEPS",
    "STEPS_SOURCE",
    "Bucket",
    "FitDay",
    "FitSession",
    "aggregate_request",
    "day_bounds",
    "fit_day",
]

GMS = "com.google.android.gms"
STEPS = "com.google.step_count.delta"
CALORIES = "com.google.calories.expended"
DISTANCE = "com.google.distance.delta"
HEART_RATE = "com.google.heart_rate.bpm"
# Aggregated heart rate comes back as this type: three values, average, maximum, minimum.
HEART_RATE_SUMMARY = "com.google.heart_rate.summary"
ACTIVE_MINUTES = "com.google.active_minutes"
STEPS_SOURCE = f"derived:{STEPS}:{GMS}:estimated_steps"

AGGREGATE_BY: tuple[dict[str, str], ...] = (
    {"dataTypeName": STEPS, "dataSourceId": STEPS_SOURCE},
    {"dataTypeName": CALORIES},
    {"dataTypeName": DISTANCE},
    {"dataTypeName": HEART_RATE},
    {"dataTypeName": ACTIVE_MINUTES},
)


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class Value(_Wire):
    int_val: int | None = Field(None, alias="intVal")
    fp_val: float | None = Field(None, alias="fpVal")

    @property
    def number(self) -> float | None:
        if self.int_val is not None:
            return float(self.int_val)
        return self.fp_val


class Point(_Wire):
    start_time_nanos: int = Field(alias="startTimeNanos")
    end_time_nanos: int = Field(alias="endTimeNanos")
    data_type_name: str = Field(alias="dataTypeName")
    value: tuple[Value, ...] = ()


class Dataset(_Wire):
    data_source_id: str = Field(alias="dataSourceId")
    point: tuple[Point, ...] = ()

    @property
    def data_type(self) -> str:
        """The type in the stream id (``derived:<type>:<app>:<stream>``), so even an
        empty dataset, whose points cannot say, is known by its type."""
        parts = self.data_source_id.split(":")
        return parts[1] if len(parts) > 1 else ""


class Bucket(_Wire):
    start_time_millis: int = Field(alias="startTimeMillis")
    end_time_millis: int = Field(alias="endTimeMillis")
    dataset: tuple[Dataset, ...] = ()


class FitSession(_Wire):
    """One users.sessions.list session; ``raw`` as Google sent it."""

    id: str = Field(min_length=1)
    name: str = ""
    description: str = ""
    start_time_millis: int = Field(alias="startTimeMillis")
    end_time_millis: int = Field(alias="endTimeMillis")
    modified_time_millis: int | None = Field(None, alias="modifiedTimeMillis")
    activity_type: int = Field(alias="activityType")
    active_time_millis: int | None = Field(None, alias="activeTimeMillis")
    application: dict[str, Any] | None = None
    raw: dict[str, Any]

    @property
    def start(self) -> datetime:
        return _from_ms(self.start_time_millis)

    @property
    def end(self) -> datetime:
        return _from_ms(self.end_time_millis)

    @property
    def modified_at(self) -> datetime | None:
        ms = self.modified_time_millis
        return None if ms is None else _from_ms(ms)

    @property
    def package_name(self) -> str | None:
        name = (self.application or {}).get("packageName")
        return name if isinstance(name, str) else None

    @property
    def content_hash(self) -> str:
        return content_hash(self.raw)


@dataclass(frozen=True, slots=True)
class FitDay:
    """One local day's aggregates; a value is ``None`` where Fit had no data that day."""

    day: date
    time_zone: str
    start: datetime
    end: datetime
    steps: int | None
    calories_kcal: float | None
    distance_m: float | None
    heart_rate_avg: float | None
    heart_rate_min: float | None
    heart_rate_max: float | None
    active_minutes: int | None
    raw: dict[str, Any]

    def values(self) -> dict[str, Any]:
        return {
            "date": self.day.isoformat(),
            "time_zone": self.time_zone,
            "steps": self.steps,
            "calories_kcal": self.calories_kcal,
            "distance_m": self.distance_m,
            "heart_rate_avg": self.heart_rate_avg,
            "heart_rate_min": self.heart_rate_min,
            "heart_rate_max": self.heart_rate_max,
            "active_minutes": self.active_minutes,
        }

    @property
    def is_empty(self) -> bool:
        return all(v is None for k, v in self.values().items() if k not in ("date", "time_zone"))

    @property
    def content_hash(self) -> str:
        # The values, not the bucket: Google may re-derive points (new nanos, another
        # origin) for the same numbers, and a row is rewritten only when a number moves.
        return content_hash(self.values())


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


def day_bounds(first: date, last: date, zone: ZoneInfo) -> tuple[int, int]:
    """Epoch ms of local midnight starting ``first`` and ending ``last`` (23 or 25 hours
    on a DST change are still one day)."""
    start = _local_midnight(first, zone)
    end = _local_midnight(last + timedelta(days=1), zone)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def aggregate_request(first: date, last: date, zone: ZoneInfo) -> dict[str, Any]:
    """The dataset:aggregate body for days ``first``..``last`` in ``zone``, one bucket per
    local calendar day."""
    start_ms, end_ms = day_bounds(first, last, zone)
    return {
        "aggregateBy": [dict(entry) for entry in AGGREGATE_BY],
        "bucketByTime": {"period": {"type": "day", "value": 1, "timeZoneId": zone.key}},
        "startTimeMillis": start_ms,
        "endTimeMillis": end_ms,
    }


def _total(points: list[Point]) -> float | None:
    found = [v.number for p in points for v in p.value[:1] if v.number is not None]
    return math.fsum(found) if found else None


def _heart_rate(points: list[Point]) -> tuple[float | None, float | None, float | None]:
    """(average, minimum, maximum) from summary points [avg, max, min]; several points
    (a split bucket) are merged, the average weighted by the time each covers."""
    rows: list[tuple[int, float, float, float]] = []
    for p in points:
        if len(p.value) < 3:
            continue
        avg, top, low = (v.number for v in p.value[:3])
        if avg is None or top is None or low is None:
            continue
        rows.append((max(p.end_time_nanos - p.start_time_nanos, 1), avg, top, low))
    if not rows:
        return None, None, None
    weight = sum(w for w, _, _, _ in rows)
    average = math.fsum(w * a for w, a, _, _ in rows) / weight
    return average, min(low for _, _, _, low in rows), max(top for _, _, top, _ in rows)


def fit_day(bucket: Bucket, raw: dict[str, Any], zone: ZoneInfo) -> FitDay:
    """The day a bucket stands for and its values; datasets are told apart by the type in
    their stream id, never by their order."""
    by_type: dict[str, list[Point]] = {}
    for dataset in bucket.dataset:
        by_type.setdefault(dataset.data_type, []).extend(dataset.point)
    start = _from_ms(bucket.start_time_millis)
    steps = _total(by_type.get(STEPS, []))
    active = _total(by_type.get(ACTIVE_MINUTES, []))
    hr_points = by_type.get(HEART_RATE_SUMMARY, []) + by_type.get(HEART_RATE, [])
    avg, low, top = _heart_rate(hr_points)
    return FitDay(
        day=start.astimezone(zone).date(),
        time_zone=zone.key,
        start=start,
        end=_from_ms(bucket.end_time_millis),
        steps=None if steps is None else round(steps),
        calories_kcal=_total(by_type.get(CALORIES, [])),
        distance_m=_total(by_type.get(DISTANCE, [])),
        heart_rate_avg=avg,
        heart_rate_min=low,
        heart_rate_max=top,
        active_minutes=None if active is None else round(active),
        raw=raw,
    )
