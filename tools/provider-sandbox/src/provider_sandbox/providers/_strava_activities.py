"""Strava activities as data (PROVIDERS.md §3.3): a compact record per activity, the
catalogue of sports and places generation draws from, and partial-object edits."""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@dataclass(frozen=True, slots=True)
class City:
    name: str
    country: str
    lat: float
    lng: float
    tz: str
    std_offset: int  # seconds; used only when the zone database is missing


CITIES = (
    City("San Francisco", "United States", 37.7749, -122.4194, "America/Los_Angeles", -28800),
    City("Boulder", "United States", 40.0150, -105.2705, "America/Denver", -25200),
    City("New York", "United States", 40.7128, -74.0060, "America/New_York", -18000),
    City("London", "United Kingdom", 51.5074, -0.1278, "Europe/London", 0),
    City("Berlin", "Germany", 52.5200, 13.4050, "Europe/Berlin", 3600),
    City("Sydney", "Australia", -33.8688, 151.2093, "Australia/Sydney", 36000),
    City("Kathmandu", "Nepal", 27.7172, 85.3240, "Asia/Kathmandu", 20700),
)
CITY_BY_TZ = {c.tz: i for i, c in enumerate(CITIES)}


@dataclass(frozen=True, slots=True)
class Sport:
    sport_type: str
    type: str
    speed: tuple[float, float]  # m/s
    duration: tuple[int, int]  # moving seconds
    climb: float  # metres of ascent per km
    gps: bool
    gear: str | None  # Strava gear ids: "b..." for bikes, "g..." for shoes
    weight: int
    trainer: bool = False


SPORTS = (
    Sport("Run", "Run", (2.5, 4.2), (1200, 5400), 8, True, "g", 30),
    Sport("TrailRun", "Run", (1.8, 3.2), (1800, 9000), 35, True, "g", 5),
    Sport("Ride", "Ride", (6.0, 9.5), (2400, 14400), 9, True, "b", 22),
    Sport("MountainBikeRide", "Ride", (3.5, 6.5), (2400, 10800), 25, True, "b", 6),
    Sport("GravelRide", "Ride", (5.0, 8.0), (3600, 14400), 12, True, "b", 4),
    Sport("VirtualRide", "VirtualRide", (7.0, 10.0), (1800, 5400), 6, False, "b", 8, True),
    Sport("Swim", "Swim", (0.6, 1.1), (1200, 3600), 0, False, None, 6),
    Sport("Walk", "Walk", (1.1, 1.6), (1200, 4800), 5, True, "g", 8),
    Sport("Hike", "Hike", (0.8, 1.4), (3600, 18000), 60, True, "g", 4),
    Sport("WeightTraining", "WeightTraining", (0.0, 0.0), (1800, 4800), 0, False, None, 4),
    Sport("Yoga", "Yoga", (0.0, 0.0), (1800, 4200), 0, False, None, 2),
    Sport("AlpineSki", "AlpineSki", (4.0, 11.0), (7200, 18000), 0, True, None, 1),
)
SPORT_BY_TYPE = {s.sport_type: s for s in SPORTS}
_SPORT_PICK = tuple(i for i, s in enumerate(SPORTS) for _ in range(s.weight))


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


SUMMARY_KEYS = _words(
    "resource_state athlete name distance moving_time elapsed_time total_elevation_gain type "
    "sport_type workout_type id external_id upload_id start_date start_date_local timezone "
    "utc_offset start_latlng end_latlng location_city location_state location_country "
    "achievement_count kudos_count comment_count athlete_count photo_count map trainer commute "
    "manual private flagged gear_id from_accepted_tag average_speed max_speed average_cadence "
    "average_watts weighted_average_watts kilojoules device_watts has_heartrate "
    "average_heartrate max_heartrate max_watts pr_count total_photo_count has_kudoed "
    "suffer_score"
)
DETAIL_KEYS = _words(
    "description calories device_name embed_token gear photos segment_efforts splits_metric "
    "laps hide_from_home visibility available_zones"
)
# Fields a seed or an edit may not set: Strava derives them, or they identify the record.
DERIVED = frozenset(
    {"resource_state", "athlete", "start_date_local", "utc_offset", "map", "visibility"}
)


class Activity:
    __slots__ = (
        "athlete_id",
        "city",
        "id",
        "name",
        "overrides",
        "private",
        "sport_type",
        "start",
        "type",
        "tz",
    )

    def __init__(
        self,
        activity_id: int,
        athlete_id: int,
        start: int,
        sport_type: str,
        type_: str,
        name: str,
        private: bool,
        city: int,
    ) -> None:
        self.id = activity_id
        self.athlete_id = athlete_id
        self.start = start
        self.sport_type = sport_type
        self.type = type_
        self.name = name
        self.private = private
        self.city = city
        self.tz = CITIES[city].tz
        self.overrides: dict[str, Any] | None = None

    def key(self) -> tuple[int, int]:
        return (self.start, self.id)


@functools.lru_cache(maxsize=256)
def zone(name: str) -> tzinfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def display_name(sport_type: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", sport_type)


def part_of_day(local_hour: int) -> str:
    if 5 <= local_hour < 11:
        return "Morning"
    if 11 <= local_hour < 13:
        return "Lunch"
    if 13 <= local_hour < 17:
        return "Afternoon"
    if 17 <= local_hour < 21:
        return "Evening"
    return "Night"


def default_name(sport_type: str, start: int, city: int) -> str:
    hour = ((start + CITIES[city].std_offset) // 3600) % 24
    return f"{part_of_day(hour)} {display_name(sport_type)}"


def generate(
    rng: random.Random, athlete_id: int, count: int, now: int, new_id: Callable[[], int]
) -> list[Activity]:
    """``count`` activities going back from ``now``, one every half day to 2.5 days, mostly
    around the athlete's home city; about one in ten is "Only Me"."""
    home = rng.randrange(len(CITIES))
    starts: list[int] = []
    t = now - rng.randrange(3600, 6 * 3600)
    for _ in range(count):
        starts.append(t)
        t -= rng.randrange(12 * 3600, 60 * 3600)
    starts.reverse()  # Strava ids grow with upload order: the oldest gets the smallest
    out: list[Activity] = []
    cities, picks, rand = len(CITIES), _SPORT_PICK, rng.random
    for start in starts:
        city = home if rand() < 0.85 else rng.randrange(cities)
        sport = SPORTS[picks[int(rand() * len(picks))]]
        name = default_name(sport.sport_type, start, city)
        out.append(
            Activity(
                new_id(), athlete_id, start, sport.sport_type, sport.type, name, rand() < 0.1, city
            )
        )
    return out


def parse_start_date(value: object) -> int:
    if not isinstance(value, str):
        raise ValueError("start_date must be an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"start_date is not ISO 8601: {value!r}") from None
    if parsed.tzinfo is None:
        raise ValueError("start_date must carry a zone (Strava sends UTC with 'Z')")
    return int(parsed.astimezone(UTC).timestamp())


def parse_timezone(value: object) -> str:
    """Accept ``America/Los_Angeles`` or Strava's ``(GMT-08:00) America/Los_Angeles``."""
    if not isinstance(value, str):
        raise ValueError("timezone must be a string")
    name = value.rsplit(") ", 1)[-1].strip()
    if zone(name) is None and name not in CITY_BY_TZ:
        raise ValueError(f"unknown time zone {name!r}")
    return name


def apply_fields(a: Activity, data: Mapping[str, Any]) -> dict[str, Any]:
    """Apply a partial Strava object to ``a``; answers what changed among the fields
    that fire update events (name, type/sport_type, private), by Strava's event keys."""
    unknown = set(data) - SUMMARY_KEYS - DETAIL_KEYS - {"id"}
    if unknown:
        raise ValueError(f"unknown activity fields: {sorted(unknown)}")
    fixed = set(data) & (DERIVED | {"id"})
    if fixed:
        raise ValueError(f"fields derived by Strava cannot be set: {sorted(fixed)}")
    before = (a.name, a.type, a.sport_type, a.private)
    staged = dict(data)
    if "name" in staged and not isinstance(staged["name"], str):
        raise ValueError("name must be a string")
    if "private" in staged and not isinstance(staged["private"], bool):
        raise ValueError("private must be a boolean")
    for key in ("sport_type", "type"):
        if key in staged and (not isinstance(staged[key], str) or not staged[key]):
            raise ValueError(f"{key} must be a non-empty string")
    start = parse_start_date(staged.pop("start_date")) if "start_date" in staged else a.start
    tz = parse_timezone(staged.pop("timezone")) if "timezone" in staged else a.tz
    a.start, a.tz = start, tz
    if tz in CITY_BY_TZ:
        a.city = CITY_BY_TZ[tz]
    if "name" in staged:
        a.name = staged.pop("name")
    if "private" in staged:
        a.private = staged.pop("private")
    if "sport_type" in staged:
        a.sport_type = staged.pop("sport_type")
        known = SPORT_BY_TYPE.get(a.sport_type)
        a.type = known.type if known else a.sport_type
    if "type" in staged:
        # The deprecated field still works on Strava: setting it alone sets sport_type.
        a.type = staged.pop("type")
        if "sport_type" not in data:
            a.sport_type = a.type
    if staged:
        a.overrides = {**(a.overrides or {}), **staged}
    updates: dict[str, Any] = {}
    if a.name != before[0]:
        updates["title"] = a.name
    if (a.type, a.sport_type) != (before[1], before[2]):
        updates["type"] = a.sport_type
    if a.private != before[3]:
        updates["private"] = "true" if a.private else "false"  # Strava sends strings
    return updates
