"""The gateway's webhook checks as pure functions: Strava handshake and event parsing,
WHOOP signatures (computed here independently, PROVIDERS.md §7.4) and the timestamp
window, Calendar push headers against a registered channel, and the message ids."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from webhook_gateway._webhook_intake import STATUS, Rejected
from webhook_gateway.providers import gcal_push, strava_webhooks, whoop_webhooks
from webhook_gateway.webhooks import subscription_id_of

from tests.provider_payloads import PAYLOADS

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SECRET = "whoop-secret"


def payload(name: str) -> Any:
    return json.loads((PAYLOADS / name).read_text())


def rejected(reason: str, call: Any, *args: Any, **kwargs: Any) -> Rejected:
    with pytest.raises(Rejected) as caught:
        call(*args, **kwargs)
    assert caught.value.reason == reason, caught.value.message
    return caught.value


# -- Strava --------------------------------------------------------------------------------


def test_handshake_echoes_the_challenge_under_its_dotted_name() -> None:
    query = {"hub.mode": "subscribe", "hub.challenge": "abc123", "hub.verify_token": "vt"}
    answer = strava_webhooks.answer_handshake(query, "vt")
    expected = payload("strava_webhook_validation_response.json")
    assert answer.keys() == expected.keys() == {"hub.challenge"}
    assert answer == {"hub.challenge": "abc123"}


@pytest.mark.parametrize(
    ("query", "configured", "reason"),
    [
        ({"hub.mode": "subscribe", "hub.challenge": "c", "hub.verify_token": "no"}, "vt", 403),
        ({"hub.mode": "subscribe", "hub.challenge": "c", "hub.verify_token": ""}, "", 403),
        ({"hub.mode": "unsubscribe", "hub.challenge": "c", "hub.verify_token": "vt"}, "vt", 400),
        ({"hub.mode": "subscribe", "hub.verify_token": "vt"}, "vt", 400),
        ({}, "vt", 400),
    ],
)
def test_handshake_refusals(query: dict[str, str], configured: str, reason: int) -> None:
    with pytest.raises(Rejected) as caught:
        strava_webhooks.answer_handshake(query, configured)
    assert caught.value.status == reason


def test_strava_create_payload_becomes_an_envelope() -> None:
    body = (PAYLOADS / "strava_webhook_create.json").read_bytes()
    event = strava_webhooks.parse_event(body)
    envelope = strava_webhooks.envelope(event, NOW)
    assert envelope.subject == "webhook.received.strava.activity"
    assert envelope.event_id == "strava:333333:activity:1234567890:create:1682391474"
    assert (envelope.object_id, envelope.owner_id, envelope.action) == (
        "1234567890",
        "2222222",
        "create",
    )
    assert envelope.event_time == datetime.fromtimestamp(1682391474, UTC)
    assert envelope.attributes == {"updates": {}, "subscription_id": "333333"}


def test_strava_ids_beyond_2_53_survive_exactly() -> None:
    big = 2**53 + 1  # a float would round this to 2**53
    body = json.dumps(
        {
            **payload("strava_webhook_create.json"),
            "object_id": big,
            "owner_id": 2**62 + 3,
            "subscription_id": 2**40 + 7,
        }
    ).encode()
    envelope = strava_webhooks.envelope(strava_webhooks.parse_event(body), NOW)
    assert envelope.object_id == str(big)
    assert envelope.owner_id == str(2**62 + 3)
    assert f":{big}:" in envelope.event_id
    wire = json.loads(envelope.to_bytes())
    assert wire["object_id"] == str(big)
    assert wire["attributes"]["subscription_id"] == str(2**40 + 7)


def test_strava_deauthorization_is_an_athlete_event() -> None:
    body = json.dumps(
        {
            "object_type": "athlete",
            "object_id": 777,
            "aspect_type": "update",
            "updates": {"authorized": "false"},
            "owner_id": 777,
            "subscription_id": 5,
            "event_time": 1700000000,
        }
    ).encode()
    envelope = strava_webhooks.envelope(strava_webhooks.parse_event(body), NOW)
    assert envelope.subject == "webhook.received.strava.athlete"
    assert envelope.attributes["updates"] == {"authorized": "false"}


@pytest.mark.parametrize(
    "change",
    [
        {"object_id": 1.0},  # never through a float
        {"object_id": "123"},
        {"object_type": "gear"},
        {"aspect_type": "upsert"},
        {"event_time": -1},
        {"event_time": 10**20},
        {"subscription_id": None},
    ],
)
def test_strava_bad_fields_are_malformed(change: dict[str, Any]) -> None:
    body = json.dumps({**payload("strava_webhook_create.json"), **change}).encode()
    err = rejected("malformed", strava_webhooks.parse_event, body)
    assert next(iter(change)) in err.message
    assert err.status == 400


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'{"object_type": "activity"}'])
def test_strava_unparsable_bodies_are_malformed(body: bytes) -> None:
    rejected("malformed", strava_webhooks.parse_event, body)


def test_message_id_is_the_same_for_a_retry_and_differs_per_event() -> None:
    base = payload("strava_webhook_create.json")
    first = strava_webhooks.parse_event(json.dumps(base).encode())
    again = strava_webhooks.parse_event(json.dumps(dict(reversed(base.items()))).encode())
    later = strava_webhooks.parse_event(
        json.dumps({**base, "event_time": base["event_time"] + 1}).encode()
    )
    deleted = strava_webhooks.parse_event(json.dumps({**base, "aspect_type": "delete"}).encode())
    assert first.message_id == again.message_id
    assert len({first.message_id, later.message_id, deleted.message_id}) == 3


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"333333", "333333"),
        (b' "42" ', "42"),
        (b'{"id": 42}', "42"),
        (b'{"subscription_id": 43, "callback_url": "x"}', "43"),
        (b"", None),
        (None, None),
        (b"{broken", None),
    ],
)
def test_recorded_subscription_id(raw: bytes | None, expected: str | None) -> None:
    assert subscription_id_of(raw) == expected


# -- WHOOP ---------------------------------------------------------------------------------


def sign(timestamp: str, body: bytes, secret: str = SECRET) -> str:
    """PROVIDERS.md §7.4, written out again: base64(HMAC-SHA256(secret, ts + body))."""
    return base64.b64encode(
        hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    ).decode()


def stamp(at: datetime) -> str:
    return str(int(at.timestamp() * 1000))


def signed(body: bytes, at: datetime = NOW, secret: str = SECRET) -> dict[str, str]:
    ts = stamp(at)
    return {
        "X-WHOOP-Signature": sign(ts, body, secret),
        "X-WHOOP-Signature-Timestamp": ts,
    }


def verify(headers: dict[str, str], body: bytes, secret: str = SECRET) -> None:
    whoop_webhooks.verify(secret, headers, body, now=NOW, tolerance_seconds=300)


WHOOP_BODY = (PAYLOADS / "whoop_webhook.json").read_bytes()


def test_whoop_signature_over_ms_timestamp_and_raw_body_verifies() -> None:
    verify(signed(WHOOP_BODY), WHOOP_BODY)
    # A byte-for-byte different body (same JSON meaning) is a different message.
    respaced = json.dumps(json.loads(WHOOP_BODY)).encode()
    assert respaced != WHOOP_BODY
    assert rejected("signature", verify, signed(WHOOP_BODY), respaced).status == 401


def test_whoop_signature_with_a_separator_or_another_key_fails() -> None:
    ts = stamp(NOW)
    dotted = {"X-WHOOP-Signature": sign(ts + ".", WHOOP_BODY), "X-WHOOP-Signature-Timestamp": ts}
    rejected("signature", verify, dotted, WHOOP_BODY)
    rejected("signature", verify, signed(WHOOP_BODY, secret="other"), WHOOP_BODY)
    hexed = {
        "X-WHOOP-Signature": hmac.new(
            SECRET.encode(), ts.encode() + WHOOP_BODY, hashlib.sha256
        ).hexdigest(),
        "X-WHOOP-Signature-Timestamp": ts,
    }
    rejected("signature", verify, hexed, WHOOP_BODY)


def test_whoop_missing_headers_or_secret() -> None:
    headers = signed(WHOOP_BODY)
    for name in headers:
        rejected("signature", verify, {k: v for k, v in headers.items() if k != name}, WHOOP_BODY)
    rejected("signature", verify, signed(WHOOP_BODY, secret=""), WHOOP_BODY, secret="")


@pytest.mark.parametrize(
    ("offset", "ok"),
    [(0, True), (-299, True), (299, True), (-301, False), (301, False), (-3600, False)],
)
def test_whoop_timestamp_window(offset: int, ok: bool) -> None:
    headers = signed(WHOOP_BODY, NOW + timedelta(seconds=offset))
    if ok:
        verify(headers, WHOOP_BODY)
    else:
        assert rejected("timestamp", verify, headers, WHOOP_BODY).status == 401


def test_whoop_timestamp_in_seconds_is_outside_the_window() -> None:
    ts = str(int(NOW.timestamp()))
    headers = {"X-WHOOP-Signature": sign(ts, WHOOP_BODY), "X-WHOOP-Signature-Timestamp": ts}
    rejected("timestamp", verify, headers, WHOOP_BODY)
    for odd in ("1.7e12", "-1", "9" * 40):
        headers = {"X-WHOOP-Signature": sign(odd, WHOOP_BODY), "X-WHOOP-Signature-Timestamp": odd}
        rejected("timestamp", verify, headers, WHOOP_BODY)


def test_whoop_payload_becomes_an_envelope() -> None:
    event = whoop_webhooks.parse_event(WHOOP_BODY)
    envelope = whoop_webhooks.envelope(event, NOW)
    assert envelope.subject == "webhook.received.whoop.sleep"
    assert envelope.event_id == (
        "whoop:sleep.updated:550e8400-e29b-41d4-a716-446655440000"
        ":e369c784-5100-49e8-8098-75d35c47b31b"
    )
    assert (envelope.object_id, envelope.owner_id, envelope.action) == (
        "550e8400-e29b-41d4-a716-446655440000",
        "456",
        "updated",
    )
    assert envelope.attributes == {
        "trace_id": "e369c784-5100-49e8-8098-75d35c47b31b",
        "type": "sleep.updated",
    }


def test_whoop_v1_integer_ids_and_unused_kinds() -> None:
    v1 = whoop_webhooks.parse_event(
        b'{"user_id": 9, "id": 12345, "type": "workout.updated", "trace_id": "t"}'
    )
    assert whoop_webhooks.envelope(v1, NOW).object_id == "12345"
    other = whoop_webhooks.parse_event(
        b'{"user_id": 9, "id": "x", "type": "body_measurement.updated", "trace_id": "t"}'
    )
    assert other.kind not in whoop_webhooks.KINDS


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{}",
        b'{"user_id": "9", "id": "x", "type": "sleep.updated", "trace_id": "t"}',
        b'{"user_id": 9, "id": "x", "type": "sleep", "trace_id": "t"}',
        b'{"user_id": 9, "id": "x", "type": "sleep.updated"}',
        b'{"user_id": 9, "id": 1.5, "type": "sleep.updated", "trace_id": "t"}',
    ],
)
def test_whoop_malformed_bodies(body: bytes) -> None:
    rejected("malformed", whoop_webhooks.parse_event, body)


# -- Google Calendar push ------------------------------------------------------------------

GCAL = payload("gcal_push_notification.json")["headers"]


def channel(**overrides: Any) -> gcal_push.Channel:
    entry = {
        "token": GCAL["X-Goog-Channel-Token"],
        "user_id": "u-1",
        "calendar_id": "primary",
        "resource_id": GCAL["X-Goog-Resource-ID"],
        "expiration": int((NOW + timedelta(days=1)).timestamp() * 1000),
        **overrides,
    }
    parsed = gcal_push.parse_channel(json.dumps(entry).encode())
    assert parsed is not None
    return parsed


def test_gcal_headers_of_the_example_become_an_envelope() -> None:
    push = gcal_push.parse_headers(GCAL)
    assert push.message_id == "gcal:4ba78bf0-6a47-11e2-bcfd-0800200c9a66:10"
    verified = gcal_push.verify(push, channel(), now=NOW)
    envelope = gcal_push.envelope(push, verified, NOW)
    assert envelope.subject == "webhook.received.gcal.events"
    assert envelope.action == "exists"
    assert envelope.attributes == {
        "channel_id": "4ba78bf0-6a47-11e2-bcfd-0800200c9a66",
        "resource_id": "ret08u3rv24htgh289g",
        "message_number": 10,
        "user_id": "u-1",
        "calendar_id": "primary",
    }


@pytest.mark.parametrize(
    "header",
    ["X-Goog-Channel-ID", "X-Goog-Message-Number", "X-Goog-Resource-ID", "X-Goog-Resource-State"],
)
def test_gcal_missing_headers_are_malformed(header: str) -> None:
    rejected("malformed", gcal_push.parse_headers, {k: v for k, v in GCAL.items() if k != header})


def test_gcal_message_number_must_be_a_number() -> None:
    rejected("malformed", gcal_push.parse_headers, {**GCAL, "X-Goog-Message-Number": "ten"})


def test_gcal_verification() -> None:
    push = gcal_push.parse_headers(GCAL)
    assert rejected("unknown_channel", gcal_push.verify, push, None, now=NOW).status == 403
    assert rejected("signature", gcal_push.verify, push, channel(token="x"), now=NOW).status == 401
    no_token = gcal_push.parse_headers({k: v for k, v in GCAL.items() if "Token" not in k})
    rejected("signature", gcal_push.verify, no_token, channel(), now=NOW)
    rejected("signature", gcal_push.verify, no_token, channel(token=""), now=NOW)
    rejected("unknown_channel", gcal_push.verify, push, channel(resource_id="other"), now=NOW)
    expired = int((NOW - timedelta(seconds=1)).timestamp() * 1000)
    rejected("unknown_channel", gcal_push.verify, push, channel(expiration=expired), now=NOW)
    rejected("unknown_channel", gcal_push.verify, push, channel(expiration=str(expired)), now=NOW)
    past_iso = (NOW - timedelta(hours=1)).isoformat()
    rejected("unknown_channel", gcal_push.verify, push, channel(expiration=past_iso), now=NOW)
    # Not yet known resource id, no expiration: the token decides.
    assert gcal_push.verify(push, channel(resource_id=None, expiration=None), now=NOW)


def test_gcal_channel_entries() -> None:
    assert gcal_push.parse_channel(None) is None
    assert gcal_push.parse_channel(b"not json") is None
    assert gcal_push.parse_channel(b'{"token": "t"}') is None
    numeric = gcal_push.parse_channel(b'{"token": "t", "user_id": 7, "calendar_id": "c"}')
    assert numeric is not None
    assert numeric.user_id == "7"


def test_every_reason_has_a_status() -> None:
    assert STATUS == {
        "method": 405,
        "content_type": 415,
        "too_large": 413,
        "malformed": 400,
        "signature": 401,
        "timestamp": 401,
        "unknown_subscription": 403,
        "unknown_channel": 403,
        "bus_unavailable": 503,
    }
