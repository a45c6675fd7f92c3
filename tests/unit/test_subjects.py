"""Subject builders, NATS wildcard matching, and the lookups over streams and consumers."""

from __future__ import annotations

import pytest
from syncplane_common import subjects

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("built", "expected"),
    [
        (subjects.webhook_received("strava", "activity"), "webhook.received.strava.activity"),
        (subjects.webhook_received("whoop", "recovery"), "webhook.received.whoop.recovery"),
        (subjects.sync_requested("google_fit"), "sync.requested.google_fit"),
        (subjects.connection_event("connected", "strava"), "connection.connected.strava"),
        (
            subjects.connection_event("reauth_required", "whoop"),
            "connection.reauth_required.whoop",
        ),
        (subjects.sync_event("progress", "strava"), "sync.progress.strava"),
        (subjects.sync_event("completed", "whoop"), "sync.completed.whoop"),
        (subjects.sync_event("failed", "google_fit"), "sync.failed.google_fit"),
        (subjects.records_changed("whoop", "sleep"), "records.changed.whoop.sleep"),
        (subjects.dead_letter("sync.requested.strava"), "dlq.sync.requested.strava"),
    ],
)
def test_builders(built: str, expected: str) -> None:
    assert built == expected


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("a.b.c", "a.b.c", True),
        ("a.b.c", "a.b", False),
        ("a.b", "a.b.c", False),
        ("a.b.c", "a.b.d", False),
        ("a.*.c", "a.b.c", True),
        ("a.*", "a.b", True),
        # * is exactly one token
        ("a.*", "a", False),
        ("a.*", "a.b.c", False),
        ("*", "a", True),
        # > is one or more trailing tokens, never zero
        ("a.>", "a.b", True),
        ("a.>", "a.b.c.d", True),
        ("a.>", "a", False),
        (">", "a", True),
        (">", "a.b", True),
        ("a.*.>", "a.b", False),
        ("a.*.>", "a.b.c", True),
        ("webhook.received.>", "webhook.received.strava.activity", True),
        ("webhook.received.whoop.>", "webhook.received.strava.activity", False),
        ("connection.*.google_calendar", "connection.revoked.google_calendar", True),
        ("connection.*.google_calendar", "connection.revoked.strava", False),
    ],
)
def test_subject_matches(pattern: str, subject: str, expected: bool) -> None:
    assert subjects.subject_matches(pattern, subject) is expected


@pytest.mark.parametrize(
    ("subject", "stream"),
    [
        ("webhook.received.strava.activity", subjects.WEBHOOKS),
        ("sync.requested.strava", subjects.SYNC),
        ("sync.progress.strava", subjects.EVENTS),
        ("connection.revoked.whoop", subjects.EVENTS),
        ("records.changed.whoop.sleep", subjects.EVENTS),
        (subjects.CALENDAR_LOCAL_CHANGED, subjects.CALENDAR),
        (subjects.CALENDAR_CONFLICT_DETECTED, subjects.CALENDAR),
        ("dlq.webhook.received.strava.activity", subjects.DLQ),
    ],
)
def test_stream_for(subject: str, stream: subjects.StreamDef) -> None:
    assert subjects.stream_for(subject) is stream


@pytest.mark.parametrize(
    "subject",
    ["token.get", "sync.status.get", "calendar.events.list", "webhook.received", "unknown"],
)
def test_stream_for_refuses_subjects_no_stream_captures(subject: str) -> None:
    with pytest.raises(LookupError, match="no stream captures"):
        subjects.stream_for(subject)


def test_original_of_dead_letter() -> None:
    original = "webhook.received.strava.activity"
    assert subjects.original_of_dead_letter(subjects.dead_letter(original)) == original


@pytest.mark.parametrize("subject", ["webhook.received.strava.activity", "dlqx.a", "dlq"])
def test_original_of_dead_letter_refuses_other_subjects(subject: str) -> None:
    with pytest.raises(ValueError, match="not a dead-letter subject"):
        subjects.original_of_dead_letter(subject)


def test_consumer_and_service_lookups() -> None:
    assert subjects.consumer("sync-worker-requests").stream == "SYNC"
    assert subjects.service_channels("token-service").replies == (
        subjects.TOKEN_GET,
        subjects.TOKEN_EXCHANGE,
        subjects.TOKEN_REVOKE,
        subjects.CONNECTIONS_LIST,
        subjects.STRAVA_SUBSCRIPTION_ENSURE,
        subjects.CONNECTIONS_STATS,
    )
    with pytest.raises(LookupError):
        subjects.consumer("nobody")
    with pytest.raises(LookupError):
        subjects.service_channels("nobody")


def test_names_are_unique() -> None:
    for names in (
        [s.name for s in subjects.STREAMS],
        [c.durable for c in subjects.CONSUMERS],
        [b.name for b in subjects.BUCKETS],
        [s.service for s in subjects.SERVICES],
    ):
        assert len(names) == len(set(names)), names


def test_every_consumer_belongs_to_the_service_that_binds_it() -> None:
    for item in subjects.CONSUMERS:
        assert item.durable in subjects.service_channels(item.service).consumes, item.durable
