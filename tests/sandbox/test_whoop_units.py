"""Plain tests of the WHOOP emulation's pure decisions (PROVIDERS.md §7.2-§7.4): which
nights to fill, which window leads the rate-limit headers, the pagination cursor, the
webhook signature and the wire formats."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from provider_sandbox.providers._whoop_limits import RateLimiter
from provider_sandbox.providers._whoop_records import Record, Series
from provider_sandbox.providers._whoop_settings import WhoopSettings
from provider_sandbox.providers._whoop_values import (
    iso_ms,
    nights_to_fill,
    parse_instant,
    tz_designator,
)
from provider_sandbox.providers._whoop_webhooks import signature
from provider_sandbox.providers.whoop import ApiError, decode_token, encode_token

pytestmark = pytest.mark.service


def test_nights_to_fill_keeps_series_contiguous() -> None:
    assert nights_to_fill(set(), 100, 3) == [100, 99, 98]
    # Newer nights first (oldest of them first), then back past the filled ones.
    assert nights_to_fill({97, 98}, 100, 4) == [99, 100, 96, 95]
    # A hole is filled before going further back.
    assert nights_to_fill({95, 97, 100}, 100, 2) == [99, 98]
    assert nights_to_fill({100}, 99, 1) == [99]


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_limiter_names_the_nearest_window_and_counts_only_accepted() -> None:
    clock = FakeClock(86_400 * 10 + 30.5)
    settings = WhoopSettings(rate_limit_per_minute=3, rate_limit_per_day=4)
    limiter = RateLimiter(clock, settings)
    seen = [limiter.hit("app") for _ in range(4)]
    assert [ok for ok, _ in seen] == [True, True, True, False]
    assert seen[0][1] == {
        "X-RateLimit-Limit": "3, 3;window=60, 4;window=86400",
        "X-RateLimit-Remaining": "2",
        "X-RateLimit-Reset": "30",
    }
    clock.now += 30
    ok, headers = limiter.hit("app")
    assert ok
    # One left in the day, three in the new minute: the day leads.
    assert headers["X-RateLimit-Limit"].startswith("4, ")
    assert headers["X-RateLimit-Remaining"] == "0"
    ok, headers = limiter.hit("app")
    assert not ok
    assert headers["X-RateLimit-Reset"] == str(86_400 - 60)
    assert limiter.hit("other-app")[0]


def test_cursor_round_trips_and_refuses_garbage() -> None:
    token = encode_token((1_650_767_144_774, "ecfc6a15-4661-442f-a9a4-f160dd7afae8"))
    assert "=" not in token
    assert decode_token(token) == (1_650_767_144_774, "ecfc6a15-4661-442f-a9a4-f160dd7afae8")
    # WHOOP's documented example token decodes the same way: "123:123123".
    assert decode_token("MTIzOjEyMzEyMw") == (123, "123123")
    for garbage in ("@@@", "bm9jb2xvbg", base64.b64encode(b"x:y").decode()):
        with pytest.raises(ApiError):
            decode_token(garbage)


def test_signature_is_base64_hmac_of_timestamp_then_body() -> None:
    body = b'{"user_id":456,"id":"550e8400-e29b-41d4-a716-446655440000","type":"sleep.updated"}'
    expected = hmac.new(b"secret", b"1700000000000" + body, hashlib.sha256).digest()
    assert signature("secret", "1700000000000", body) == base64.b64encode(expected).decode()


def test_wire_formats() -> None:
    assert iso_ms(1_650_767_144_774) == "2022-04-24T02:25:44.774Z"
    assert parse_instant("2022-04-24T02:25:44.774Z") == 1_650_767_144_774
    assert parse_instant("2022-04-23T21:25:44.774-05:00") == 1_650_767_144_774
    assert parse_instant("2022-04-24") is None
    assert parse_instant("2022-04-24T02:25:44") is None
    assert [tz_designator(m) for m in (0, -300, 330)] == ["Z", "-05:00", "+05:30"]


def test_series_pages_newest_first_with_exclusive_cursor() -> None:
    series = Series()
    for start in (10, 20, 20, 30, 40):
        key = f"k{start}-{len(series.keys)}"
        series.add(Record("workout", key, 1, start, start + 5, 0, 0, "Z"))
    page, after = series.page(None, 100, None, 2)
    assert [r.start_ms for r in page] == [40, 30]
    assert after is not None
    page, after = series.page(None, 100, after, 2)
    assert [r.start_ms for r in page] == [20, 20]
    page, after = series.page(None, 100, after, 2)
    assert [r.start_ms for r in page] == [10]
    assert after is None
    page, _ = series.page(20, 40, None, 25)
    assert [r.start_ms for r in page] == [30, 20, 20]
