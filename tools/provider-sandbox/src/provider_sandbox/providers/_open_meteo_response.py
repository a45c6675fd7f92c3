"""Builds Open-Meteo response objects: grid snapping, time zones, the local time axis,
unit conversion and the ``hourly``/``daily`` sections (PROVIDERS.md §8.3,
``payloads/open_meteo_archive.json``)."""

from __future__ import annotations

import zlib
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from provider_sandbox.providers._nominatim_places import nearest
from provider_sandbox.providers._open_meteo_query import MODEL_GRID, Location, OpenMeteoError, Query
from provider_sandbox.providers._open_meteo_weather import (
    DAILY,
    HOURLY,
    LEGACY,
    Cell,
    Hours,
    base_hours,
    hourly_value,
    sun_times,
    unit_hash,
)

_EPOCH = date(1970, 1, 1)
_HOURS = [f"T{h:02d}:00" for h in range(24)]
# timezone=auto: beyond this distance from any known city, fall back to a nautical zone.
_AUTO_TZ_KM = 2000.0


@dataclass(frozen=True)
class Zone:
    identifier: str
    offset: int
    abbreviation: str


def resolve_zone(name: str, latitude: float, longitude: float, now: datetime) -> Zone:
    """Open-Meteo shifts the whole series by the zone's offset *now*, one number with no
    DST changes inside the range, and abbreviates it as GMT+H (open-meteo#1255)."""
    if name in ("GMT", "UTC"):
        return Zone(name, 0, "GMT")
    if name == "auto":
        place, km = nearest(latitude, longitude)
        if km <= _AUTO_TZ_KM:
            name = place.tz
        else:
            hours = round(longitude / 15.0)
            if hours == 0:
                return Zone("GMT", 0, "GMT")
            # POSIX-style Etc zones have inverted signs: Etc/GMT+8 is UTC-8.
            name = f"Etc/GMT{-hours:+d}"
    try:
        zone: tzinfo = zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise OpenMeteoError("Invalid timezone") from None
    delta = now.astimezone(zone).utcoffset() or timedelta(0)
    offset = int(delta.total_seconds())
    return Zone(name, offset, _abbreviation(offset))


def _abbreviation(offset: int) -> str:
    if offset == 0:
        return "GMT"
    hours, minutes = divmod(abs(offset) // 60, 60)
    sign = "+" if offset > 0 else "-"
    return f"GMT{sign}{hours}" + (f":{minutes:02d}" if minutes else "")


def snap(value: float, grid: float, limit: float) -> tuple[int, float]:
    index = round(value / grid)
    snapped = max(-limit, min(limit, index * grid))
    return index, round(snapped, 6)


# -- units --------------------------------------------------------------------------------------

Convert = Callable[[float], float]


def _identity(v: float) -> float:
    return v


def unit_of(kind: str, query: Query) -> tuple[str, Convert, int]:
    """Unit label, conversion from the model's base unit, and extra decimals."""
    if kind == "temperature":
        if query.temperature_unit == "fahrenheit":
            return "°F", lambda v: v * 9 / 5 + 32, 0
        return "°C", _identity, 0
    if kind == "wind":
        return {
            "kmh": ("km/h", _identity, 0),
            "ms": ("m/s", lambda v: v / 3.6, 0),
            "mph": ("mp/h", lambda v: v / 1.609344, 0),
            "kn": ("kn", lambda v: v / 1.852, 0),
        }[query.wind_speed_unit]
    inch = query.precipitation_unit == "inch"
    if kind == "precipitation":
        return ("inch", lambda v: v / 25.4, 2) if inch else ("mm", _identity, 0)
    if kind == "snow":
        return ("inch", lambda v: v / 2.54, 1) if inch else ("cm", _identity, 0)
    if kind == "depth":
        return ("ft", lambda v: v * 3.28084, 0) if inch else ("m", _identity, 0)
    return kind, _identity, 0


def _rounder(decimals: int) -> Callable[[float], float | int]:
    if decimals <= 0:
        return lambda v: round(v)
    return lambda v: round(v, decimals)


# -- one location -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    seed: int
    default_grid: float
    now: datetime
    available_until: int | None  # UTC epoch: archive hours from here on are not published yet


def build_location(
    loc: Location, query: Query, zone: Zone, ctx: Context, index: int
) -> dict[str, Any]:
    grid = MODEL_GRID[query.models[0]] or ctx.default_grid
    lat_index, latitude = snap(loc.latitude, grid, 90.0)
    lon_index, longitude = snap(loc.longitude, grid, 180.0)
    cell_seed = int(unit_hash(ctx.seed, lat_index, lon_index, int(grid * 1000)) * 2**62)
    elevation = loc.elevation
    if elevation is None:
        elevation = round(5.0 + 900.0 * unit_hash(cell_seed, 1) ** 2.5, 1)
    first_local = (loc.start - _EPOCH).days * 86400
    first_instant = first_local - zone.offset
    hours = max(0, loc.days) * 24
    instants = [first_instant + 3600 * i for i in range(hours)]
    series = {
        model: base_hours(
            Cell(latitude, longitude, elevation, cell_seed ^ _model_salt(model)), instants
        )
        for model in query.models
    }
    body: dict[str, Any] = {
        "latitude": latitude,
        "longitude": longitude,
        "generationtime_ms": 0.0,
        "utc_offset_seconds": zone.offset,
        "timezone": zone.identifier,
        "timezone_abbreviation": zone.abbreviation,
        "elevation": elevation,
    }
    if index:
        body["location_id"] = index
    values = 0
    unixtime = query.timeformat == "unixtime"
    if query.hourly:
        times: list[Any] = instants if unixtime else _local_hours(loc.start, loc.days)
        units, data = _hourly(query, series, ctx.available_until)
        body["hourly_units"] = {"time": query.timeformat, **units}
        body["hourly"] = {"time": times, **data}
        values += len(times) * (len(data) + 1)
    if query.daily:
        units, data = _daily(query, series, loc, zone, latitude, longitude, ctx.available_until)
        day_instants = [first_instant + 86400 * d for d in range(max(0, loc.days))]
        days: list[Any] = (
            day_instants
            if unixtime
            else [(loc.start + timedelta(days=d)).isoformat() for d in range(max(0, loc.days))]
        )
        body["daily_units"] = {"time": query.timeformat, **units}
        body["daily"] = {"time": days, **data}
        values += len(days) * (len(data) + 1)
    # Deterministic, so identical requests give byte-identical bodies.
    body["generationtime_ms"] = 0.021 + values * 0.00019 + unit_hash(cell_seed, 2) * 0.05
    return body


def _model_salt(model: str) -> int:
    return zlib.crc32(model.encode()) << 20


def _local_hours(start: date, days: int) -> list[str]:
    out: list[str] = []
    for d in range(max(0, days)):
        day = (start + timedelta(days=d)).isoformat()
        out.extend(day + suffix for suffix in _HOURS)
    return out


def _key(name: str, model: str, query: Query) -> str:
    return name if len(query.models) == 1 else f"{name}_{model}"


def _hourly(
    query: Query, series: dict[str, Hours], available_until: int | None
) -> tuple[dict[str, str], dict[str, list[Any]]]:
    units: dict[str, str] = {}
    data: dict[str, list[Any]] = {}
    for model, hours in series.items():
        cut = _cut(hours.instants, available_until)
        for name in query.hourly:
            kind, decimals, _ = HOURLY[LEGACY.get(name, name)]
            label, convert, extra = unit_of(kind, query)
            rnd = _rounder(decimals + extra)
            key = _key(name, model, query)
            units[key] = label
            data[key] = [
                rnd(convert(hourly_value(name, hours, i))) if i < cut else None
                for i in range(len(hours.instants))
            ]
    return units, data


def _cut(instants: list[int], available_until: int | None) -> int:
    if available_until is None:
        return len(instants)
    return sum(1 for t in instants if t < available_until)


def _daily(
    query: Query,
    series: dict[str, Hours],
    loc: Location,
    zone: Zone,
    latitude: float,
    longitude: float,
    available_until: int | None,
) -> tuple[dict[str, str], dict[str, list[Any]]]:
    units: dict[str, str] = {}
    data: dict[str, list[Any]] = {}
    days = max(0, loc.days)
    for model, hours in series.items():
        cut = _cut(hours.instants, available_until)
        sources: dict[str, list[float]] = {}
        for name in query.daily:
            key = _key(name, model, query)
            canonical = LEGACY.get(name, name)
            if canonical in ("sunrise", "sunset", "daylight_duration"):
                units[key], data[key] = _sun(canonical, query, loc, zone, latitude, longitude)
                continue
            kind, decimals, source, aggregate = DAILY[canonical]
            if source not in sources:
                sources[source] = [
                    hourly_value(source, hours, i) for i in range(len(hours.instants))
                ]
            label, convert, extra = unit_of(kind, query)
            rnd = _rounder(decimals + extra)
            column: list[Any] = []
            for d in range(days):
                if (d + 1) * 24 > cut:
                    column.append(None)
                else:
                    column.append(rnd(convert(aggregate(sources[source][d * 24 : d * 24 + 24]))))
            units[key], data[key] = label, column
    return units, data


def _sun(
    name: str,
    query: Query,
    loc: Location,
    zone: Zone,
    latitude: float,
    longitude: float,
) -> tuple[str, list[Any]]:
    column: list[Any] = []
    for d in range(max(0, loc.days)):
        day = loc.start + timedelta(days=d)
        rise, set_ = sun_times(latitude, longitude, (day - _EPOCH).days * 86400, zone.offset)
        if name == "daylight_duration":
            column.append(round(float(set_ - rise), 2))
            continue
        instant = rise if name == "sunrise" else set_
        if query.timeformat == "unixtime":
            column.append(instant)
        else:
            local = datetime.fromtimestamp(instant + zone.offset, UTC)
            column.append(local.strftime("%Y-%m-%dT%H:%M"))
    if name == "daylight_duration":
        return "s", column
    return query.timeformat, column


def validate_zones(query: Query, now: datetime) -> list[Zone]:
    return [resolve_zone(loc.timezone, loc.latitude, loc.longitude, now) for loc in query.locations]
