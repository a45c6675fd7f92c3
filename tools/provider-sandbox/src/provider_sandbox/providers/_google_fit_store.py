"""Google Fit data behind the emulation (PROVIDERS.md §6): per-day activity values laid out
as points inside the user's local day, and sessions with the change log that
sessions.list's ``pageToken`` cursor walks."""

from __future__ import annotations

import bisect
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

STEPS = "com.google.step_count.delta"
CALORIES = "com.google.calories.expended"
DISTANCE = "com.google.distance.delta"
ACTIVE_MINUTES = "com.google.active_minutes"
HEART_RATE = "com.google.heart_rate.bpm"
WEIGHT = "com.google.weight"

SLEEP = 72
# Sleep (72) and its light/deep/REM/awake stages need a sleep scope to be seen.
SLEEP_TYPES = frozenset({SLEEP, 109, 110, 111, 112})
FIT_APP = "com.google.android.apps.fitness"

# Where a day's movement happens (local hour, share of the day's total), one hour each:
# buckets of an hour or less see realistic gaps, daily buckets see the exact totals.
ACTIVITY_WINDOWS = ((7, 0.15), (9, 0.10), (12, 0.20), (15, 0.15), (18, 0.30), (20, 0.10))
_BUSIEST = max(range(len(ACTIVITY_WINDOWS)), key=lambda i: ACTIVITY_WINDOWS[i][1])


@dataclass(frozen=True)
class HeartRate:
    avg: float
    min: float
    max: float


@dataclass(frozen=True)
class Chunk:
    """Data of one type over [start, end): an additive amount, or (avg, max, min)."""

    start_ms: int
    end_ms: int
    amount: float = 0.0
    summary: tuple[float, float, float] | None = None


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _split_int(total: int) -> list[int]:
    parts = [int(total * share) for _, share in ACTIVITY_WINDOWS]
    parts[_BUSIEST] += total - sum(parts)
    return parts


@dataclass
class Day:
    day: date
    steps: int = 0
    calories: float = 0.0
    distance: float = 0.0
    active_minutes: int = 0
    heart_rate: HeartRate | None = None
    weight: float | None = None
    updated_ms: int = 0
    _layout: tuple[str, dict[str, list[Chunk]]] | None = field(
        default=None, repr=False, compare=False
    )

    def as_dict(self) -> dict[str, Any]:
        hr = self.heart_rate
        return {
            "date": self.day.isoformat(),
            "steps": self.steps,
            "calories": self.calories,
            "distance": self.distance,
            "heart_rate": None if hr is None else {"avg": hr.avg, "min": hr.min, "max": hr.max},
            "active_minutes": self.active_minutes,
            "weight": self.weight,
            "updated_at": datetime.fromtimestamp(self.updated_ms / 1000, UTC).isoformat(),
        }

    def chunks(self, tz: ZoneInfo) -> dict[str, list[Chunk]]:
        """The day's points by data type, laid out in local time (cached per zone)."""
        if self._layout is None or self._layout[0] != tz.key:
            self._layout = (tz.key, self._lay_out(tz))
        return self._layout[1]

    def _lay_out(self, tz: ZoneInfo) -> dict[str, list[Chunk]]:
        def at(hour: int, minute: int = 0) -> int:
            return _ms(datetime.combine(self.day, time(hour, minute), tzinfo=tz))

        midnight_next = _ms(datetime.combine(self.day + timedelta(days=1), time(0), tzinfo=tz))
        windows = [(at(hour), at(hour + 1)) for hour, _ in ACTIVITY_WINDOWS]
        layout: dict[str, list[Chunk]] = {}

        def spread(kind: str, amounts: list[float]) -> None:
            layout[kind] = [Chunk(s, e, a) for (s, e), a in zip(windows, amounts, strict=True) if a]

        spread(STEPS, [float(v) for v in _split_int(self.steps)])
        spread(ACTIVE_MINUTES, [float(v) for v in _split_int(self.active_minutes)])
        spread(DISTANCE, [self.distance * share for _, share in ACTIVITY_WINDOWS])
        if self.calories:
            # Calories include the basal rate, so they accrue around the clock.
            hours = [at(h) for h in range(24)] + [midnight_next]
            layout[CALORIES] = [Chunk(s, e, self.calories / 24) for s, e in pairwise(hours)]
        if self.heart_rate is not None:
            hr = self.heart_rate
            layout[HEART_RATE] = [Chunk(s, e, 0.0, (hr.avg, hr.max, hr.min)) for s, e in windows]
        if self.weight is not None:
            weighed = at(7)
            w = self.weight
            layout[WEIGHT] = [Chunk(weighed, weighed + 60_000, 0.0, (w, w, w))]
        return layout


@dataclass
class FitSession:
    id: str
    name: str
    description: str
    start_ms: int
    end_ms: int
    activity_type: int
    modified_ms: int = 0
    active_time_ms: int | None = None
    application: dict[str, str] = field(default_factory=lambda: {"packageName": FIT_APP})
    deleted: bool = False
    seq: int = 0

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "startTimeMillis": str(self.start_ms),
            "endTimeMillis": str(self.end_ms),
            "modifiedTimeMillis": str(self.modified_ms),
            "application": dict(self.application),
            "activityType": self.activity_type,
        }
        if self.active_time_ms is not None:
            body["activeTimeMillis"] = str(self.active_time_ms)
        return body


@dataclass
class UserData:
    days: dict[date, Day] = field(default_factory=dict)
    sessions: dict[str, FitSession] = field(default_factory=dict)
    # Live sessions by end time: sessions.list selects on the end (§6.3).
    by_end: list[tuple[int, str]] = field(default_factory=list)
    # (seq, modified ms, session id), appended on every change; the sync cursor is a seq.
    changes: list[tuple[int, int, str]] = field(default_factory=list)
    seq: int = 0

    def put_day(self, day: Day) -> None:
        self.days[day.day] = day

    def put_session(self, session: FitSession, now_ms: int) -> None:
        old = self.sessions.get(session.id)
        if old is not None and not old.deleted:
            self.by_end.remove((old.end_ms, old.id))
        self._touch(session, now_ms)
        self.sessions[session.id] = session
        bisect.insort(self.by_end, (session.end_ms, session.id))

    def delete_session(self, session_id: str, now_ms: int) -> FitSession | None:
        session = self.sessions.get(session_id)
        if session is None or session.deleted:
            return None
        self.by_end.remove((session.end_ms, session.id))
        session.deleted = True
        self._touch(session, now_ms)
        return session

    def _touch(self, session: FitSession, now_ms: int) -> None:
        self.seq += 1
        session.seq = self.seq
        # The clock never goes back, but two changes can share a millisecond.
        last_ms = self.changes[-1][1] if self.changes else 0
        session.modified_ms = max(now_ms, last_ms)
        self.changes.append((self.seq, session.modified_ms, session.id))

    def ending_between(self, start_ms: int, end_ms: int) -> list[FitSession]:
        lo = bisect.bisect_left(self.by_end, (start_ms, ""))
        hi = bisect.bisect_right(self.by_end, (end_ms, "\U0010ffff"))
        return [self.sessions[sid] for _, sid in self.by_end[lo:hi]]

    def changed_after(self, seq: int) -> list[FitSession]:
        index = bisect.bisect_right(self.changes, seq, key=lambda change: change[0])
        return self._latest(self.changes[index:])

    def modified_since(self, since_ms: int) -> list[FitSession]:
        index = bisect.bisect_left(self.changes, since_ms, key=lambda change: change[1])
        return self._latest(self.changes[index:])

    def _latest(self, changes: list[tuple[int, int, str]]) -> list[FitSession]:
        """Each changed session once, at its latest change, in change order."""
        found: list[FitSession] = []
        for seq, _, sid in changes:
            session = self.sessions[sid]
            if session.seq == seq:
                found.append(session)
        return found


# -- control payloads --------------------------------------------------------------------------

_DAY_FIELDS = frozenset(
    {"date", "steps", "calories", "distance", "heart_rate", "active_minutes", "weight"}
)
_SESSION_FIELDS = frozenset(
    {
        "id",
        "name",
        "description",
        "startTimeMillis",
        "endTimeMillis",
        "activityType",
        "activeTimeMillis",
        "application",
    }
)


def _count(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer")
    return value


def _amount(value: Any, name: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < 1e12:
        raise ValueError(f"{name} must be a non-negative number")
    return float(value)


def _int64(value: Any, name: str) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise ValueError(f"{name} must be an int64 (number or numeric string)")
    return value


def _heart_rate(value: Any) -> HeartRate | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"avg", "min", "max"}:
        raise ValueError("heart_rate must be {avg, min, max} or null")
    hr = HeartRate(*(_amount(value[k], f"heart_rate.{k}") for k in ("avg", "min", "max")))
    if not hr.min <= hr.avg <= hr.max:
        raise ValueError("heart_rate needs min <= avg <= max")
    return hr


def parse_day(item: Any, existing: Mapping[date, Day], now_ms: int) -> Day:
    """A day from the control API; fields left out keep a revised day's old values."""
    if not isinstance(item, dict):
        raise ValueError("each day must be an object")
    unknown = set(item) - _DAY_FIELDS
    if unknown:
        raise ValueError(f"unknown day fields: {sorted(unknown)}")
    try:
        day = date.fromisoformat(item["date"])
    except (KeyError, TypeError, ValueError):
        raise ValueError("each day needs a 'date' as YYYY-MM-DD") from None
    old = existing.get(day) or Day(day)
    weight = item.get("weight", old.weight)
    return Day(
        day=day,
        steps=_count(item.get("steps", old.steps), "steps"),
        calories=_amount(item.get("calories", old.calories), "calories"),
        distance=_amount(item.get("distance", old.distance), "distance"),
        active_minutes=_count(item.get("active_minutes", old.active_minutes), "active_minutes"),
        heart_rate=_heart_rate(item["heart_rate"]) if "heart_rate" in item else old.heart_rate,
        weight=None if weight is None else _amount(weight, "weight"),
        updated_ms=now_ms,
    )


def parse_session(item: Any, existing: Mapping[str, FitSession], new_id: str) -> FitSession:
    """A session from the control API in Google's own shape; an existing id is revised."""
    if not isinstance(item, dict):
        raise ValueError("each session must be an object")
    unknown = set(item) - _SESSION_FIELDS
    if unknown:
        raise ValueError(f"unknown session fields: {sorted(unknown)}")
    session_id = item.get("id", new_id)
    if not isinstance(session_id, str) or not session_id or len(session_id) > 200:
        raise ValueError("id must be a non-empty string")
    old = existing.get(session_id)
    if old is None and not {"startTimeMillis", "endTimeMillis", "activityType"} <= set(item):
        raise ValueError("a new session needs startTimeMillis, endTimeMillis and activityType")
    base = old or FitSession(session_id, "", "", 0, 0, 0)
    start = _int64(item.get("startTimeMillis", base.start_ms), "startTimeMillis")
    end = _int64(item.get("endTimeMillis", base.end_ms), "endTimeMillis")
    if end <= start:
        raise ValueError("endTimeMillis must be after startTimeMillis")
    activity = item.get("activityType", base.activity_type)
    if not isinstance(activity, int) or isinstance(activity, bool) or activity < 0:
        raise ValueError("activityType must be a non-negative integer")
    name = item.get("name", base.name)
    description = item.get("description", base.description)
    application = item.get("application", base.application)
    if not isinstance(name, str) or not isinstance(description, str):
        raise ValueError("name and description must be strings")
    if not isinstance(application, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in application.items()
    ):
        raise ValueError("application must be an object of strings")
    active = base.active_time_ms
    if "activeTimeMillis" in item:
        raw = item["activeTimeMillis"]
        active = None if raw is None else _int64(raw, "activeTimeMillis")
    return FitSession(
        id=session_id,
        name=name,
        description=description,
        start_ms=start,
        end_ms=end,
        activity_type=activity,
        active_time_ms=active,
        application=dict(application),
    )


# -- generated data ----------------------------------------------------------------------------


def generate_day(rng: random.Random, day: date, now_ms: int) -> Day:
    """One plausible day: steps, distance from a stride, calories from basal rate plus
    movement, active minutes from steps, a resting-to-peak heart-rate range."""
    steps = rng.randint(2500, 14000)
    stride = rng.uniform(0.68, 0.82)
    avg = float(rng.randint(62, 82))
    return Day(
        day=day,
        steps=steps,
        distance=round(steps * stride, 1),
        calories=round(1550 + rng.uniform(-120, 250) + steps * 0.045, 1),
        active_minutes=max(0, steps // 130 + rng.randint(-5, 10)),
        heart_rate=HeartRate(avg, avg - rng.randint(10, 18), avg + rng.randint(45, 90)),
        updated_ms=now_ms,
    )


_KINDS = (
    (8, "Morning run", 25, 60),
    (1, "Bike ride", 40, 90),
    (7, "Walk", 20, 60),
    (SLEEP, "Sleep", 360, 540),
)


def generate_session(rng: random.Random, day: date, tz: ZoneInfo, now_ms: int) -> FitSession:
    activity, name, shortest, longest = rng.choice(_KINDS)
    minutes = rng.randint(shortest, longest)
    if activity == SLEEP:
        begins = datetime.combine(day - timedelta(days=1), time(22, rng.randrange(0, 60, 5)))
    else:
        begins = datetime.combine(day, time(rng.choice((6, 7, 12, 17, 18)), rng.randrange(60)))
    start = _ms(begins.replace(tzinfo=tz))
    end = start + minutes * 60_000
    return FitSession(
        id=f"{start}-{rng.getrandbits(32):08x}",
        name=name,
        description="",
        start_ms=start,
        end_ms=end,
        activity_type=activity,
        modified_ms=now_ms,
        active_time_ms=None if activity == SLEEP else (minutes - rng.randint(0, 5)) * 60_000,
    )
