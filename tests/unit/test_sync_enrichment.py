"""Enrichment building blocks without I/O: every circuit-breaker transition, the TTL cache,
weather keys, call planning, payload parsing and error classification (ManualClock)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sync_worker.enrichment import BreakerState, CircuitBreaker, TtlCache, weather_key
from sync_worker.enrichment.geocoding import Place, parse_place
from sync_worker.enrichment.geocoding import classify as classify_geo
from sync_worker.enrichment.weather import classify, parse_hours, plan_calls
from syncplane_common.clock import ManualClock
from syncplane_common.errors import PermanentError, RetryableError

pytestmark = pytest.mark.unit


def breaker(threshold: int = 3, cooldown: float = 60.0) -> tuple[CircuitBreaker, ManualClock]:
    clock = ManualClock()
    return CircuitBreaker(threshold, cooldown, clock), clock


def state(b: CircuitBreaker) -> BreakerState:
    # A call, not the attribute: mypy would narrow the property across clock moves.
    return b.state


# -- circuit breaker -------------------------------------------------------------------------


def test_breaker_starts_closed_and_allows() -> None:
    b, _ = breaker()
    assert state(b) is BreakerState.CLOSED
    assert b.allow()
    assert b.allow()


def test_closed_stays_closed_below_threshold_and_success_resets_count() -> None:
    b, _ = breaker(threshold=3)
    b.record_failure()
    b.record_failure()
    assert state(b) is BreakerState.CLOSED
    assert b.consecutive_failures == 2
    b.record_success()
    b.record_failure()
    b.record_failure()
    assert state(b) is BreakerState.CLOSED  # not consecutive: the success reset the count


def test_closed_opens_after_threshold_consecutive_failures() -> None:
    b, _ = breaker(threshold=3)
    for _ in range(3):
        b.record_failure()
    assert state(b) is BreakerState.OPEN
    assert not b.allow()


def test_open_refuses_until_cooldown_then_half_open() -> None:
    b, clock = breaker(threshold=1, cooldown=60)
    b.record_failure()
    clock.advance(59.9)
    assert state(b) is BreakerState.OPEN
    assert not b.allow()
    clock.advance(0.1)
    assert state(b) is BreakerState.HALF_OPEN


def test_half_open_admits_exactly_one_trial() -> None:
    b, clock = breaker(threshold=1, cooldown=10)
    b.record_failure()
    clock.advance(10)
    assert b.allow()
    assert not b.allow()  # the trial is in flight
    assert state(b) is BreakerState.HALF_OPEN


def test_half_open_success_closes() -> None:
    b, clock = breaker(threshold=2, cooldown=10)
    b.record_failure()
    b.record_failure()
    clock.advance(10)
    assert b.allow()
    b.record_success()
    assert state(b) is BreakerState.CLOSED
    assert b.consecutive_failures == 0
    assert b.allow()
    assert b.allow()


def test_half_open_failure_reopens_with_a_fresh_cooldown() -> None:
    b, clock = breaker(threshold=2, cooldown=10)
    b.record_failure()
    b.record_failure()
    clock.advance(15)
    assert b.allow()
    b.record_failure()  # one failed trial is enough, whatever the threshold
    assert state(b) is BreakerState.OPEN
    assert not b.allow()
    clock.advance(9)
    assert state(b) is BreakerState.OPEN
    clock.advance(1)
    assert state(b) is BreakerState.HALF_OPEN
    assert b.allow()


def test_breaker_gauge_values_and_bad_arguments() -> None:
    assert [s.gauge for s in BreakerState] == [0, 1, 2]
    with pytest.raises(ValueError):
        CircuitBreaker(0, 1, ManualClock())
    with pytest.raises(ValueError):
        CircuitBreaker(1, -1, ManualClock())


# -- cache -----------------------------------------------------------------------------------


def test_ttl_cache_expires_on_the_clock() -> None:
    clock = ManualClock()
    cache: TtlCache[str, int] = TtlCache(clock, ttl_seconds=5)
    cache.put("a", 1)
    clock.advance(4.9)
    assert cache.get("a") == 1
    clock.advance(0.1)
    assert cache.get("a") is None
    assert len(cache) == 0
    assert cache.get("missing") is None


def test_ttl_cache_evicts_oldest_write_past_max_entries() -> None:
    cache: TtlCache[str, int] = TtlCache(ManualClock(), ttl_seconds=5, max_entries=2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 3)  # rewriting makes "a" the newest
    cache.put("c", 4)
    assert cache.get("b") is None
    assert cache.get("a") == 3
    assert cache.get("c") == 4


# -- weather: keys, planning, parsing, errors ------------------------------------------------


def test_weather_key_rounds_location_and_floors_to_the_utc_hour() -> None:
    at = datetime(2025, 6, 1, 14, 59, 59, tzinfo=UTC)
    assert weather_key(52.51749, 13.40651, at) == (52.52, 13.41, at.replace(minute=0, second=0))
    plus2 = datetime(2025, 6, 1, 16, 30, tzinfo=UTC).astimezone(
        datetime.now(UTC).astimezone().tzinfo
    )
    assert weather_key(0, 0, plus2)[2] == datetime(2025, 6, 1, 16, tzinfo=UTC)
    with pytest.raises(ValueError):
        weather_key(0, 0, datetime(2025, 6, 1))


def test_plan_calls_one_call_for_nearby_points_on_nearby_days() -> None:
    t = datetime(2025, 6, 1, 8, tzinfo=UTC)
    keys = [weather_key(52.5 + i / 1000, 13.4, t + timedelta(days=i % 3)) for i in range(50)]
    calls = plan_calls(keys, max_span_days=14, max_locations=50)
    assert len(calls) == 1
    assert (calls[0].start, calls[0].end) == (date(2025, 6, 1), date(2025, 6, 3))
    assert len(calls[0].locations) == len({(k[0], k[1]) for k in keys})


def test_plan_calls_splits_far_apart_dates_and_large_location_sets() -> None:
    t = datetime(2025, 1, 1, tzinfo=UTC)
    far = [weather_key(1, 1, t), weather_key(1, 1, t + timedelta(days=100))]
    calls = plan_calls(far, max_span_days=14, max_locations=50)
    assert [(c.start, c.end) for c in calls] == [
        (date(2025, 1, 1), date(2025, 1, 1)),
        (date(2025, 4, 11), date(2025, 4, 11)),
    ]
    many = [weather_key(i, i, t) for i in range(7)]
    assert [len(c.locations) for c in plan_calls(many, 14, 3)] == [3, 3, 1]


def test_parse_hours_skips_hours_without_any_value() -> None:
    body = {
        "hourly": {
            "time": [1748736000, 1748739600],
            "temperature_2m": [12.5, None],
            "relative_humidity_2m": [80, None],
            "precipitation": [0.1, None],
            "wind_speed_10m": [5.2, None],
            "weather_code": [3.0, None],
            "cloud_cover": [90, None],
        }
    }
    hours = parse_hours(body)
    assert list(hours) == [datetime(2025, 6, 1, tzinfo=UTC)]
    w = hours[datetime(2025, 6, 1, tzinfo=UTC)]
    assert (w.temperature_c, w.weather_code, w.cloud_cover_pct) == (12.5, 3, 90)


def test_open_meteo_errors_classified_by_what_to_do() -> None:
    now = datetime(2026, 1, 1, 12, 30, 15, tzinfo=UTC)
    bad = classify(400, {"error": True, "reason": "Cannot initialize WeatherVariable"}, now)
    assert isinstance(bad, PermanentError)
    assert isinstance(classify(500, None, now), RetryableError)
    minute = classify(429, {"error": True, "reason": "Minutely API request limit"}, now)
    hour = classify(429, {"error": True, "reason": "Hourly API request limit"}, now)
    day = classify(429, {"error": True, "reason": "Daily API request limit"}, now)
    assert isinstance(minute, RetryableError)
    assert minute.retry_after == 45
    assert isinstance(hour, RetryableError)
    assert hour.retry_after == 29 * 60 + 45
    assert isinstance(day, RetryableError)
    assert day.retry_after == 11 * 3600 + 29 * 60 + 45


# -- geocoding -------------------------------------------------------------------------------


def test_parse_place_prefers_city_then_town_village_municipality() -> None:
    body = {"address": {"village": "V", "town": "T", "state": "S", "country": "C",
                        "country_code": "de"}}  # fmt: skip
    assert parse_place(body) == Place("T", "S", "C", "DE")
    assert parse_place({"address": {"municipality": "M"}}).city == "M"
    assert parse_place({"error": "Unable to geocode"}) == Place(None, None, None, None)
    with pytest.raises(PermanentError):
        parse_place([])


def test_nominatim_errors_classified() -> None:
    assert isinstance(classify_geo(429, "<html>"), RetryableError)
    assert isinstance(classify_geo(503, "<html>"), RetryableError)
    blocked = classify_geo(403, "Access blocked")
    assert isinstance(blocked, PermanentError)
    assert blocked.details["status"] == 403
