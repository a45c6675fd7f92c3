"""Rendering Strava activities (PROVIDERS.md §3.3): SummaryActivity / DetailedActivity
from the compact records, metrics derived from the id so every record stays small."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from provider_sandbox.providers._strava_activities import (
    CITIES,
    CITY_BY_TZ,
    SPORT_BY_TYPE,
    SUMMARY_KEYS,
    Activity,
    Sport,
    zone,
)

MASK64 = (1 << 64) - 1
# The reference example's upload_id (987654321234567891234) is past int64; ours are too,
# so a client that stores them as BIGINT fails here rather than in production.
UPLOAD_ID_BASE = 900_000_000_000_000_000_000
_POWER_TYPES = frozenset({"Ride", "VirtualRide", "EBikeRide"})
_CADENCE_TYPES = frozenset({"Ride", "VirtualRide", "EBikeRide", "Run"})
_GENERIC = Sport("Workout", "Workout", (0.0, 0.0), (1200, 3600), 0, False, None, 0)


def _mix(x: int) -> int:
    # splitmix64: derived metrics come from the id, so records stay a handful of slots.
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


class _Draws:
    __slots__ = ("state",)

    def __init__(self, seed: int) -> None:
        self.state = seed & MASK64

    def __call__(self) -> float:
        self.state = _mix(self.state)
        return self.state / 2.0**64


def utc_offset(tz: str, start: int) -> int:
    found = zone(tz)
    if found is None:
        city = CITY_BY_TZ.get(tz)
        return CITIES[city].std_offset if city is not None else 0
    offset = datetime.fromtimestamp(start, found).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


@functools.lru_cache(maxsize=256)
def strava_timezone(tz: str) -> str:
    """``(GMT-08:00) America/Los_Angeles``: Strava prints the standard offset even in
    summer, while ``utc_offset`` carries the one in force (-25200 in the doc example)."""
    found = zone(tz)
    if found is None:
        city = CITY_BY_TZ.get(tz)
        std = CITIES[city].std_offset if city is not None else 0
    else:
        now = datetime.now(found)
        full, dst = now.utcoffset(), now.dst()
        std = int(full.total_seconds()) - (int(dst.total_seconds()) if dst else 0) if full else 0
    sign = "-" if std < 0 else "+"
    hours, minutes = divmod(abs(std) // 60, 60)
    return f"(GMT{sign}{hours:02d}:{minutes:02d}) {tz}"


def iso_z(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def encode_polyline(points: list[tuple[float, float]]) -> str:
    out: list[str] = []
    prev_lat = prev_lng = 0
    for lat, lng in points:
        ilat, ilng = round(lat * 1e5), round(lng * 1e5)
        for delta in (ilat - prev_lat, ilng - prev_lng):
            value = ~(delta << 1) if delta < 0 else delta << 1
            while value >= 0x20:
                out.append(chr((0x20 | (value & 0x1F)) + 63))
                value >>= 5
            out.append(chr(value + 63))
        prev_lat, prev_lng = ilat, ilng
    return "".join(out)


def _track(lat: float, lng: float, distance: float, d: _Draws) -> list[tuple[float, float]]:
    radius = max(distance, 400.0) / (2 * math.pi) / 111_000
    phase = d() * 2 * math.pi
    return [
        (
            lat + radius * (math.sin(phase + k * math.pi / 4) - math.sin(phase)),
            lng + radius * (math.cos(phase + k * math.pi / 4) - math.cos(phase)) * 1.3,
        )
        for k in range(9)
    ]


def summary(a: Activity) -> dict[str, Any]:
    """SummaryActivity (resource_state 2), field order as in the reference example."""
    sport = SPORT_BY_TYPE.get(a.sport_type, _GENERIC)
    d = _Draws(a.id)
    lo, hi = sport.duration
    moving = int(lo + d() * (hi - lo))
    elapsed = moving + int(d() * moving * 0.2)
    avg_speed = round(sport.speed[0] + d() * (sport.speed[1] - sport.speed[0]), 3)
    distance = round(avg_speed * moving, 1)
    manual = d() < 0.04
    has_hr = not manual and d() < 0.8
    avg_hr = round(115 + d() * 45, 1)
    power_meter = a.type in _POWER_TYPES and (sport.trainer or d() < 0.6)
    avg_watts = round(120 + d() * 140, 1)
    city = CITIES[a.city]
    offset = utc_offset(a.tz, a.start)
    start_ll: list[float] | None = None
    end_ll: list[float] | None = None
    polyline: str | None = None
    if sport.gps and not manual:
        lat, lng = city.lat + (d() - 0.5) * 0.08, city.lng + (d() - 0.5) * 0.08
        track = _track(lat, lng, distance, d)
        start_ll = [round(track[0][0], 6), round(track[0][1], 6)]
        end_ll = [round(track[-1][0], 6), round(track[-1][1], 6)]
        polyline = encode_polyline(track)
    workout = 0 if a.type == "Run" else 10 if a.type == "Ride" else None
    kudos = int(d() * 12)
    out: dict[str, Any] = {
        "resource_state": 2,
        "athlete": {"id": a.athlete_id, "resource_state": 1},
        "name": a.name,
        "distance": distance,
        "moving_time": moving,
        "elapsed_time": elapsed,
        "total_elevation_gain": round(distance / 1000 * sport.climb * (0.4 + d()), 1),
        "type": a.type,
        "sport_type": a.sport_type,
        "workout_type": workout,
        "id": a.id,
        "external_id": None if manual else f"garmin_push_{_mix(a.id) % 10**17}",
        "upload_id": None if manual else UPLOAD_ID_BASE + a.id,
        "start_date": iso_z(a.start),
        "start_date_local": iso_z(a.start + offset),  # wall-clock time with a "Z", as Strava
        "timezone": strava_timezone(a.tz),
        "utc_offset": offset,
        "start_latlng": start_ll,
        "end_latlng": end_ll,
        "location_city": None,
        "location_state": None,
        "location_country": city.country,
        "achievement_count": int(d() * 4),
        "kudos_count": kudos,
        "comment_count": int(d() * 3),
        "athlete_count": 1 + int(d() * 1.3),
        "photo_count": 0,
        "map": {"id": f"a{a.id}", "summary_polyline": polyline, "resource_state": 2},
        "trainer": sport.trainer,
        "commute": a.type == "Ride" and d() < 0.1,
        "manual": manual,
        "private": a.private,
        "flagged": False,
        "gear_id": f"{sport.gear}{1_000_000 + a.athlete_id % 9_000_000}" if sport.gear else None,
        "from_accepted_tag": False,
        "average_speed": avg_speed,
        "max_speed": round(avg_speed * (1.3 + d() * 0.8), 1),
        "average_cadence": round(75 + d() * 15, 1),
        "average_watts": avg_watts,
        "weighted_average_watts": int(avg_watts * 1.08),
        "kilojoules": round(avg_watts * moving / 1000, 1),
        "device_watts": power_meter,
        "has_heartrate": has_hr,
        "average_heartrate": avg_hr,
        "max_heartrate": int(avg_hr + 15 + d() * 25),
        "max_watts": int(avg_watts * 2.3),
        "pr_count": int(d() * 3),
        "total_photo_count": int(d() * 1.5),
        "has_kudoed": False,
        "suffer_score": int(moving / 60 * (avg_hr - 100) / 40),
    }
    overrides = a.overrides or {}
    if overrides:
        out.update((k, v) for k, v in overrides.items() if k in SUMMARY_KEYS)
    _omit_absent_metrics(out, overrides)
    return out


def _omit_absent_metrics(out: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    # Strava leaves out metrics it has no data for rather than sending null.
    drop: list[str] = []
    if not out["has_heartrate"]:
        drop += ["average_heartrate", "max_heartrate", "suffer_score"]
    if out["type"] not in _POWER_TYPES:
        drop += ["average_watts", "weighted_average_watts", "kilojoules", "device_watts"]
        drop += ["max_watts"]
    elif not out["device_watts"]:
        drop += ["weighted_average_watts", "max_watts"]  # estimated power: average only
    if out["type"] not in _CADENCE_TYPES:
        drop.append("average_cadence")
    for key in drop:
        if key not in overrides:
            out.pop(key, None)


def detailed(a: Activity) -> dict[str, Any]:
    """DetailedActivity (resource_state 3): the summary plus the detail-only fields."""
    out = summary(a)
    out["resource_state"] = 3
    polyline = out["map"]["summary_polyline"]
    out["map"] = {
        "id": out["map"]["id"],
        "polyline": polyline,
        "resource_state": 3,
        "summary_polyline": polyline,
    }
    gear_id = out["gear_id"]
    out.update(
        {
            "description": None,
            "calories": round(out.get("kilojoules", out["moving_time"] * 0.55), 1),
            "device_name": None if out["manual"] else "Garmin Forerunner 965",
            "embed_token": f"{_mix(a.id ^ 0x5EED):016x}",
            "gear": (
                {
                    "id": gear_id,
                    "primary": True,
                    "name": "Daily",
                    "resource_state": 2,
                    "distance": 1_234_567.0,
                }
                if gear_id
                else None
            ),
            "photos": {"primary": None, "count": 0},
            "segment_efforts": [],
            "splits_metric": [],
            "laps": [],
            "hide_from_home": False,
            "visibility": "only_me" if a.private else "everyone",
            "available_zones": [],
        }
    )
    if a.overrides:
        out.update(a.overrides)
    return out
