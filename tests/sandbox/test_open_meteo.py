"""Open-Meteo archive and forecast in the sandbox (PROVIDERS.md §8.4): response shape and
contract, grid snapping, determinism, units, the archive lag, and the 400 bodies."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from provider_sandbox.core import Sandbox

from tests.provider_payloads import PAYLOADS
from tests.sandbox.conftest import Client

pytestmark = pytest.mark.service

ARCHIVE = "/open-meteo/v1/archive"
FORECAST = "/open-meteo/v1/forecast"
SYNC_VARIABLES = (
    "temperature_2m,relative_humidity_2m,precipitation,wind_speed_10m,weather_code,"
    "cloud_cover,apparent_temperature"
)
BERLIN = {"latitude": "52.52", "longitude": "13.41"}


def day(**extra: str) -> dict[str, str]:
    return {**BERLIN, "start_date": "2022-07-01", "end_date": "2022-07-01", **extra}


async def get(client: Client, params: dict[str, str], path: str = ARCHIVE) -> tuple[int, Any]:
    resp = await client.get(path, params=params)
    assert resp.content_type == "application/json"
    return resp.status, await resp.json()


def shape(value: Any) -> Any:
    """JSON value types, recursively; arrays by their element shapes (not their length)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return ["array", sorted({json.dumps(shape(v)) for v in value})]
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if value is None:
        return "null"
    return type(value).__name__


def assert_matches(example: Any, actual: Any, path: str = "$") -> None:
    if example is None:
        return
    if isinstance(example, dict):
        assert isinstance(actual, dict), path
        for key, value in example.items():
            assert key in actual, f"{path}.{key} missing"
            assert_matches(value, actual[key], f"{path}.{key}")
        return
    assert shape(example) == shape(actual), f"{path}: {shape(example)} != {shape(actual)}"


async def test_contract_matches_the_documented_payload(client: Client) -> None:
    example = json.loads((PAYLOADS / "open_meteo_archive.json").read_text())
    status, body = await get(
        client, day(hourly="temperature_2m", timezone="Europe/Berlin", latitude="52.52")
    )
    assert status == 200
    # The example's arrays were truncated in the docs (SOURCES.md): compare shapes only.
    assert_matches(example, body)
    assert set(body) == set(example)
    # Real responses also map "time" in hourly_units, which the truncated example omits.
    assert set(body["hourly_units"]) == set(example["hourly_units"]) | {"time"}
    assert body["hourly_units"]["time"] == "iso8601"
    assert list(body)[:7] == [
        "latitude",
        "longitude",
        "generationtime_ms",
        "utc_offset_seconds",
        "timezone",
        "timezone_abbreviation",
        "elevation",
    ]


async def test_hourly_arrays_equal_length_local_time_and_units(client: Client) -> None:
    status, body = await get(
        client,
        {
            **BERLIN,
            "start_date": "2022-07-01",
            "end_date": "2022-07-03",
            "hourly": SYNC_VARIABLES,
            "timezone": "Europe/Berlin",
        },
    )
    assert status == 200
    hourly = body["hourly"]
    assert len(hourly["time"]) == 72
    assert {len(v) for v in hourly.values()} == {72}
    assert hourly["time"][0] == "2022-07-01T00:00"
    assert hourly["time"][-1] == "2022-07-03T23:00"
    assert body["hourly_units"] == {
        "time": "iso8601",
        "temperature_2m": "°C",
        "relative_humidity_2m": "%",
        "precipitation": "mm",
        "wind_speed_10m": "km/h",
        "weather_code": "wmo code",
        "cloud_cover": "%",
        "apparent_temperature": "°C",
    }
    assert all(isinstance(v, int) for v in hourly["relative_humidity_2m"])
    assert all(isinstance(v, int) for v in hourly["weather_code"])
    assert all(0 <= v <= 100 for v in hourly["cloud_cover"])
    assert all(v >= 0 for v in hourly["precipitation"])
    assert all(-40 < v < 50 for v in hourly["temperature_2m"])
    assert set(hourly["weather_code"]) <= {0, 1, 2, 3, 45, 51, 61, 63, 65, 71, 73, 75}
    assert body["timezone"] == "Europe/Berlin"
    assert body["utc_offset_seconds"] in (3600, 7200)
    assert body["timezone_abbreviation"] in ("GMT+1", "GMT+2")


async def test_one_utc_offset_taken_at_the_current_date(client: Client, sandbox: Sandbox) -> None:
    # Open-Meteo applies the zone's offset of *today* to the whole series (no DST inside).
    params = day(hourly="temperature_2m", timezone="America/New_York")
    _, body = await get(client, params)
    now = sandbox.clock.now()
    expected = now.astimezone(ZoneInfo("America/New_York")).utcoffset()
    assert expected is not None
    assert body["utc_offset_seconds"] == int(expected.total_seconds())
    sandbox.clock.advance(182 * 86400)
    _, later = await get(client, params)
    assert later["utc_offset_seconds"] != body["utc_offset_seconds"]
    assert later["hourly"]["time"] == body["hourly"]["time"]
    assert later["hourly"]["temperature_2m"] != body["hourly"]["temperature_2m"]


async def test_snapped_to_the_grid_and_same_cell_same_series(client: Client) -> None:
    _, a = await get(client, day(hourly="temperature_2m", latitude="52.52", longitude="13.41"))
    _, b = await get(client, day(hourly="temperature_2m", latitude="52.54", longitude="13.36"))
    _, other = await get(client, day(hourly="temperature_2m", latitude="48.14", longitude="11.58"))
    assert (a["latitude"], a["longitude"]) == (52.5, 13.4)
    assert (b["latitude"], b["longitude"]) == (52.5, 13.4)
    assert a == b
    assert (other["latitude"], other["longitude"]) == (48.1, 11.6)
    assert other["hourly"]["temperature_2m"] != a["hourly"]["temperature_2m"]
    _, era5 = await get(client, day(hourly="temperature_2m", models="era5"))
    assert (era5["latitude"], era5["longitude"]) == (52.5, 13.5)


async def test_deterministic_with_day_night_and_seasons(client: Client) -> None:
    params = day(hourly="temperature_2m,is_day,shortwave_radiation", timezone="GMT")
    first = await client.get(ARCHIVE, params=params)
    second = await client.get(ARCHIVE, params=params)
    assert await first.read() == await second.read()
    body = json.loads(await first.read())
    temps = body["hourly"]["temperature_2m"]
    assert len(set(temps)) > 5
    assert max(temps[12:18]) > min(temps[0:6])  # afternoon warmer than the small hours
    assert body["hourly"]["is_day"][0] == 0
    assert body["hourly"]["is_day"][12] == 1
    assert body["hourly"]["shortwave_radiation"][0] == 0
    assert body["hourly"]["shortwave_radiation"][12] > 0
    winter = day(hourly="temperature_2m", start_date="2022-01-15", end_date="2022-01-15")
    _, cold = await get(client, winter)
    assert sum(cold["hourly"]["temperature_2m"]) < sum(temps)


async def test_daily_needs_timezone_and_aggregates_hourly(client: Client) -> None:
    daily = "temperature_2m_max,temperature_2m_min,precipitation_sum,sunrise,sunset,weather_code"
    status, err = await get(client, day(daily=daily))
    assert status == 400
    assert err == {"error": True, "reason": "Timezone is required"}
    status, body = await get(
        client, day(daily=daily, hourly="temperature_2m,precipitation", timezone="Europe/Berlin")
    )
    assert status == 200
    assert body["daily"]["time"] == ["2022-07-01"]
    assert body["daily_units"]["time"] == "iso8601"
    assert body["daily_units"]["sunrise"] == "iso8601"
    hourly = body["hourly"]
    assert body["daily"]["temperature_2m_max"] == [max(hourly["temperature_2m"])]
    assert body["daily"]["temperature_2m_min"] == [min(hourly["temperature_2m"])]
    assert body["daily"]["precipitation_sum"][0] == pytest.approx(
        sum(hourly["precipitation"]), abs=0.11
    )
    # Berlin midsummer: about 02:45 and 19:30 UTC, shown with the response's one offset.
    offset = timedelta(seconds=body["utc_offset_seconds"])
    sunrise = datetime.fromisoformat(body["daily"]["sunrise"][0]) - offset
    sunset = datetime.fromisoformat(body["daily"]["sunset"][0]) - offset
    assert (sunrise.date(), sunrise.hour) == (date(2022, 7, 1), 2)
    assert (sunset.date(), sunset.hour) == (date(2022, 7, 1), 19)


async def test_unit_parameters_convert_values(client: Client) -> None:
    variables = "temperature_2m,wind_speed_10m,precipitation"
    _, metric = await get(client, day(hourly=variables))
    _, imperial = await get(
        client,
        day(
            hourly=variables,
            temperature_unit="fahrenheit",
            wind_speed_unit="ms",
            precipitation_unit="inch",
        ),
    )
    units = imperial["hourly_units"]
    assert (units["temperature_2m"], units["wind_speed_10m"], units["precipitation"]) == (
        "°F",
        "m/s",
        "inch",
    )
    pairs = zip(
        metric["hourly"]["temperature_2m"], imperial["hourly"]["temperature_2m"], strict=True
    )
    for c, f in pairs:
        assert f == pytest.approx(c * 9 / 5 + 32, abs=0.2)
    pairs = zip(
        metric["hourly"]["wind_speed_10m"], imperial["hourly"]["wind_speed_10m"], strict=True
    )
    for kmh, ms in pairs:
        assert ms == pytest.approx(kmh / 3.6, abs=0.1)


async def test_unixtime_and_timezone_auto(client: Client) -> None:
    _, body = await get(
        client, day(hourly="temperature_2m", timeformat="unixtime", timezone="auto")
    )
    assert body["timezone"] == "Europe/Berlin"
    assert body["hourly_units"]["time"] == "unixtime"
    times = body["hourly"]["time"]
    assert times[0] == 1656633600 - body["utc_offset_seconds"]  # local midnight, as UTC epoch
    assert times[1] - times[0] == 3600
    _, ocean = await get(
        client, day(hourly="temperature_2m", latitude="-40", longitude="-120", timezone="auto")
    )
    assert ocean["timezone"] == "Etc/GMT+8"
    assert ocean["utc_offset_seconds"] == -8 * 3600
    assert ocean["timezone_abbreviation"] == "GMT-8"


async def test_several_locations_answer_an_array(client: Client) -> None:
    status, body = await get(
        client,
        day(
            latitude="52.52,35.68,-33.87",
            longitude="13.41,139.70,151.21",
            hourly="temperature_2m",
            timezone="auto",
        ),
    )
    assert status == 200
    assert isinstance(body, list)
    assert len(body) == 3
    assert "location_id" not in body[0]
    assert [b.get("location_id") for b in body[1:]] == [1, 2]
    assert [b["timezone"] for b in body] == ["Europe/Berlin", "Asia/Tokyo", "Australia/Sydney"]
    assert all(len(b["hourly"]["time"]) == len(b["hourly"]["temperature_2m"]) == 24 for b in body)


async def test_archive_ends_days_before_today(client: Client, sandbox: Sandbox) -> None:
    today = sandbox.clock.now().date()
    params = {
        **BERLIN,
        "hourly": "temperature_2m",
        "daily": "temperature_2m_max",
        "timezone": "GMT",
        "start_date": (today - timedelta(days=9)).isoformat(),
        "end_date": today.isoformat(),
    }
    status, body = await get(client, params)
    assert status == 200
    temps = body["hourly"]["temperature_2m"]
    assert len(temps) == 240
    published = 24 * 5  # days today-9 .. today-5
    assert all(v is not None for v in temps[:published])
    assert all(v is None for v in temps[published:])
    assert body["daily"]["temperature_2m_max"][4] is not None
    assert body["daily"]["temperature_2m_max"][5] is None
    tomorrow = {**params, "end_date": (today + timedelta(days=1)).isoformat()}
    status, err = await get(client, tomorrow)
    assert status == 400
    assert err["reason"] == (
        f"Parameter 'end_date' is out of allowed range from 1940-01-01 to {today.isoformat()}"
    )
    await client.post(
        "/_sandbox/open_meteo/config", json={"archive_delay_days": 0, "archive_end_offset_days": 1}
    )
    status, body = await get(client, tomorrow)
    assert status == 200
    assert all(v is not None for v in body["hourly"]["temperature_2m"][:240])
    assert all(v is None for v in body["hourly"]["temperature_2m"][240:])
    # The injectable date: a week later, last week's data is published.
    sandbox.clock.advance(7 * 86400)
    await client.post("/_sandbox/open_meteo/config", json={"archive_delay_days": 5})
    status, body = await get(client, params)
    assert all(v is not None for v in body["hourly"]["temperature_2m"])


async def test_forecast_with_past_days(client: Client, sandbox: Sandbox) -> None:
    today = sandbox.clock.now().date()
    status, body = await get(
        client,
        {**BERLIN, "hourly": "temperature_2m", "past_days": "2", "forecast_days": "1"},
        FORECAST,
    )
    assert status == 200
    assert len(body["hourly"]["time"]) == 72
    assert body["hourly"]["time"][0] == f"{(today - timedelta(days=2)).isoformat()}T00:00"
    assert None not in body["hourly"]["temperature_2m"]
    _, default = await get(client, {**BERLIN, "hourly": "temperature_2m"}, FORECAST)
    assert len(default["hourly"]["time"]) == 7 * 24
    status, err = await get(
        client,
        {
            **BERLIN,
            "hourly": "temperature_2m",
            "past_days": "1",
            "start_date": "2022-01-01",
            "end_date": "2022-01-01",
        },
        FORECAST,
    )
    assert status == 400
    assert "mutually exclusive" in err["reason"]
    status, err = await get(client, {**BERLIN, "forecast_days": "17"}, FORECAST)
    assert status == 400
    assert err["reason"] == "Forecast days is invalid. Allowed range 0 to 16. Given 17."
    stats = await (await client.get("/_sandbox/stats")).json()
    assert stats["calls"]["open_meteo GET /forecast"] == 4


TODAY_PLUS = (date.today() + timedelta(days=400)).isoformat()
BAD_PARAMETERS = [
    (
        {"latitude": None},
        "Parameter 'latitude' and 'longitude' must have the same number of elements",
    ),
    (
        {"latitude": None, "longitude": None},
        "Parameter 'latitude' and 'longitude' must not be empty",
    ),
    ({"latitude": "91"}, "Latitude must be in range of -90 to 90°. Given: 91.0."),
    ({"latitude": "-90.5"}, "Latitude must be in range of -90 to 90°. Given: -90.5."),
    ({"longitude": "181"}, "Longitude must be in range of -180 to 180°. Given: 181.0."),
    (
        {"latitude": "abc"},
        "Data corrupted at path ''. Cannot initialize Float from invalid String value abc.",
    ),
    (
        {"start_date": "2022-07-02", "end_date": "2022-07-01"},
        "End-date must be larger or equals than start-date",
    ),
    ({"start_date": "2022-7-1"}, "Invalid date format. Make sure to use 'YYYY-MM-DD'"),
    ({"start_date": "2022-02-30", "end_date": "2022-03-01"}, "Invalid date"),
    (
        {"start_date": "1939-12-31"},
        "Parameter 'start_date' is out of allowed range from 1940-01-01 to {today}",
    ),
    (
        {"end_date": TODAY_PLUS},
        "Parameter 'end_date' is out of allowed range from 1940-01-01 to {today}",
    ),
    ({"end_date": None}, "Both 'start_date' and 'end_date' must be set in the url"),
    (
        {"hourly": "tempeture_2m"},
        "Cannot initialize WeatherVariable from invalid String value tempeture_2m for key hourly",
    ),
    (
        {"daily": "temperature_max", "timezone": "GMT"},
        "Cannot initialize DailyWeatherVariable from invalid String value temperature_max for key "
        "daily",
    ),
    ({"timezone": "Mars/Olympus"}, "Invalid timezone"),
    (
        {"temperature_unit": "kelvin"},
        "Cannot initialize TemperatureUnit from invalid String value kelvin for key "
        "temperature_unit",
    ),
    (
        {"timeformat": "rfc822"},
        "Cannot initialize Timeformat from invalid String value rfc822 for key timeformat",
    ),
    (
        {"models": "gfs_seamless"},
        "Cannot initialize MultiDomains from invalid String value gfs_seamless for key models",
    ),
    ({"daily": "temperature_2m_max"}, "Timezone is required"),
]


@pytest.mark.parametrize(("changes", "reason"), BAD_PARAMETERS)
async def test_bad_parameters_get_the_error_reason_body(
    client: Client, sandbox: Sandbox, changes: dict[str, str | None], reason: str
) -> None:
    params = day(hourly="temperature_2m")
    for key, value in changes.items():
        if value is None:
            params.pop(key)
        else:
            params[key] = value
    status, body = await get(client, params)
    assert status == 400
    today = sandbox.clock.now().date().isoformat()
    assert body == {"error": True, "reason": reason.format(today=today)}


async def test_injected_faults_keep_the_error_body(client: Client) -> None:
    await client.post(
        "/_sandbox/faults",
        json={"provider": "open_meteo", "endpoint": "GET /archive", "status": 502, "count": 1},
    )
    status, body = await get(client, day(hourly="temperature_2m"))
    assert status == 502
    assert body == {"error": True, "reason": "Bad Gateway"}
    status, _ = await get(client, day(hourly="temperature_2m"))
    assert status == 200


async def test_midnight_sun_and_polar_night(client: Client) -> None:
    params = {
        "start_date": "2022-06-21",
        "end_date": "2022-06-21",
        "timezone": "Europe/Oslo",
        "daily": "sunrise,sunset,daylight_duration",
    }
    _, north = await get(client, {**params, "latitude": "78.22", "longitude": "15.65"})
    assert north["daily"]["sunrise"] == ["2022-06-21T00:00"]
    assert north["daily"]["sunset"] == ["2022-06-22T00:00"]
    assert north["daily"]["daylight_duration"] == [86400.0]
    _, south = await get(client, {**params, "latitude": "-78.0", "longitude": "166.0"})
    assert south["daily"]["daylight_duration"] == [0.0]
    assert south["daily"]["sunrise"] == south["daily"]["sunset"]
