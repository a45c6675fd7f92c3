"""Parameter parsing and validation for Open-Meteo ``/v1/archive`` and ``/v1/forecast``,
with the API's own ``reason`` texts for every rejection (PROVIDERS.md §8.3)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from provider_sandbox.providers._open_meteo_weather import DAILY, HOURLY, LEGACY, SUN_DAILY

ARCHIVE_START = date(1940, 1, 1)
MAX_LOCATIONS = 1000
FORECAST_PAST_DAYS = 92
FORECAST_DAYS = 16

# Grid spacing in degrees per model (ERA5 0.25°, ERA5-Land 0.1°, IFS about 9 km, CERRA 5 km).
MODEL_GRID: dict[str, float | None] = {
    "best_match": None,  # the configurable default grid
    "era5": 0.25,
    "era5_seamless": 0.25,
    "era5_ensemble": 0.5,
    "era5_land": 0.1,
    "ecmwf_ifs": 0.1,
    "ecmwf_ifs_analysis_long_window": 0.1,
    "cerra": 0.05,
}
ENUMS: dict[str, tuple[str, tuple[str, ...], str]] = {
    # parameter: (Swift type named in the reason, allowed values, default)
    "temperature_unit": ("TemperatureUnit", ("celsius", "fahrenheit"), "celsius"),
    "wind_speed_unit": ("WindspeedUnit", ("kmh", "ms", "mph", "kn"), "kmh"),
    "precipitation_unit": ("PrecipitationUnit", ("mm", "inch"), "mm"),
    "timeformat": ("Timeformat", ("iso8601", "unixtime"), "iso8601"),
    "cell_selection": ("GridSelectionMode", ("land", "sea", "nearest"), "land"),
}
# Older spellings of the unit parameters, still accepted.
ENUM_ALIASES = {"windspeed_unit": "wind_speed_unit"}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class OpenMeteoError(Exception):
    """A rejected request: HTTP ``status`` with ``{"error": true, "reason": reason}``."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class Location:
    latitude: float
    longitude: float
    elevation: float | None
    timezone: str  # an IANA name, "GMT", or "auto"
    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


@dataclass(frozen=True)
class Query:
    locations: tuple[Location, ...]
    hourly: tuple[str, ...]
    daily: tuple[str, ...]
    models: tuple[str, ...]
    temperature_unit: str
    wind_speed_unit: str
    precipitation_unit: str
    timeformat: str
    cell_selection: str

    def weight(self) -> float:
        """Open-Meteo's call weight: 10 variables over 14 days count as one call, and
        more scales linearly, per location, never below one."""
        variables = (len(self.hourly) + len(self.daily)) * len(self.models)
        total = 0.0
        for location in self.locations:
            fraction = variables / 10.0
            total += max(1.0, max(fraction, fraction * location.days / 14.0))
        return total


def _split(multi: Sequence[str]) -> list[str]:
    """Open-Meteo accepts lists both comma-separated and as repeated parameters."""
    out: list[str] = []
    for raw in multi:
        out.extend(part.strip() for part in raw.split(",") if part.strip())
    return out


def _floats(raw: list[str]) -> list[float]:
    values = []
    for text in raw:
        try:
            value = float(text)
        except ValueError:
            raise OpenMeteoError(
                f"Data corrupted at path ''. Cannot initialize Float from invalid String value "
                f"{text}."
            ) from None
        values.append(value)
    return values


def _enum(params: Mapping[str, list[str]], name: str) -> str:
    type_name, allowed, default = ENUMS[name]
    raw = params.get(name)
    for alias, target in ENUM_ALIASES.items():
        if not raw and target == name:
            raw = params.get(alias)
    if not raw:
        return default
    value = raw[-1]
    if value not in allowed:
        raise OpenMeteoError(
            f"Cannot initialize {type_name} from invalid String value {value} for key {name}"
        )
    return value


def _variables(names: list[str], known: set[str], key: str, type_name: str) -> tuple[str, ...]:
    for name in names:
        if LEGACY.get(name, name) not in known:
            raise OpenMeteoError(
                f"Cannot initialize {type_name} from invalid String value {name} for key {key}"
            )
    return tuple(names)


def _parse_date(text: str) -> date:
    if not _DATE.match(text):
        raise OpenMeteoError("Invalid date format. Make sure to use 'YYYY-MM-DD'")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise OpenMeteoError("Invalid date") from None


def _per_location(values: list[str], count: int, reason: str) -> list[str]:
    if len(values) == 1:
        return values * count
    if len(values) != count:
        raise OpenMeteoError(reason)
    return values


def _out_of_range(name: str, first: date, last: date) -> OpenMeteoError:
    return OpenMeteoError(
        f"Parameter '{name}' is out of allowed range from {first.isoformat()} to {last.isoformat()}"
    )


@dataclass(frozen=True)
class _Common:
    latitudes: list[float]
    longitudes: list[float]
    elevations: list[float | None]
    timezones: list[str]
    hourly: tuple[str, ...]
    daily: tuple[str, ...]
    models: tuple[str, ...]
    enums: dict[str, str]


def _common(params: Mapping[str, list[str]]) -> _Common:
    def listed(name: str) -> list[str]:
        return _split(params.get(name, []))

    latitudes = _floats(listed("latitude"))
    longitudes = _floats(listed("longitude"))
    raw_elevations = _floats(listed("elevation"))
    enums = {name: _enum(params, name) for name in ENUMS}
    hourly = _variables(listed("hourly"), set(HOURLY), "hourly", "WeatherVariable")
    daily = _variables(listed("daily"), set(DAILY) | SUN_DAILY, "daily", "DailyWeatherVariable")
    models = tuple(listed("models")) or ("best_match",)
    for model in models:
        if model not in MODEL_GRID:
            raise OpenMeteoError(
                f"Cannot initialize MultiDomains from invalid String value {model} for key models"
            )
    if not latitudes and not longitudes:
        raise OpenMeteoError("Parameter 'latitude' and 'longitude' must not be empty")
    if len(latitudes) != len(longitudes):
        raise OpenMeteoError(
            "Parameter 'latitude' and 'longitude' must have the same number of elements"
        )
    if len(latitudes) > MAX_LOCATIONS:
        raise OpenMeteoError(
            f"Parameter 'latitude' and 'longitude' must not exceed {MAX_LOCATIONS} coordinates."
        )
    for lat, lon in zip(latitudes, longitudes, strict=True):
        if math.isnan(lat) or not -90 <= lat <= 90:
            raise OpenMeteoError(f"Latitude must be in range of -90 to 90°. Given: {lat}.")
        if math.isnan(lon) or not -180 <= lon <= 180:
            raise OpenMeteoError(f"Longitude must be in range of -180 to 180°. Given: {lon}.")
    count = len(latitudes)
    elevations: list[float | None] = [None] * count
    if raw_elevations:
        if len(raw_elevations) not in (1, count):
            raise OpenMeteoError(
                "Parameter 'elevation' must have the same number of elements as coordinates"
            )
        chosen = raw_elevations * count if len(raw_elevations) == 1 else raw_elevations
        elevations = [None if math.isnan(e) else e for e in chosen]
    timezones = listed("timezone")
    if daily and not timezones:
        raise OpenMeteoError("Timezone is required")
    timezones = _per_location(
        timezones or ["GMT"],
        count,
        "Parameter 'timezone' must have the same number of elements as coordinates",
    )
    return _Common(latitudes, longitudes, elevations, timezones, hourly, daily, models, enums)


def _dates(params: Mapping[str, list[str]], count: int) -> tuple[list[date], list[date]] | None:
    starts = _split(params.get("start_date", []))
    ends = _split(params.get("end_date", []))
    if not starts and not ends:
        return None
    if not starts or not ends:
        raise OpenMeteoError("Both 'start_date' and 'end_date' must be set in the url")
    if len(starts) != len(ends):
        raise OpenMeteoError(
            "Parameter 'start_date' and 'end_date' must have the same number of elements"
        )
    reason = (
        "Parameter 'start_date' and 'end_date' must have the same number of elements as coordinates"
    )
    start_dates = [_parse_date(s) for s in _per_location(starts, count, reason)]
    end_dates = [_parse_date(e) for e in _per_location(ends, count, reason)]
    return start_dates, end_dates


def _check_range(start: date, end: date, first: date, last: date) -> None:
    if end < start:
        raise OpenMeteoError("End-date must be larger or equals than start-date")
    if not first <= start <= last:
        raise _out_of_range("start_date", first, last)
    if not first <= end <= last:
        raise _out_of_range("end_date", first, last)


def _query(common: _Common, starts: list[date], ends: list[date]) -> Query:
    locations = tuple(
        Location(lat, lon, elevation, tz, start, end)
        for lat, lon, elevation, tz, start, end in zip(
            common.latitudes,
            common.longitudes,
            common.elevations,
            common.timezones,
            starts,
            ends,
            strict=True,
        )
    )
    return Query(
        locations=locations,
        hourly=common.hourly,
        daily=common.daily,
        models=common.models,
        temperature_unit=common.enums["temperature_unit"],
        wind_speed_unit=common.enums["wind_speed_unit"],
        precipitation_unit=common.enums["precipitation_unit"],
        timeformat=common.enums["timeformat"],
        cell_selection=common.enums["cell_selection"],
    )


def parse_archive(params: Mapping[str, list[str]], today: date, last_offset_days: int) -> Query:
    """``/v1/archive``: dates are required and must fall within 1940-01-01 .. today
    (plus the configurable offset)."""
    common = _common(params)
    dates = _dates(params, len(common.latitudes))
    if dates is None:
        raise OpenMeteoError("Both 'start_date' and 'end_date' must be set in the url")
    last = today + timedelta(days=last_offset_days)
    for start, end in zip(*dates, strict=True):
        _check_range(start, end, ARCHIVE_START, last)
    return _query(common, *dates)


def parse_forecast(params: Mapping[str, list[str]], today: date) -> Query:
    """``/v1/forecast``: ``past_days``/``forecast_days`` or a date range within about three
    months back and 16 days ahead."""
    common = _common(params)
    count = len(common.latitudes)
    dates = _dates(params, count)
    first = today - timedelta(days=FORECAST_PAST_DAYS)
    last = today + timedelta(days=FORECAST_DAYS - 1)
    if dates is not None:
        for name in ("past_days", "forecast_days"):
            if name in params:
                raise OpenMeteoError(
                    f"Parameter '{name}' is mutually exclusive with 'start_date' and 'end_date'"
                )
        for start, end in zip(*dates, strict=True):
            _check_range(start, end, first, last)
        return _query(common, *dates)
    past = _bounded_int(params, "past_days", 0, FORECAST_PAST_DAYS, "Past days")
    ahead = _bounded_int(params, "forecast_days", 7, FORECAST_DAYS, "Forecast days")
    start = today - timedelta(days=past)
    end = today + timedelta(days=ahead - 1)
    if end < start:  # forecast_days=0 and past_days=0: an empty time axis
        end = start - timedelta(days=1)
    return _query(common, [start] * count, [end] * count)


def _bounded_int(
    params: Mapping[str, list[str]], name: str, default: int, upper: int, label: str
) -> int:
    raw = params.get(name)
    if not raw:
        return default
    try:
        value = int(raw[-1])
    except ValueError:
        raise OpenMeteoError(
            f"Data corrupted at path ''. Cannot initialize Int from invalid String value {raw[-1]}."
        ) from None
    if not 0 <= value <= upper:
        raise OpenMeteoError(f"{label} is invalid. Allowed range 0 to {upper}. Given {value}.")
    return value
