"""users.dataset.aggregate (PROVIDERS.md §6.2): request validation, bucket boundaries and
the aggregated points, with every int64 written as a JSON string."""

from __future__ import annotations

import calendar
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from provider_sandbox.providers._google_fit_store import (
    ACTIVE_MINUTES,
    CALORIES,
    DISTANCE,
    HEART_RATE,
    STEPS,
    WEIGHT,
    Chunk,
    FitSession,
    UserData,
)

MAX_SPAN_MS = 7_776_000_000  # about 90 days; there is no pagination (§6.2)
GMS = "com.google.android.gms"
AUTH = "https://www.googleapis.com/auth/fitness."
BUCKETINGS = ("bucketByTime", "bucketBySession", "bucketByActivityType", "bucketByActivitySegment")


def _scopes(*kinds: str) -> frozenset[str]:
    return frozenset(f"{AUTH}{kind}.{access}" for kind in kinds for access in ("read", "write"))


@dataclass(frozen=True)
class FitType:
    name: str
    summary: str  # the dataTypeName of aggregated points
    kind: Literal["int", "fp", "summary"]
    scopes: frozenset[str]
    streams: tuple[str, ...] = ()
    origin: str = ""

    @property
    def aggregated_source(self) -> str:
        return f"derived:{self.summary}:{GMS}:aggregated"

    def accepts_source(self, source_id: str) -> bool:
        return source_id == self.aggregated_source or source_id in {
            f"derived:{self.name}:{GMS}:{stream}" for stream in self.streams
        }


_PHONE = "raw:com.google.step_count.cumulative:Google:Pixel 7:4f1c2a9e:Step Counter"
_WATCH = "raw:com.google.heart_rate.bpm:Google:Pixel Watch:8d02b7c1:Heart Rate Sensor"
_TYPES = (
    FitType(
        STEPS, STEPS, "int", _scopes("activity"), ("estimated_steps", "merge_step_deltas"), _PHONE
    ),
    FitType(DISTANCE, DISTANCE, "fp", _scopes("location"), ("merge_distance_delta",), _PHONE),
    FitType(
        CALORIES,
        CALORIES,
        "fp",
        _scopes("activity"),
        ("merge_calories_expended",),
        f"derived:{CALORIES}:{GMS}:from_activities",
    ),
    FitType(
        ACTIVE_MINUTES,
        ACTIVE_MINUTES,
        "int",
        _scopes("activity"),
        ("merge_active_minutes",),
        f"derived:{ACTIVE_MINUTES}:{GMS}:from_steps<-{_PHONE}",
    ),
    FitType(
        HEART_RATE,
        "com.google.heart_rate.summary",
        "summary",
        _scopes("heart_rate"),
        ("merge_heart_rate_bpm",),
        _WATCH,
    ),
    FitType(
        WEIGHT,
        "com.google.weight.summary",
        "summary",
        _scopes("body"),
        ("merge_weight",),
        "raw:com.google.weight:com.google.android.apps.fitness:user_input",
    ),
    # Types the sandbox keeps no data for: aggregating them yields empty datasets.
    *(
        FitType(name, summary, "summary", _scopes(scope))
        for name, summary, scope in (
            ("com.google.heart_minutes", "com.google.heart_minutes.summary", "activity"),
            ("com.google.activity.segment", "com.google.activity.summary", "activity"),
            ("com.google.speed", "com.google.speed.summary", "location"),
            ("com.google.height", "com.google.height.summary", "body"),
            ("com.google.body.fat.percentage", "com.google.body.fat.percentage.summary", "body"),
            ("com.google.sleep.segment", "com.google.sleep.segment", "sleep"),
            ("com.google.nutrition", "com.google.nutrition.summary", "nutrition"),
            ("com.google.hydration", "com.google.hydration", "nutrition"),
        )
    ),
)
FIT_TYPES: dict[str, FitType] = {t.name: t for t in _TYPES}


class AggregateError(Exception):
    def __init__(self, status: int, message: str, reason: str = "invalidArgument") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason


@dataclass(frozen=True)
class Spec:
    """One aggregateBy entry: the type and the dataSourceId its dataset carries."""

    type: FitType
    source_id: str


@dataclass(frozen=True)
class ByTime:
    duration_ms: int | None
    period: tuple[str, int, ZoneInfo] | None = None


ActivityKind = Literal["session", "activityType", "activitySegment"]
_ACTIVITY_KINDS: dict[str, ActivityKind] = {
    "bucketBySession": "session",
    "bucketByActivityType": "activityType",
    "bucketByActivitySegment": "activitySegment",
}


@dataclass(frozen=True)
class ByActivity:
    """bucketBySession, bucketByActivityType or bucketByActivitySegment."""

    kind: ActivityKind
    min_duration_ms: int


@dataclass(frozen=True)
class AggregateRequest:
    specs: tuple[Spec, ...]
    start_ms: int
    end_ms: int
    bucketing: ByTime | ByActivity


def _int64(value: Any, name: str) -> int:
    if isinstance(value, str) and value.lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or abs(value) >= 2**63:
        raise AggregateError(400, f"Invalid value for {name}: {value!r}")
    return value


def _spec(entry: Any) -> Spec:
    if not isinstance(entry, dict):
        raise AggregateError(400, "Invalid aggregateBy entry")
    type_name = entry.get("dataTypeName")
    source_id = entry.get("dataSourceId")
    if not isinstance(type_name, str | None) or not isinstance(source_id, str | None):
        raise AggregateError(400, "Invalid aggregateBy entry")
    if source_id:
        # Public samples send both fields; the type must then agree with the source's.
        parts = source_id.split(":")
        fit_type = FIT_TYPES.get(parts[1]) if len(parts) > 1 else None
        if fit_type is None:
            summary_match = [t for t in _TYPES if t.aggregated_source == source_id]
            fit_type = summary_match[0] if summary_match else None
        if fit_type is None or not fit_type.accepts_source(source_id):
            raise AggregateError(
                403, f"datasource not found or not readable: {source_id}", "forbidden"
            )
        if type_name and type_name != fit_type.name:
            raise AggregateError(400, f"Data type {type_name} does not match {source_id}")
        return Spec(fit_type, source_id)
    if not type_name:
        raise AggregateError(400, "Require at least one aggregateby")
    fit_type = FIT_TYPES.get(type_name)
    if fit_type is None:
        raise AggregateError(400, f"Unknown data type: {type_name}")
    return Spec(fit_type, fit_type.aggregated_source)


def _bucketing(body: Mapping[str, Any]) -> ByTime | ByActivity:
    given = [name for name in BUCKETINGS if body.get(name) is not None]
    if len(given) != 1:
        raise AggregateError(
            400, "Exactly one bucketing option must be given: " + ", ".join(BUCKETINGS)
        )
    spec = body[given[0]]
    if not isinstance(spec, dict):
        raise AggregateError(400, f"Invalid {given[0]}")
    if given[0] != "bucketByTime":
        minimum = _int64(spec.get("minDurationMillis", 0), "minDurationMillis")
        return ByActivity(_ACTIVITY_KINDS[given[0]], max(0, minimum))
    if ("durationMillis" in spec) == ("period" in spec):
        raise AggregateError(400, "bucketByTime needs exactly one of durationMillis or period")
    if "durationMillis" in spec:
        duration = _int64(spec["durationMillis"], "durationMillis")
        if duration <= 0:
            raise AggregateError(400, "durationMillis must be positive")
        return ByTime(duration)
    period = spec["period"]
    if not isinstance(period, dict) or period.get("type") not in ("day", "week", "month"):
        raise AggregateError(400, "period.type must be day, week or month")
    value = period.get("value", 1)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise AggregateError(400, "period.value must be a positive integer")
    zone_name = period.get("timeZoneId", "UTC")
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise AggregateError(400, f"Invalid timeZoneId: {zone_name!r}") from None
    return ByTime(None, (period["type"], value, zone))


def parse_request(body: Any) -> AggregateRequest:
    if not isinstance(body, dict):
        raise AggregateError(400, "Invalid JSON payload received.", "parseError")
    entries = body.get("aggregateBy")
    if not isinstance(entries, list) or not entries:
        raise AggregateError(400, "Require at least one aggregateby")
    specs = tuple(_spec(entry) for entry in entries)
    if "startTimeMillis" not in body or "endTimeMillis" not in body:
        raise AggregateError(400, "startTimeMillis and endTimeMillis are required")
    start = _int64(body["startTimeMillis"], "startTimeMillis")
    end = _int64(body["endTimeMillis"], "endTimeMillis")
    if start < 0 or end <= start:
        raise AggregateError(400, "endTimeMillis must be after startTimeMillis")
    if end - start > MAX_SPAN_MS:
        raise AggregateError(400, "aggregate duration too large")
    return AggregateRequest(specs, start, end, _bucketing(body))


# -- bucket boundaries -------------------------------------------------------------------------


def _add_period(moment: datetime, kind: str, count: int) -> datetime:
    if kind == "day":
        return moment + timedelta(days=count)
    if kind == "week":
        return moment + timedelta(weeks=count)
    months = moment.month - 1 + count
    year, month = moment.year + months // 12, months % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def time_windows(request: AggregateRequest, max_buckets: int) -> list[tuple[int, int]]:
    """Buckets start at startTimeMillis and step by the duration (or by calendar periods
    in the given zone); the last one is cut at endTimeMillis, as in Google's responses."""
    assert isinstance(request.bucketing, ByTime)
    start, end = request.start_ms, request.end_ms
    duration = request.bucketing.duration_ms
    if duration is not None:
        count = -(-(end - start) // duration)
        if count > max_buckets:
            raise AggregateError(400, f"Too many buckets requested: {count} > {max_buckets}")
        return [(s, min(s + duration, end)) for s in range(start, end, duration)]
    assert request.bucketing.period is not None
    kind, value, zone = request.bucketing.period
    origin = datetime.fromtimestamp(start / 1000, zone).replace(tzinfo=None)
    windows: list[tuple[int, int]] = []
    lo = start
    step = 1
    while lo < end:
        local = _add_period(origin, kind, value * step)
        hi = min(int(local.replace(tzinfo=zone).timestamp() * 1000), end)
        if hi > lo:
            windows.append((lo, hi))
        lo, step = max(hi, lo), step + 1
        if len(windows) > max_buckets:
            raise AggregateError(400, "Too many buckets requested")
    return windows


def activity_groups(
    request: AggregateRequest, sessions: Iterable[FitSession]
) -> list[tuple[list[tuple[int, int]], dict[str, Any]]]:
    """Buckets for session / activity bucketing, each as (intervals, extra bucket fields).
    Sessions stand in for activity segments: the sandbox records no other activity."""
    assert isinstance(request.bucketing, ByActivity)
    kind, minimum = request.bucketing.kind, request.bucketing.min_duration_ms
    inside = sorted(
        (
            s
            for s in sessions
            if request.start_ms <= s.start_ms
            and s.end_ms <= request.end_ms
            and s.end_ms - s.start_ms > minimum
        ),
        key=lambda s: (s.start_ms, s.id),
    )
    if kind == "session":
        return [([(s.start_ms, s.end_ms)], {"session": s.as_json()}) for s in inside]
    if kind == "activitySegment":
        return [([(s.start_ms, s.end_ms)], {"activity": s.activity_type}) for s in inside]
    by_type: dict[int, list[tuple[int, int]]] = {}
    for s in inside:
        by_type.setdefault(s.activity_type, []).append((s.start_ms, s.end_ms))
    return [(by_type[t], {"activity": t}) for t in sorted(by_type)]


# -- aggregation -------------------------------------------------------------------------------


def _days_touching(user: UserData, lo: int, hi: int, zone: ZoneInfo) -> Iterable[date]:
    first = datetime.fromtimestamp(lo / 1000, zone).date()
    last = datetime.fromtimestamp((hi - 1) / 1000, zone).date()
    if len(user.days) < (last - first).days:
        return [d for d in user.days if first <= d <= last]
    return (first + timedelta(days=n) for n in range((last - first).days + 1))


def dataset(
    spec: Spec, user: UserData | None, intervals: list[tuple[int, int]], zone: ZoneInfo
) -> dict[str, Any]:
    """One aggregated point over ``intervals`` (none when there is no data); partial
    overlaps count pro rata, as finer-grained points would."""
    parts: list[tuple[Chunk, int, int]] = []
    if user is not None and user.days:
        for lo, hi in intervals:
            for day in _days_touching(user, lo, hi, zone):
                stored = user.days.get(day)
                if stored is None:
                    continue
                for chunk in stored.chunks(zone).get(spec.type.name, ()):
                    s, e = max(chunk.start_ms, lo), min(chunk.end_ms, hi)
                    if s < e:
                        parts.append((chunk, s, e))
    if not parts:
        return {"dataSourceId": spec.source_id, "point": []}
    point = {
        "startTimeNanos": str(min(s for _, s, _ in parts) * 1_000_000),
        "endTimeNanos": str(max(e for _, _, e in parts) * 1_000_000),
        "dataTypeName": spec.type.summary,
        "originDataSourceId": spec.type.origin,
        "value": _values(spec.type.kind, parts),
    }
    return {"dataSourceId": spec.source_id, "point": [point]}


def _values(kind: str, parts: list[tuple[Chunk, int, int]]) -> list[dict[str, Any]]:
    def share(chunk: Chunk, s: int, e: int) -> float:
        return (e - s) / (chunk.end_ms - chunk.start_ms)

    if kind == "int":
        count = sum(round(c.amount * share(c, s, e)) for c, s, e in parts)
        return [{"intVal": count, "mapVal": []}]
    if kind == "fp":
        total = math.fsum(c.amount * share(c, s, e) for c, s, e in parts)
        return [{"fpVal": total, "mapVal": []}]
    # Summaries (average, maximum, minimum), the average weighted by time covered.
    summaries = [(c.summary, e - s) for c, s, e in parts if c.summary is not None]
    weight = sum(w for _, w in summaries)
    avg = sum(summary[0] * w for summary, w in summaries) / weight
    top = max(summary[1] for summary, _ in summaries)
    low = min(summary[2] for summary, _ in summaries)
    return [{"fpVal": v, "mapVal": []} for v in (avg, top, low)]


def aggregate(
    request: AggregateRequest,
    user: UserData | None,
    zone: ZoneInfo,
    max_buckets: int,
    visible: Callable[[FitSession], bool],
) -> dict[str, Any]:
    if isinstance(request.bucketing, ByTime):
        groups: list[tuple[list[tuple[int, int]], dict[str, Any]]] = [
            ([window], {}) for window in time_windows(request, max_buckets)
        ]
    else:
        sessions = [] if user is None else user.ending_between(request.start_ms, request.end_ms)
        groups = activity_groups(request, filter(visible, sessions))
    buckets = []
    for intervals, extra in groups:
        buckets.append(
            {
                "startTimeMillis": str(min(lo for lo, _ in intervals)),
                "endTimeMillis": str(max(hi for _, hi in intervals)),
                "dataset": [dataset(spec, user, intervals, zone) for spec in request.specs],
                **extra,
            }
        )
    return {"bucket": buckets}
