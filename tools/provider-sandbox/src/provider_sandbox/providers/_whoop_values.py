"""Realistic WHOOP v2 values (PROVIDERS.md §7.3): night and workout timings, scores, wire
formats. Each night and each record draws from its own seeded stream, so what a record
looks like does not depend on the order records were generated in."""

from __future__ import annotations

import random
import re
from collections.abc import Collection
from datetime import UTC, date, datetime
from typing import Any

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
TZ_OFFSETS_MIN = (-300, -480, 60, 0, -240, 120, 330, 600, -180)
TZ_DESIGNATOR = re.compile(r"^(Z|[+-]\d{2}:\d{2})$")

# (sport_name, sport_id, metres per second when the sport records distance)
SPORTS: tuple[tuple[str, int, float | None], ...] = (
    ("running", 0, 3.1),
    ("cycling", 1, 7.0),
    ("weightlifting", 45, None),
    ("functional-fitness", 48, None),
    ("walking", 63, 1.4),
    ("yoga", 44, None),
    ("swimming", 33, 0.8),
    ("hiking", 52, 1.2),
)
DISTANCE_SPORTS = {name: speed for name, _, speed in SPORTS if speed is not None}


def stream(seed: int, *parts: object) -> random.Random:
    return random.Random(":".join(["whoop", str(seed), *map(str, parts)]))


def tz_offset_minutes(user_id: int) -> int:
    return TZ_OFFSETS_MIN[user_id % len(TZ_OFFSETS_MIN)]


def tz_designator(minutes: int) -> str:
    if minutes == 0:
        return "Z"
    sign = "+" if minutes > 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{mins:02d}"


def offset_of(designator: str) -> int:
    if designator == "Z":
        return 0
    sign = 1 if designator[0] == "+" else -1
    return sign * (int(designator[1:3]) * 60 + int(designator[4:6]))


def iso_ms(ms: int) -> str:
    """WHOOP's timestamps: UTC, millisecond precision, ``Z``."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_instant(value: str) -> int | None:
    """An RFC 3339 date-time with an offset, as epoch milliseconds; None if it is not one."""
    if "T" not in value and "t" not in value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return int(moment.timestamp() * 1000)


def local_day(ms: int, offset_min: int) -> int:
    """The local calendar day (a date ordinal) of an instant."""
    return EPOCH_ORDINAL + (ms + offset_min * 60_000) // DAY_MS


def night_of_sleep(start_ms: int, offset_min: int) -> int:
    # A sleep starting before noon belongs to the previous evening's night.
    return local_day(start_ms - 12 * HOUR_MS, offset_min)


def night_of_workout(start_ms: int, offset_min: int) -> int:
    # A day's workouts belong to the cycle that began with the night before.
    return local_day(start_ms, offset_min) - 1


def local_midnight_ms(day: int, offset_min: int) -> int:
    return (day - EPOCH_ORDINAL) * DAY_MS - offset_min * 60_000


def sleep_window(seed: int, user_id: int, night: int, offset_min: int) -> tuple[int, int]:
    rng = stream(seed, user_id, night, "sleep")
    start = local_midnight_ms(night, offset_min) + 22 * HOUR_MS
    start += int(rng.uniform(-75, 95) * 60_000) + rng.randrange(1000)
    return start, start + int(rng.uniform(6.0, 9.2) * HOUR_MS)


def workout_window(seed: int, user_id: int, night: int, offset_min: int) -> tuple[int, int]:
    rng = stream(seed, user_id, night, "workout")
    start = local_midnight_ms(night + 1, offset_min) + 7 * HOUR_MS
    start += int(rng.uniform(0, 11) * HOUR_MS) + rng.randrange(1000)
    return start, start + int(rng.uniform(25, 100) * 60_000)


def last_complete_night(seed: int, user_id: int, kind: str, now_ms: int) -> int:
    """The newest night whose sleep (or, for workouts, the next day's workout) is over."""
    offset = tz_offset_minutes(user_id)
    window = workout_window if kind == "workout" else sleep_window
    today = local_day(now_ms, offset)
    for night in (today, today - 1, today - 2):
        if window(seed, user_id, night, offset)[1] <= now_ms:
            return night
    return today - 3


def nights_to_fill(taken: Collection[int], last: int, n: int) -> list[int]:
    """First the nights after the newest filled one, oldest first (so a series stays
    contiguous), then going back in time past every filled night."""
    chosen: list[int] = []
    night = last
    if taken:
        newest = max(taken)
        chosen.extend(range(newest + 1, last + 1)[:n])
        night = min(newest, last)
    while len(chosen) < n:
        if night not in taken:
            chosen.append(night)
        night -= 1
    return chosen


def takes_place(seed: int, user_id: int, night: int, rate: float) -> bool:
    return stream(seed, user_id, night, "happens").random() < rate


def cycle_score(rng: random.Random, open_cycle: bool) -> dict[str, Any]:
    strain = rng.uniform(4.0, 18.5) * (rng.uniform(0.2, 0.6) if open_cycle else 1.0)
    average = rng.randint(56, 78)
    return {
        "strain": round(strain, 7),
        "kilojoule": round(rng.uniform(6200.0, 13500.0) * (0.4 if open_cycle else 1.0), 3),
        "average_heart_rate": average,
        "max_heart_rate": average + rng.randint(45, 115),
    }


def sleep_score(rng: random.Random, start_ms: int, end_ms: int, nap: bool) -> dict[str, Any]:
    in_bed = max(end_ms - start_ms, 60_000)
    awake = int(in_bed * rng.uniform(0.04, 0.12))
    no_data = 0 if rng.random() < 0.9 else int(in_bed * rng.uniform(0.0, 0.03))
    asleep = in_bed - awake - no_data
    light = int(asleep * rng.uniform(0.45, 0.55))
    slow_wave = int(asleep * rng.uniform(0.16, 0.24))
    rem = asleep - light - slow_wave
    baseline = int(rng.uniform(7.1, 8.4) * HOUR_MS)
    from_debt = rng.randint(0, 2_400_000)
    from_strain = rng.randint(0, 1_500_000)
    from_nap = 0 if rng.random() < 0.8 else -rng.randint(300_000, 2_400_000)
    needed = baseline + from_debt + from_strain + from_nap
    score: dict[str, Any] = {
        "stage_summary": {
            "total_in_bed_time_milli": in_bed,
            "total_awake_time_milli": awake,
            "total_no_data_time_milli": no_data,
            "total_light_sleep_time_milli": light,
            "total_slow_wave_sleep_time_milli": slow_wave,
            "total_rem_sleep_time_milli": rem,
            "sleep_cycle_count": max(1, round(asleep / 5_400_000)),
            "disturbance_count": rng.randint(1, 4) if nap else rng.randint(4, 22),
        },
        "sleep_needed": {
            "baseline_milli": baseline,
            "need_from_sleep_debt_milli": from_debt,
            "need_from_recent_strain_milli": from_strain,
            "need_from_recent_nap_milli": from_nap,
        },
        "respiratory_rate": round(rng.uniform(12.8, 18.2), 8),
        "sleep_performance_percentage": float(min(100, round(100 * asleep / needed))),
        "sleep_consistency_percentage": float(rng.randint(48, 97)),
        "sleep_efficiency_percentage": round(100 * asleep / in_bed, 8),
    }
    return score


def recovery_score(rng: random.Random) -> dict[str, Any]:
    return {
        "user_calibrating": False,
        "recovery_score": float(rng.randint(6, 99)),
        "resting_heart_rate": float(rng.randint(44, 68)),
        "hrv_rmssd_milli": round(rng.uniform(22.0, 125.0), 6),
        "spo2_percentage": round(rng.uniform(94.0, 99.2), 4),
        "skin_temp_celsius": round(rng.uniform(32.6, 35.4), 2),
    }


def pick_sport(rng: random.Random) -> tuple[str, int]:
    name, sport_id, _ = SPORTS[rng.randrange(len(SPORTS))]
    return name, sport_id


def workout_score(
    rng: random.Random, sport_name: str, start_ms: int, end_ms: int
) -> dict[str, Any]:
    duration = max(end_ms - start_ms, 60_000)
    average = rng.randint(104, 158)
    weights = [rng.uniform(0.2, 1.0) for _ in range(6)]
    if rng.random() < 0.5:
        weights[5] = 0.0
    total = sum(weights)
    zones = [int(duration * w / total) for w in weights]
    zones[0] += duration - sum(zones)
    score: dict[str, Any] = {
        "strain": round(rng.uniform(4.0, 17.5), 4),
        "average_heart_rate": average,
        "max_heart_rate": average + rng.randint(14, 42),
        "kilojoule": round(duration / 60_000 * rng.uniform(22.0, 58.0), 8),
        "percent_recorded": 100.0 if rng.random() < 0.85 else round(rng.uniform(88.0, 99.9), 2),
    }
    speed = DISTANCE_SPORTS.get(sport_name)
    if speed is not None:
        score["distance_meter"] = round(duration / 1000 * speed * rng.uniform(0.8, 1.2), 8)
        score["altitude_gain_meter"] = round(rng.uniform(0.0, 180.0), 11)
        score["altitude_change_meter"] = round(rng.uniform(-25.0, 25.0), 12)
    names = ("zero", "one", "two", "three", "four", "five")
    score["zone_durations"] = {f"zone_{n}_milli": z for n, z in zip(names, zones, strict=True)}
    return score
