"""The pure parts of the sync-worker's Strava client: usage headers, the wait after a 429,
the wire model's dates, time zones and exact ids, and the error mapping table."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sync_worker.providers import TokenRejectedError, token_fingerprint
from sync_worker.providers.strava import (
    Activity,
    StravaUsage,
    UsageWindow,
    iana_timezone,
    parse_local_datetime,
    parse_usage,
    raise_for_answer,
    retry_after_seconds,
)
from syncplane_common.contracts import token_fingerprint as token_service_fingerprint
from syncplane_common.errors import (
    NotFoundError,
    PermanentError,
    ReauthRequiredError,
    RetryableError,
    SyncplaneError,
)

from tests.provider_payloads import PAYLOADS

pytestmark = pytest.mark.unit

PAYLOAD = PAYLOADS / "strava_activity_summary.json"
NOW = datetime(2026, 11, 22, 10, 7, 30, tzinfo=UTC)
HEADERS = {
    "X-RateLimit-Limit": "200,2000",
    "X-RateLimit-Usage": "12,340",
    "X-ReadRateLimit-Limit": "100,1000",
    "X-ReadRateLimit-Usage": "7,300",
}


def _examples() -> list[dict[str, Any]]:
    if PAYLOAD.exists():
        loaded: list[dict[str, Any]] = json.loads(PAYLOAD.read_text())
        return loaded
    pytest.skip("shared payloads not present")


# -- usage headers -------------------------------------------------------------------------


def test_usage_parses_all_four_headers() -> None:
    usage = parse_usage(HEADERS)
    assert usage == StravaUsage(
        overall=UsageWindow(200, 2000, 12, 340), read=UsageWindow(100, 1000, 7, 300)
    )
    assert usage is not None
    assert not usage.quarter_spent
    assert not usage.daily_spent


def test_usage_header_names_match_in_any_case() -> None:
    lower = {k.lower(): v for k, v in HEADERS.items()}
    doc_spelling = {k.replace("RateLimit", "Ratelimit"): v for k, v in HEADERS.items()}
    assert parse_usage(lower) == parse_usage(HEADERS) == parse_usage(doc_spelling)


def test_usage_absent_or_unreadable() -> None:
    assert parse_usage({}) is None
    assert parse_usage({"X-RateLimit-Limit": "200", "X-RateLimit-Usage": "1,2"}) is None
    only_read = parse_usage({"x-readratelimit-limit": "100,1000", "x-readratelimit-usage": "a,b"})
    assert only_read is None
    partial = parse_usage({"x-ratelimit-limit": "200,2000", "x-ratelimit-usage": "200,1000"})
    assert partial == StravaUsage(overall=UsageWindow(200, 2000, 200, 1000), read=None)
    assert partial.quarter_spent
    assert not partial.daily_spent


# -- the wait after a 429 ------------------------------------------------------------------


def _usage(used_daily: int, limit_daily: int = 1000) -> StravaUsage:
    return StravaUsage(
        overall=UsageWindow(200, 2000, 150, used_daily),
        read=UsageWindow(100, limit_daily, 101, used_daily),
    )


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 11, 22, 10, 14, 59, tzinfo=UTC), 1.0),
        (datetime(2026, 11, 22, 10, 15, 0, tzinfo=UTC), 900.0),
        (datetime(2026, 11, 22, 10, 15, 0, 500_000, tzinfo=UTC), 899.5),
        (datetime(2026, 11, 22, 10, 59, 59, tzinfo=UTC), 1.0),
        (datetime(2026, 11, 22, 23, 50, 0, tzinfo=UTC), 600.0),
    ],
)
def test_retry_after_is_the_next_quarter_hour(now: datetime, expected: float) -> None:
    assert retry_after_seconds(_usage(used_daily=500), now) == expected
    assert retry_after_seconds(None, now) == expected


def test_retry_after_is_midnight_utc_when_the_daily_count_is_spent() -> None:
    now = datetime(2026, 11, 22, 10, 14, 59, tzinfo=UTC)
    assert retry_after_seconds(_usage(used_daily=1000), now) == 13 * 3600 + 45 * 60 + 1
    assert retry_after_seconds(_usage(used_daily=1001), now) == 13 * 3600 + 45 * 60 + 1
    # An aware non-UTC clock still counts to 00:00 UTC.
    from zoneinfo import ZoneInfo

    local = now.astimezone(ZoneInfo("America/Los_Angeles"))
    assert retry_after_seconds(_usage(used_daily=1000), local) == 13 * 3600 + 45 * 60 + 1


# -- the wire model ------------------------------------------------------------------------


def test_timezone_name_is_taken_out_of_stravas_label() -> None:
    assert iana_timezone("(GMT-08:00) America/Los_Angeles") == "America/Los_Angeles"
    assert iana_timezone("(GMT+05:30) Asia/Kolkata") == "Asia/Kolkata"
    assert iana_timezone("(GMT+00:00) Etc/UTC") == "Etc/UTC"
    assert iana_timezone("Europe/Paris") == "Europe/Paris"
    assert iana_timezone("(GMT+01:00)") is None
    assert iana_timezone("") is None
    assert iana_timezone(None) is None


def test_local_start_is_wall_clock_despite_its_z() -> None:
    assert parse_local_datetime("2018-05-02T05:15:09Z") == datetime(2018, 5, 2, 5, 15, 9)
    assert parse_local_datetime("2018-05-02T05:15:09+00:00") == datetime(2018, 5, 2, 5, 15, 9)
    assert parse_local_datetime("2018-05-02T05:15:09").tzinfo is None


def test_documented_example_parses_into_typed_fields() -> None:
    first = _examples()[0]
    activity = Activity.from_raw(first)
    assert activity.id == 154504250376823
    assert activity.athlete_id == 134815
    assert activity.name == "Happy Friday"
    assert activity.sport_type == "MountainBikeRide"
    assert activity.type == "Ride"
    assert activity.distance == 24931.4
    assert (activity.moving_time, activity.elapsed_time) == (4500, 4500)
    assert activity.start_date == datetime(2018, 5, 2, 12, 15, 9, tzinfo=UTC)
    assert activity.start_date_local == datetime(2018, 5, 2, 5, 15, 9)
    assert activity.start_date_local.tzinfo is None
    assert activity.timezone == "America/Los_Angeles"
    assert activity.utc_offset == -25200
    assert activity.start_latlng is None
    assert activity.end_latlng is None
    assert (activity.average_speed, activity.max_speed) == (5.54, 11.0)
    assert (activity.average_heartrate, activity.max_heartrate) == (140.3, 178.0)
    assert activity.total_elevation_gain == 0
    assert activity.trainer
    assert not activity.commute
    assert not activity.manual
    assert not activity.private
    assert activity.raw == first


def test_big_ids_round_trip_exactly() -> None:
    body = PAYLOAD.read_bytes() if PAYLOAD.exists() else b""
    if not body:
        pytest.skip("shared payloads not present")
    activity = Activity.from_raw(json.loads(body)[0])
    assert activity.upload_id == 987654321234567891234  # past int64 and double precision
    assert activity.upload_id > 2**63
    assert activity.id == 154504250376823
    # The raw payload re-encodes to the same digits, ready for jsonb.
    assert '"upload_id": 987654321234567891234' in json.dumps(activity.raw)
    assert json.loads(json.dumps(activity.raw)) == json.loads(body)[0]


def test_an_id_that_went_through_a_float_is_refused() -> None:
    raw = {**_examples()[0], "id": 154504250376823.0}
    with pytest.raises(ValueError):
        Activity.from_raw(raw)
    raw = {**_examples()[0], "upload_id": 9.87654321234567e20}
    with pytest.raises(ValueError):
        Activity.from_raw(raw)


def test_sport_type_falls_back_to_type_and_latlng_empty_is_none() -> None:
    raw = {**_examples()[0], "start_latlng": [], "end_latlng": [37.77, -122.41]}
    del raw["sport_type"]
    activity = Activity.from_raw(raw)
    assert activity.sport_type == "Ride"
    assert activity.start_latlng is None
    assert activity.end_latlng == (37.77, -122.41)


# -- error mapping -------------------------------------------------------------------------


def _body(resource: str, field: str, code: str, message: str = "Error") -> dict[str, Any]:
    return {"message": message, "errors": [{"resource": resource, "field": field, "code": code}]}


SPENT_DAILY = {
    "x-ratelimit-limit": "200,2000",
    "x-ratelimit-usage": "150,1800",
    "x-readratelimit-limit": "100,1000",
    "x-readratelimit-usage": "80,1001",
}
SPENT_QUARTER = {**HEADERS, "X-ReadRateLimit-Usage": "101,300"}
RATE_BODY = _body("Application", "rate limit", "exceeded", "Rate Limit Exceeded")


@pytest.mark.parametrize(
    ("status", "body", "headers", "operation", "expected", "retry_after"),
    [
        (401, _body("Athlete", "access_token", "invalid"), {}, "list", TokenRejectedError, 0.0),
        (401, None, {}, "get", TokenRejectedError, 0.0),
        (
            401,
            _body("AccessToken", "activity:read_permission", "missing"),
            {},
            "list",
            ReauthRequiredError,
            None,
        ),
        (429, RATE_BODY, SPENT_QUARTER, "list", RetryableError, 7 * 60 + 30),
        (429, RATE_BODY, {}, "get", RetryableError, 7 * 60 + 30),
        (429, RATE_BODY, SPENT_DAILY, "list", RetryableError, 13 * 3600 + 52 * 60 + 30),
        (429, RATE_BODY, {"Retry-After": "42"}, "list", RetryableError, 42.0),
        (500, {"message": "Internal Server Error", "errors": []}, {}, "list", RetryableError, None),
        (503, None, {"retry-after": "5"}, "get", RetryableError, 5.0),
        (404, _body("Activity", "id", "invalid"), {}, "get", NotFoundError, None),
        (404, _body("Athlete", "id", "invalid"), {}, "list", PermanentError, None),
        (400, _body("Application", "per_page", "invalid"), {}, "list", PermanentError, None),
        (403, "not json at all", {}, "get", PermanentError, None),
    ],
)
def test_error_mapping_table(
    status: int,
    body: Any,
    headers: dict[str, str],
    operation: Any,
    expected: type[SyncplaneError],
    retry_after: float | None,
) -> None:
    token = "secret-access-token"
    with pytest.raises(SyncplaneError) as caught:
        raise_for_answer(status, body, headers, operation=operation, token=token, now=NOW)
    err = caught.value
    assert type(err) is expected
    assert token not in str(err)
    assert token not in json.dumps(err.details)
    if isinstance(err, RetryableError):
        assert err.retry_after == retry_after
    if isinstance(err, TokenRejectedError):
        assert err.fingerprint == token_fingerprint(token)
    if isinstance(body, dict) and status != 401:
        assert err.details["errors"] == body["errors"]


def test_fingerprint_is_the_one_token_service_compares() -> None:
    assert token_fingerprint("abc") == token_service_fingerprint("abc")
