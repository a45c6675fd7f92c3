"""Synthetic, deterministic weather for the Open-Meteo emulation (PROVIDERS.md §8.3-8.4).

Every value is a pure function of (grid cell, model, seed, UTC hour): a climate from
latitude and elevation, a seasonal cycle, a day/night cycle from the sun's elevation, and
smooth multi-day "weather systems" from hashed knots. Same input, same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

_M64 = (1 << 64) - 1
_DAY0_2000 = 10957  # days from 1970-01-01 to 2000-01-01


def _mix(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def unit_hash(*parts: int) -> float:
    """A uniform number in [0, 1) from integers."""
    acc = 0x243F6A8885A308D3
    for part in parts:
        acc = _mix(acc ^ (part & _M64))
    return acc / 2.0**64


class _Noise:
    """Value noise over time: hashed knots every ``period`` hours, smoothly interpolated."""

    def __init__(self, seed: int, stream: int, period_h: float) -> None:
        self.seed, self.stream, self.period = seed, stream, period_h
        self._knots: dict[int, float] = {}

    def _knot(self, k: int) -> float:
        value = self._knots.get(k)
        if value is None:
            value = self._knots[k] = unit_hash(self.seed, self.stream, k)
        return value

    def at(self, hours: float) -> float:
        x = hours / self.period
        k = math.floor(x)
        f = x - k
        f = f * f * (3 - 2 * f)
        a = self._knot(k)
        return a + (self._knot(k + 1) - a) * f


@dataclass(frozen=True)
class Cell:
    lat: float
    lon: float
    elevation: float
    seed: int


@dataclass
class Hours:
    """The base fields for a run of hours; every variable derives from these."""

    climate: float
    amplitude: float
    hemisphere: float
    elevation: float
    seed: int
    instants: list[int] = field(default_factory=list)
    temp: list[float] = field(default_factory=list)
    rh: list[float] = field(default_factory=list)
    cloud: list[float] = field(default_factory=list)
    precip: list[float] = field(default_factory=list)
    wind: list[float] = field(default_factory=list)
    wind_dir: list[float] = field(default_factory=list)
    pressure: list[float] = field(default_factory=list)
    sin_elev: list[float] = field(default_factory=list)
    shortwave: list[float] = field(default_factory=list)
    anomaly: list[float] = field(default_factory=list)
    season: list[float] = field(default_factory=list)
    doy: list[float] = field(default_factory=list)


def _doy(instant: int) -> float:
    return (instant / 86400.0 - _DAY0_2000) % 365.2422 + 1.0


def _declination(doy: float) -> float:
    return math.radians(23.44) * math.sin(2 * math.pi * (284 + doy) / 365.0)


def sun_sin_elevation(lat: float, lon: float, instant: int) -> float:
    doy = _doy(instant)
    solar_hour = (instant / 3600.0 + lon / 15.0) % 24.0
    phi, delta = math.radians(lat), _declination(doy)
    angle = math.radians(15.0 * (solar_hour - 12.0))
    return math.sin(phi) * math.sin(delta) + math.cos(phi) * math.cos(delta) * math.cos(angle)


def climate_of(cell: Cell) -> tuple[float, float]:
    """Annual mean temperature (°C) and seasonal amplitude of a cell."""
    abslat = abs(cell.lat)
    mean = 29.0 - 0.37 * abslat - 0.0065 * cell.elevation
    mean += (unit_hash(cell.seed, 11) - 0.5) * 2.0
    amplitude = min(16.0, 0.24 * abslat) * (0.75 + 0.5 * unit_hash(cell.seed, 12))
    return mean, amplitude


def base_hours(cell: Cell, instants: Sequence[int]) -> Hours:
    seed = cell.seed
    climate, amplitude = climate_of(cell)
    hemisphere = 1.0 if cell.lat >= 0 else -1.0
    temp_slow, temp_fast = _Noise(seed, 21, 72.0), _Noise(seed, 22, 12.0)
    cloud_slow, cloud_fast = _Noise(seed, 31, 48.0), _Noise(seed, 32, 8.0)
    wind_n, dir_n, press_n = _Noise(seed, 41, 36.0), _Noise(seed, 42, 60.0), _Noise(seed, 43, 96.0)
    out = Hours(climate, amplitude, hemisphere, cell.elevation, seed, instants=list(instants))
    for instant in instants:
        hours = instant / 3600.0
        hour_index = instant // 3600
        doy = _doy(instant)
        season = hemisphere * math.cos(2 * math.pi * (doy - 200.0) / 365.25)
        sin_elev = sun_sin_elevation(cell.lat, cell.lon, instant)
        slow_cloud = cloud_slow.at(hours)
        raw = slow_cloud * 0.75 + cloud_fast.at(hours) * 0.25
        cloud = min(100.0, max(0.0, (raw * 1.5 - 0.25) * 100.0))
        dry = 1.0 - cloud / 100.0
        solar_hour = (hours + cell.lon / 15.0) % 24.0
        diurnal = (2.5 + 4.5 * dry) * math.cos(2 * math.pi * (solar_hour - 15.0) / 24.0)
        anomaly = (temp_slow.at(hours) - 0.5) * 8.0 + (temp_fast.at(hours) - 0.5) * 2.0
        jitter = unit_hash(seed, 51, hour_index) - 0.5
        temp = climate + amplitude * season + anomaly + diurnal + jitter * 0.4
        precip = 0.0
        if cloud >= 75.0 and unit_hash(seed, 52, hour_index) < (cloud - 75.0) / 25.0 * 0.55:
            precip = round(0.1 + 4.0 * unit_hash(seed, 53, hour_index) ** 2, 1)
        rh = 50.0 + 35.0 * cloud / 100.0 - 1.8 * diurnal + (10.0 if precip else 0.0) + jitter * 6
        wind = 3.0 + 24.0 * wind_n.at(hours) ** 1.3 + 4.0 * max(0.0, sin_elev) + jitter * 3.0
        out.temp.append(temp)
        out.rh.append(min(100.0, max(8.0, rh)))
        out.cloud.append(cloud)
        out.precip.append(precip)
        out.wind.append(max(0.0, wind))
        out.wind_dir.append((dir_n.at(hours) * 540.0) % 360.0)
        out.pressure.append(1013.0 + (0.5 - slow_cloud) * 30.0 + (press_n.at(hours) - 0.5) * 10.0)
        out.sin_elev.append(sin_elev)
        out.shortwave.append(
            0.0 if sin_elev <= 0 else 1050.0 * sin_elev * (1.0 - 0.75 * (cloud / 100.0) ** 3.4)
        )
        out.anomaly.append(anomaly)
        out.season.append(season)
        out.doy.append(doy)
    return out


# -- derived quantities (SI-ish base units: °C, %, mm, km/h, hPa, W/m²) ------------------------


def _dew_point(t: float, rh: float) -> float:
    gamma = math.log(max(rh, 1.0) / 100.0) + 17.62 * t / (243.12 + t)
    return 243.12 * gamma / (17.62 - gamma)


def _apparent(t: float, rh: float, wind_kmh: float) -> float:
    # The Australian BoM apparent temperature, which Open-Meteo documents.
    vapour = rh / 100.0 * 6.105 * math.exp(17.27 * t / (237.7 + t))
    return t + 0.33 * vapour - 0.70 * (wind_kmh / 3.6) - 4.0


def _weather_code(t: float, precip: float, cloud: float, rh: float, wind: float) -> float:
    if precip > 0:
        if t <= 0.5:
            return 71.0 if precip < 0.5 else 73.0 if precip < 2.0 else 75.0
        if precip < 0.3:
            return 51.0
        return 61.0 if precip < 1.5 else 63.0 if precip < 4.0 else 65.0
    if rh >= 97 and cloud >= 90 and wind < 8:
        return 45.0
    return 0.0 if cloud < 20 else 1.0 if cloud < 50 else 2.0 if cloud < 80 else 3.0


def _soil_temp(h: Hours, i: int, lag_days: float, depth_factor: float, mix: float) -> float:
    lagged = h.hemisphere * math.cos(2 * math.pi * (h.doy[i] - 200.0 - lag_days) / 365.25)
    return h.climate + h.amplitude * depth_factor * lagged + h.anomaly[i] * mix


Derive = Callable[[Hours, int], float]


def _cloud_layer(stream: int, share: float) -> Derive:
    def layer(h: Hours, i: int) -> float:
        u = unit_hash(h.seed, stream, h.instants[i] // 3600)
        return min(100.0, h.cloud[i] * (share + (1 - share) * u))

    return layer


def _direct(h: Hours, i: int) -> float:
    return h.shortwave[i] * (1.0 - h.cloud[i] / 100.0) * 0.8


HOURLY: dict[str, tuple[str, int, Derive]] = {
    # name: (unit kind, decimals, derivation)
    "temperature_2m": ("temperature", 1, lambda h, i: h.temp[i]),
    "relative_humidity_2m": ("%", 0, lambda h, i: h.rh[i]),
    "dew_point_2m": ("temperature", 1, lambda h, i: _dew_point(h.temp[i], h.rh[i])),
    "apparent_temperature": (
        "temperature",
        1,
        lambda h, i: _apparent(h.temp[i], h.rh[i], h.wind[i]),
    ),
    "precipitation": ("precipitation", 1, lambda h, i: h.precip[i]),
    "rain": ("precipitation", 1, lambda h, i: h.precip[i] if h.temp[i] > 0.5 else 0.0),
    "snowfall": ("snow", 2, lambda h, i: h.precip[i] * 0.7 if h.temp[i] <= 0.5 else 0.0),
    "snow_depth": ("depth", 2, lambda h, i: min(1.5, max(0.0, -h.temp[i]) * 0.02)),
    "weather_code": (
        "wmo code",
        0,
        lambda h, i: _weather_code(h.temp[i], h.precip[i], h.cloud[i], h.rh[i], h.wind[i]),
    ),
    "pressure_msl": ("hPa", 1, lambda h, i: h.pressure[i]),
    "surface_pressure": (
        "hPa",
        1,
        lambda h, i: h.pressure[i] * (1 - 2.25577e-5 * h.elevation) ** 5.25588,
    ),
    "cloud_cover": ("%", 0, lambda h, i: h.cloud[i]),
    "cloud_cover_low": ("%", 0, _cloud_layer(61, 0.3)),
    "cloud_cover_mid": ("%", 0, _cloud_layer(62, 0.2)),
    "cloud_cover_high": ("%", 0, _cloud_layer(63, 0.1)),
    "et0_fao_evapotranspiration": (
        "precipitation",
        2,
        lambda h, i: max(0.0, 0.0005 * h.shortwave[i] * max(0.2, (h.temp[i] + 5.0) / 25.0)),
    ),
    "vapour_pressure_deficit": (
        "kPa",
        2,
        lambda h, i: (
            0.6108 * math.exp(17.27 * h.temp[i] / (h.temp[i] + 237.3)) * (1 - h.rh[i] / 100)
        ),
    ),
    "wind_speed_10m": ("wind", 1, lambda h, i: h.wind[i]),
    "wind_speed_100m": ("wind", 1, lambda h, i: h.wind[i] * 1.35 + 2.0),
    "wind_direction_10m": ("°", 0, lambda h, i: h.wind_dir[i]),
    "wind_direction_100m": ("°", 0, lambda h, i: (h.wind_dir[i] + 8.0) % 360.0),
    "wind_gusts_10m": (
        "wind",
        1,
        lambda h, i: h.wind[i] * 1.55 + 4.0 * unit_hash(h.seed, 71, h.instants[i] // 3600),
    ),
    "soil_temperature_0_to_7cm": ("temperature", 1, lambda h, i: _soil_temp(h, i, 10, 1.0, 0.6)),
    "soil_temperature_7_to_28cm": ("temperature", 1, lambda h, i: _soil_temp(h, i, 20, 0.9, 0.3)),
    "soil_temperature_28_to_100cm": ("temperature", 1, lambda h, i: _soil_temp(h, i, 40, 0.7, 0)),
    "soil_temperature_100_to_255cm": (
        "temperature",
        1,
        lambda h, i: _soil_temp(h, i, 70, 0.4, 0),
    ),
    "soil_moisture_0_to_7cm": (
        "m³/m³",
        3,
        lambda h, i: 0.18 + 0.2 * h.cloud[i] / 100.0 + (0.05 if h.precip[i] else 0.0),
    ),
    "soil_moisture_7_to_28cm": ("m³/m³", 3, lambda h, i: 0.2 + 0.15 * h.cloud[i] / 100.0),
    "soil_moisture_28_to_100cm": ("m³/m³", 3, lambda h, i: 0.26 + 0.05 * h.season[i]),
    "soil_moisture_100_to_255cm": ("m³/m³", 3, lambda h, i: 0.3 + 0.02 * h.season[i]),
    "is_day": ("", 0, lambda h, i: 1.0 if h.sin_elev[i] > 0 else 0.0),
    "sunshine_duration": (
        "s",
        2,
        lambda h, i: (
            3600.0 * min(1.0, max(0.0, (1 - h.cloud[i] / 100) * 1.2))
            if h.sin_elev[i] > 0.05
            else 0.0
        ),
    ),
    "shortwave_radiation": ("W/m²", 1, lambda h, i: h.shortwave[i]),
    "direct_radiation": ("W/m²", 1, _direct),
    "diffuse_radiation": ("W/m²", 1, lambda h, i: h.shortwave[i] - _direct(h, i)),
    "direct_normal_irradiance": (
        "W/m²",
        1,
        lambda h, i: _direct(h, i) / max(h.sin_elev[i], 0.05) if h.sin_elev[i] > 0 else 0.0,
    ),
    "terrestrial_radiation": (
        "W/m²",
        1,
        lambda h, i: (
            1361.0 * (1 + 0.033 * math.cos(2 * math.pi * h.doy[i] / 365)) * max(0.0, h.sin_elev[i])
        ),
    ),
}

# Names from before Open-Meteo's 2023 rename; the API still accepts them.
LEGACY = {
    "relativehumidity_2m": "relative_humidity_2m",
    "dewpoint_2m": "dew_point_2m",
    "weathercode": "weather_code",
    "cloudcover": "cloud_cover",
    "cloudcover_low": "cloud_cover_low",
    "cloudcover_mid": "cloud_cover_mid",
    "cloudcover_high": "cloud_cover_high",
    "windspeed_10m": "wind_speed_10m",
    "windspeed_100m": "wind_speed_100m",
    "winddirection_10m": "wind_direction_10m",
    "winddirection_100m": "wind_direction_100m",
    "windgusts_10m": "wind_gusts_10m",
    "windspeed_10m_max": "wind_speed_10m_max",
    "windgusts_10m_max": "wind_gusts_10m_max",
    "winddirection_10m_dominant": "wind_direction_10m_dominant",
}


def hourly_value(name: str, hours: Hours, i: int) -> float:
    return HOURLY[LEGACY.get(name, name)][2](hours, i)


# -- daily aggregates over the 24 local hours of each day ---------------------------------------

Agg = Callable[[Sequence[float]], float]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _dominant(values: Sequence[float]) -> float:
    x = sum(math.cos(math.radians(v)) for v in values)
    y = sum(math.sin(math.radians(v)) for v in values)
    return math.degrees(math.atan2(y, x)) % 360.0


DAILY: dict[str, tuple[str, int, str, Agg]] = {
    # name: (unit kind, decimals, hourly source, aggregate)
    "weather_code": ("wmo code", 0, "weather_code", max),
    "temperature_2m_max": ("temperature", 1, "temperature_2m", max),
    "temperature_2m_min": ("temperature", 1, "temperature_2m", min),
    "temperature_2m_mean": ("temperature", 1, "temperature_2m", _mean),
    "apparent_temperature_max": ("temperature", 1, "apparent_temperature", max),
    "apparent_temperature_min": ("temperature", 1, "apparent_temperature", min),
    "apparent_temperature_mean": ("temperature", 1, "apparent_temperature", _mean),
    "precipitation_sum": ("precipitation", 1, "precipitation", sum),
    "rain_sum": ("precipitation", 1, "rain", sum),
    "snowfall_sum": ("snow", 2, "snowfall", sum),
    "precipitation_hours": ("h", 1, "precipitation", lambda v: float(sum(1 for x in v if x))),
    "sunshine_duration": ("s", 2, "sunshine_duration", sum),
    "wind_speed_10m_max": ("wind", 1, "wind_speed_10m", max),
    "wind_gusts_10m_max": ("wind", 1, "wind_gusts_10m", max),
    "wind_direction_10m_dominant": ("°", 0, "wind_direction_10m", _dominant),
    "shortwave_radiation_sum": (
        "MJ/m²",
        2,
        "shortwave_radiation",
        lambda v: sum(v) * 3600 / 1e6,
    ),
    "et0_fao_evapotranspiration": ("precipitation", 2, "et0_fao_evapotranspiration", sum),
    "relative_humidity_2m_max": ("%", 0, "relative_humidity_2m", max),
    "relative_humidity_2m_min": ("%", 0, "relative_humidity_2m", min),
    "relative_humidity_2m_mean": ("%", 0, "relative_humidity_2m", _mean),
    "cloud_cover_mean": ("%", 0, "cloud_cover", _mean),
    "cloud_cover_max": ("%", 0, "cloud_cover", max),
    "cloud_cover_min": ("%", 0, "cloud_cover", min),
}
SUN_DAILY = {"sunrise", "sunset", "daylight_duration"}


def sun_times(lat: float, lon: float, day_utc_midnight: int, utc_offset: int) -> tuple[int, int]:
    """Sunrise and sunset instants (UTC epoch seconds) for a calendar day; under the
    midnight sun, the local day's own midnights."""
    doy = _doy(day_utc_midnight + 43200)
    gamma = 2 * math.pi / 365.0 * (doy - 1)
    eot = 229.18 * (
        0.000075
        + 0.001868 * math.cos(gamma)
        - 0.032077 * math.sin(gamma)
        - 0.014615 * math.cos(2 * gamma)
        - 0.040849 * math.sin(2 * gamma)
    )
    phi, delta = math.radians(lat), _declination(doy)
    cos_ha = math.cos(math.radians(90.833)) / (math.cos(phi) * math.cos(delta)) - math.tan(
        phi
    ) * math.tan(delta)
    noon = 720.0 - 4.0 * lon - eot
    if cos_ha >= 1.0:  # polar night: the sun never rises
        return day_utc_midnight + int(noon * 60), day_utc_midnight + int(noon * 60)
    if cos_ha <= -1.0:  # polar day
        local_midnight = day_utc_midnight - utc_offset
        return local_midnight, local_midnight + 86400
    ha = math.degrees(math.acos(cos_ha))
    rise = noon - 4.0 * ha
    return day_utc_midnight + int(rise * 60), day_utc_midnight + int((noon + 4.0 * ha) * 60)
