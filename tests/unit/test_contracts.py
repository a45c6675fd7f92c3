"""Message contracts: frozen, strict, versioned, and identical after a trip over the wire."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from syncplane_common import contracts, subjects

pytestmark = pytest.mark.unit

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
EVENT = contracts.CalendarEventBody(
    id="e-1", calendar_id="primary", title="Run", start="2026-01-02", end="2026-01-03", all_day=True
)

SAMPLES: list[contracts.Contract] = [
    contracts.WebhookReceived(
        provider="strava",
        kind="activity",
        event_id="strava:1:update",
        object_id="1",
        owner_id="42",
        action="update",
        event_time=AT,
        received_at=AT,
        attributes={"title": "Morning Run", "private": False, "laps": [1, 2]},
    ),
    contracts.SyncRequested(
        request_id="r-1",
        user_id="u-1",
        provider="whoop",
        kind="webhook",
        data_types=("recovery",),
        object_id="abc",
        action="fetch",
        since=AT,
        requested_at=AT,
        priority="interactive",
    ),
    contracts.SyncProgress(
        session_id="s-1", user_id="u-1", provider="strava", phase="FETCHING", fetched=3, at=AT
    ),
    contracts.SyncCompleted(
        session_id="s-1",
        user_id="u-1",
        provider="strava",
        kind="backfill",
        fetched=3,
        stored=2,
        failed=1,
        skipped=0,
        completed_at=AT,
    ),
    contracts.SyncFailed(
        session_id="s-1",
        user_id="u-1",
        provider="google_fit",
        kind="scheduled",
        error={"code": "retryable", "retry_after": 30.0},
        failed_at=AT,
    ),
    contracts.RecordsChanged(
        user_id="u-1", provider="strava", data_type="activities", added=("1", "2"), at=AT
    ),
    contracts.ConnectionConnected(
        user_id="u-1", provider="google_calendar", scopes=("calendar",), occurred_at=AT
    ),
    contracts.ConnectionReauthRequired(
        user_id="u-1", provider="google_fit", reason="invalid_grant", occurred_at=AT
    ),
    contracts.CalendarLocalChanged(change_id="c-1", user_id="u-1", event=EVENT, at=AT),
    contracts.CalendarRemoteChanged(
        change_id="c-2", user_id="u-1", google_event_id="g-1", event=EVENT, at=AT
    ),
    contracts.CalendarConflictDetected(
        conflict_id="k-1",
        user_id="u-1",
        local=EVENT,
        remote=EVENT.model_copy(update={"title": "Long run"}),
        policy="last_write_wins",
        winner="remote",
        at=AT,
    ),
    contracts.CalendarPushDisabled(
        user_id="u-1",
        calendar_id="primary",
        reason="renewal failed 3 times",
        poll_interval_seconds=300.0,
        at=AT,
    ),
    contracts.ErrorReply(code="unavailable", message="provider down", retry_after=5.0),
    contracts.TokenGet(user_id="u-1", provider="strava", force_refresh=True),
    contracts.TokenGetReply(access_token="a" * 40, expires_at=AT, scopes=("read",)),
    contracts.TokenGetReply(error=contracts.ErrorReply(code="reauth_required", message="x")),
    contracts.TokenExchange(
        user_id="u-1",
        provider="whoop",
        code="c0de",
        redirect_uri="http://127.0.0.1/cb",
        state_nonce="n" * 16,
    ),
    contracts.TokenExchangeReply(provider_account_id="42", scopes=("offline",)),
    contracts.TokenRevoke(user_id="u-1", provider="google_fit"),
    contracts.TokenRevokeReply(revoked=True),
    contracts.ConnectionsList(user_id="u-1"),
    contracts.ConnectionsListReply(
        connections=(
            contracts.ConnectionView(
                provider="strava",
                status="active",
                provider_account_id="134815",
                scopes=("read",),
                connected_at=AT,
                updated_at=AT,
            ),
        )
    ),
]


def ids(sample: contracts.Contract) -> str:
    return type(sample).__name__


@pytest.mark.parametrize("sample", SAMPLES, ids=ids)
def test_round_trips_through_json(sample: contracts.Contract) -> None:
    again = type(sample).model_validate_json(sample.to_bytes())
    assert again == sample
    assert again.to_bytes() == sample.to_bytes()


@pytest.mark.parametrize("sample", SAMPLES, ids=ids)
def test_carries_schema_version_1(sample: contracts.Contract) -> None:
    assert sample.schema_version == 1
    assert b'"schema_version":1' in sample.to_bytes()


@pytest.mark.parametrize("sample", SAMPLES, ids=ids)
def test_is_frozen(sample: contracts.Contract) -> None:
    # mypy already refuses the assignment; this pins the runtime refusal as well.
    with pytest.raises(ValidationError, match="frozen"):
        sample.schema_version = 1  # type: ignore[misc]


@pytest.mark.parametrize("sample", SAMPLES, ids=ids)
def test_refuses_unknown_fields(sample: contracts.Contract) -> None:
    data = {**sample.model_dump(mode="json"), "surprise": 1}
    with pytest.raises(ValidationError, match="surprise"):
        type(sample).model_validate(data)


def test_every_contract_model_has_a_sample() -> None:
    sampled = {type(s) for s in SAMPLES}
    for model in contracts.PAYLOADS.values():
        assert any(issubclass(s, model) for s in sampled), model.__name__


def test_missing_required_field_is_refused() -> None:
    with pytest.raises(ValidationError, match="received_at"):
        contracts.WebhookReceived.model_validate(
            {"provider": "strava", "kind": "activity", "event_id": "x"}
        )


def test_empty_user_id_is_refused() -> None:
    with pytest.raises(ValidationError, match="user_id"):
        contracts.RecordsChanged(user_id="", provider="strava", data_type="activities", at=AT)


def test_subject_of_webhook_and_sync_requested() -> None:
    webhook, request = SAMPLES[0], SAMPLES[1]
    assert isinstance(webhook, contracts.WebhookReceived)
    assert isinstance(request, contracts.SyncRequested)
    assert webhook.subject == "webhook.received.strava.activity"
    assert request.subject == "sync.requested.whoop"


@pytest.mark.parametrize(
    ("subject", "model"),
    [
        (subjects.webhook_received("whoop", "recovery"), contracts.WebhookReceived),
        (subjects.sync_requested("strava"), contracts.SyncRequested),
        (subjects.sync_event("progress", "strava"), contracts.SyncProgress),
        (subjects.sync_event("completed", "strava"), contracts.SyncCompleted),
        (subjects.sync_event("failed", "strava"), contracts.SyncFailed),
        (subjects.records_changed("strava", "activities"), contracts.RecordsChanged),
        (subjects.connection_event("revoked", "whoop"), contracts.ConnectionEvent),
        (subjects.CALENDAR_LOCAL_CHANGED, contracts.CalendarLocalChanged),
        (subjects.CALENDAR_REMOTE_CHANGED, contracts.CalendarRemoteChanged),
        (subjects.CALENDAR_CONFLICT_DETECTED, contracts.CalendarConflictDetected),
    ],
)
def test_contract_for(subject: str, model: type[contracts.Contract]) -> None:
    assert contracts.contract_for(subject) is model


def test_contract_for_unknown_subject() -> None:
    with pytest.raises(LookupError, match=r"token\.get"):
        contracts.contract_for(subjects.TOKEN_GET)


def test_json_schema_forbids_extra_fields() -> None:
    schema = contracts.json_schema(contracts.SyncRequested)
    assert schema["additionalProperties"] is False
    assert "request_id" in schema["required"]


@pytest.mark.parametrize("sample", SAMPLES, ids=ids)
def test_refuses_a_newer_schema_version(sample: contracts.Contract) -> None:
    data = {**sample.model_dump(mode="json"), "schema_version": 2}
    with pytest.raises(ValidationError, match="schema_version"):
        type(sample).model_validate(data)
