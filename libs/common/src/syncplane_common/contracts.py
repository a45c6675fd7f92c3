"""Message contracts: what services exchange on the subjects of :mod:`subjects`.

Frozen pydantic models with a ``schema_version``; events are named in the past tense,
commands in the imperative. A provider payload is never a contract: the gateway wraps a
verified webhook in :class:`WebhookReceived`, consumers refetch what it points at.
Adding an optional field keeps the version; removing or retyping one bumps it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from syncplane_common import subjects

ProviderName = Literal["strava", "google_fit", "whoop", "google_calendar"]
UserId = Annotated[str, Field(min_length=1, max_length=200)]


class Contract(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # A message from a newer producer must fail loudly (and dead-letter), not be misread.
    schema_version: Literal[1] = 1

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


# -- webhooks ------------------------------------------------------------------------------


class WebhookReceived(Contract):
    """A verified provider notification: what changed, not the data itself."""

    provider: Literal["strava", "whoop", "gcal"]
    kind: str = Field(
        description="activity | athlete | recovery | sleep | workout | cycle | events"
    )
    event_id: str = Field(description="Deterministic id; also the Nats-Msg-Id.")
    object_id: str | None = Field(None, description="Provider id of the changed object.")
    owner_id: str | None = Field(None, description="Provider account id (athlete, WHOOP user).")
    action: str | None = Field(None, description="create | update | delete | sync | exists ...")
    event_time: datetime | None = None
    received_at: datetime
    attributes: dict[str, JsonValue] = Field(default_factory=dict)

    @property
    def subject(self) -> str:
        return subjects.webhook_received(self.provider, self.kind)


# -- sync commands and events --------------------------------------------------------------

SyncKind = Literal["backfill", "incremental", "webhook", "scheduled", "on_demand"]


class SyncRequested(Contract):
    """Command: run a sync session for one user's connection."""

    request_id: str = Field(description="Dedupe id; also the Nats-Msg-Id.")
    user_id: UserId
    provider: ProviderName
    kind: SyncKind
    data_types: tuple[str, ...] = ()
    object_id: str | None = Field(None, description="For webhook work: the one object.")
    action: Literal["fetch", "delete"] | None = None
    since: datetime | None = None
    requested_at: datetime
    priority: Literal["interactive", "background"] = "background"
    mode: Literal["manual", "app_focus", "backfill"] | None = Field(
        None,
        description="What asked for an on-demand sync: app_focus runs only when the last "
        "sync is older than the worker's threshold.",
    )
    session_id: str | None = Field(
        None,
        description="Continue this session (a continuation after a rate-budget wait) "
        "instead of the one the request id names.",
    )
    not_before: datetime | None = Field(
        None, description="Do not start before this instant (the rate window's boundary)."
    )

    @property
    def subject(self) -> str:
        return subjects.sync_requested(self.provider)


class SyncProgress(Contract):
    session_id: str
    user_id: UserId
    provider: ProviderName
    phase: str
    fetched: int = 0
    stored: int = 0
    failed: int = 0
    skipped: int = 0
    estimated_completion: datetime | None = None
    at: datetime


class SyncCompleted(Contract):
    session_id: str
    user_id: UserId
    provider: ProviderName
    kind: SyncKind
    fetched: int
    stored: int
    failed: int
    skipped: int
    completed_at: datetime


class SyncFailed(Contract):
    session_id: str
    user_id: UserId
    provider: ProviderName
    kind: SyncKind
    error: dict[str, JsonValue]
    failed_at: datetime


class RecordsChanged(Contract):
    user_id: UserId
    provider: ProviderName
    data_type: str
    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    at: datetime


# -- connection lifecycle ------------------------------------------------------------------


class ConnectionEvent(Contract):
    user_id: UserId
    provider: ProviderName
    provider_account_id: str | None = None
    scopes: tuple[str, ...] = ()
    reason: str | None = None
    occurred_at: datetime


class ConnectionConnected(ConnectionEvent):
    pass


class ConnectionRevoked(ConnectionEvent):
    pass


class ConnectionReauthRequired(ConnectionEvent):
    pass


# -- calendar ------------------------------------------------------------------------------


class CalendarEventBody(Contract):
    id: str | None = None
    calendar_id: str
    title: str = ""
    description: str = ""
    location: str = ""
    start: str = Field(description="RFC 3339 date-time, or a date when all_day")
    end: str
    all_day: bool = False
    time_zone: str | None = None
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    updated_at: datetime | None = None
    deleted: bool = False


class CalendarLocalChanged(Contract):
    change_id: str
    user_id: UserId
    event: CalendarEventBody
    at: datetime


class CalendarRemoteChanged(Contract):
    change_id: str
    user_id: UserId
    google_event_id: str
    event: CalendarEventBody
    at: datetime


class CalendarConflictDetected(Contract):
    conflict_id: str
    user_id: UserId
    local: CalendarEventBody
    remote: CalendarEventBody
    policy: str
    winner: Literal["local", "remote", "merged"]
    at: datetime


class CalendarPushDisabled(Contract):
    """A calendar's push channel could not be renewed: it is polled until reconnect."""

    user_id: UserId
    calendar_id: str
    reason: str
    poll_interval_seconds: float
    at: datetime


# -- request / reply envelopes -------------------------------------------------------------


ErrorCode = Literal[
    "bad_request",
    "not_found",
    "not_connected",
    "reauth_required",
    "revoked",
    "unavailable",
    "provider_unavailable",
    "conflict",
    "internal",
]


class ErrorReply(Contract):
    """The typed error of any request/reply subject; ``code`` says what the caller does."""

    code: ErrorCode
    message: str
    retry_after: float | None = None


class Reply(Contract):
    """Every reply carries either its payload fields or ``error``."""

    error: ErrorReply | None = None


# -- token.* (token-service) -------------------------------------------------------------


def token_fingerprint(token: str) -> str:
    """sha256 hex of an access token: how ``TokenGet.rejected_token_fingerprint`` names a
    token the provider refused, without the token itself crossing the bus."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenGet(Contract):
    """Command: an access token valid for at least ``min_valid_seconds``."""

    user_id: UserId
    provider: ProviderName
    min_valid_seconds: int = Field(300, ge=0, le=3600)
    force_refresh: bool = False
    rejected_token_fingerprint: str | None = Field(
        None,
        description="sha256 hex of the token the provider refused (401); refresh only "
        "if it is still the stored one.",
    )


class TokenGetReply(Reply):
    access_token: str | None = None
    expires_at: datetime | None = None
    provider_account_id: str | None = None
    scopes: tuple[str, ...] = ()
    refreshed: bool = Field(
        False,
        description="The provider refreshed the token to answer this request (the Google "
        "Fit run counts the refreshes its users needed).",
    )


class TokenExchange(Contract):
    """Command: turn an OAuth authorization code into a stored connection."""

    user_id: UserId
    provider: ProviderName
    code: str = Field(min_length=1, max_length=4096)
    redirect_uri: str
    requested_scopes: tuple[str, ...] = ()
    code_verifier: str | None = None
    state_nonce: str = Field(min_length=8, max_length=200, description="Single-use.")


class TokenExchangeReply(Reply):
    provider_account_id: str | None = None
    scopes: tuple[str, ...] = ()
    reconnected: bool = False


class TokenRevoke(Contract):
    user_id: UserId
    provider: ProviderName
    reason: str = "user_request"


class TokenRevokeReply(Reply):
    revoked: bool = False


class ConnectionView(Contract):
    provider: ProviderName
    status: Literal["active", "reauth_required", "revoked"]
    provider_account_id: str | None
    scopes: tuple[str, ...]
    connected_at: datetime
    updated_at: datetime
    last_refreshed_at: datetime | None = None
    expires_at: datetime | None = None


class ConnectionsList(Contract):
    user_id: UserId


class ConnectionsListReply(Reply):
    connections: tuple[ConnectionView, ...] = ()


# -- calendar.events.* (calendar-sync) -------------------------------------------------------


class CalendarEventsList(Contract):
    """Events of a user, by start time (ascending); ``start``/``end`` bound the range."""

    user_id: UserId
    calendar_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    include_deleted: bool = False
    limit: int | None = Field(None, ge=1, le=1000)


class CalendarEventRef(Contract):
    """``calendar.events.get`` and ``calendar.events.delete``."""

    user_id: UserId
    event_id: str


class CalendarEventCreate(Contract):
    user_id: UserId
    event: CalendarEventBody


class CalendarEventUpdate(Contract):
    """Only the fields to change (those of :class:`CalendarEventBody` but ids and stamps)."""

    user_id: UserId
    event_id: str
    changes: dict[str, JsonValue]


class CalendarEventsQuery(Contract):
    """The smart read of ``/data/google_calendar/events``: the local mirror is the cache."""

    user_id: UserId
    provider: ProviderName = "google_calendar"
    data_type: str = "events"
    start: datetime | None = None
    end: datetime | None = None
    limit: int | None = None
    force_refresh: bool = False


class CalendarEventReply(Reply):
    """One event, flat (the fields of :class:`CalendarEventBody`), or ``error``."""

    id: str | None = None
    calendar_id: str | None = None
    title: str = ""
    description: str = ""
    location: str = ""
    start: str | None = None
    end: str | None = None
    all_day: bool = False
    time_zone: str | None = None
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    updated_at: datetime | None = None
    deleted: bool = False


class CalendarEventsReply(Reply):
    events: tuple[CalendarEventBody, ...] = ()


class CalendarEventsQueryReply(Reply):
    status: str = "success"
    data: tuple[CalendarEventBody, ...] = ()
    metadata: dict[str, JsonValue] = Field(default_factory=dict)


PAYLOADS: dict[str, type[Contract]] = {
    "webhook.received.>": WebhookReceived,
    "sync.requested.>": SyncRequested,
    "sync.progress.>": SyncProgress,
    "sync.completed.>": SyncCompleted,
    "sync.failed.>": SyncFailed,
    "records.changed.>": RecordsChanged,
    "connection.>": ConnectionEvent,
    subjects.CALENDAR_LOCAL_CHANGED: CalendarLocalChanged,
    subjects.CALENDAR_REMOTE_CHANGED: CalendarRemoteChanged,
    subjects.CALENDAR_CONFLICT_DETECTED: CalendarConflictDetected,
    subjects.CALENDAR_PUSH_DISABLED: CalendarPushDisabled,
}


class StravaSubscriptionEnsure(Contract):
    """Command: make sure Strava's one push subscription points at ``callback_url``.

    token-service holds the app credentials Strava wants; Strava then validates the
    callback synchronously against the gateway with ``verify_token``.
    """

    callback_url: str
    verify_token: str = Field(min_length=1)


class StravaSubscriptionEnsureReply(Reply):
    subscription_id: int | None = None
    created: bool = False


# -- data.query, sync.status.get, sync.session.get (sync-worker) ---------------------------


class SyncSessionGet(Contract):
    user_id: UserId
    session_id: str


class SyncSessionReply(Reply):
    """One session as sync-worker keeps it (ARCHITECTURE §4)."""

    session_id: str | None = None
    user_id: str | None = None
    provider: ProviderName | None = None
    kind: SyncKind | None = None
    state: str | None = None
    phase: str | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    pages_done: int = 0
    pages_expected: int | None = None
    estimated_completion: datetime | None = None
    error: ErrorReply | None = None
    session_error: dict[str, JsonValue] | None = None
    retry_count: int = 0
    created_at: datetime | None = None
    started_at: datetime | None = None
    updated_at: datetime | None = None
    finished_at: datetime | None = None


class SyncStatusGet(Contract):
    user_id: UserId
    provider: ProviderName | None = None
    data_type: str | None = None


class DataTypeStatus(Contract):
    provider: ProviderName
    data_type: str
    connection_status: str | None
    sync_status: str
    last_sync_at: datetime | None
    last_attempt_at: datetime | None
    records_synced: int
    time_since_sync_seconds: float | None
    time_since_sync_hours: float | None
    threshold_seconds: float
    threshold_hours: float
    needs_sync: bool
    error_message: str | None
    session_id: str | None


class SyncStatusReply(Reply):
    """Every provider and data type of the user. ``sync_status`` is the same entries as
    the smart-sync design (seeds/004) draws them: provider → data type → entry."""

    user_id: str | None = None
    statuses: tuple[DataTypeStatus, ...] = ()
    sync_status: dict[str, dict[str, DataTypeStatus]] = Field(default_factory=dict)
    check_timestamp: datetime | None = None


class DataQuery(Contract):
    user_id: UserId
    provider: ProviderName
    data_type: str
    start: datetime | None = None
    end: datetime | None = None
    limit: int | None = None
    force_refresh: bool = False


class DataReply(Reply):
    """A smart read (the WHOOP smart-sync design, seeds/004): rows and where they came from."""

    status: Literal["success", "success_with_warning"] | None = None
    data: tuple[dict[str, JsonValue], ...] = ()
    metadata: dict[str, JsonValue] = Field(default_factory=dict)


# -- the admin console's questions (ARCHITECTURE §1 "ops"; asked by the gateway's /admin) ----


class ConnectionsStats(Contract):
    """How many connections token-service holds, by provider and status."""


class ConnectionCount(Contract):
    provider: ProviderName
    status: Literal["active", "reauth_required", "revoked"]
    count: int


class ConnectionsStatsReply(Reply):
    counts: tuple[ConnectionCount, ...] = ()
    total: int = 0


class BackgroundSyncRun(Contract):
    """Command: queue a background sync for every active connection now (the seed's
    ``POST /api/sync/background``); ``quick`` an incremental sync, ``full`` a backfill.
    Users whose last sync is oldest go first; ``max_users`` caps the pass."""

    sync_type: Literal["quick", "full"] = "quick"
    max_users: int | None = Field(None, ge=1, le=100_000)


class BackgroundSyncRunReply(Reply):
    run_id: str | None = None
    queued: int = 0
    by_provider: dict[str, int] = Field(default_factory=dict)


class BudgetsGet(Contract):
    """The shared rate budgets' current windows, as every sync-worker sees them."""


class BudgetWindow(Contract):
    provider: str
    window: str
    seconds: int
    starts_at: datetime
    ends_at: datetime
    limit: int
    reserved: int = Field(description="Calls counted in this window, all priorities.")
    background: int = Field(description="Of which background work (backfills, scheduled).")
    background_limit: int = Field(description="What background work may use of the limit.")


class BudgetsReply(Reply):
    enabled: bool = True
    windows: tuple[BudgetWindow, ...] = ()


class SyncSessionsList(Contract):
    """The most recently updated sync sessions, newest first."""

    limit: int = Field(20, ge=1, le=200)
    user_id: UserId | None = None


class SyncSessionSummary(Contract):
    session_id: str
    user_id: UserId
    provider: ProviderName
    kind: SyncKind
    state: str
    phase: str | None = None
    pages_done: int = 0
    pages_expected: int | None = None
    fetched: int = 0
    stored: int = 0
    failed: int = 0
    skipped: int = 0
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None


class SyncSessionsReply(Reply):
    sessions: tuple[SyncSessionSummary, ...] = ()


class CalendarChannelsList(Contract):
    """Calendars and their push channels, soonest expiry first."""

    limit: int = Field(100, ge=1, le=1000)


class CalendarChannelView(Contract):
    """A calendar's push channel; never its secret token."""

    user_id: UserId
    calendar_id: str
    channel_id: str | None = None
    expires_at: datetime | None = None
    push_enabled: bool = True
    sync_enabled: bool = True
    renew_failures: int = 0
    last_synced_at: datetime | None = None


class CalendarChannelsReply(Reply):
    channels: tuple[CalendarChannelView, ...] = ()


# -- the Google Fit run (sync-worker) ------------------------------------------------------


class FitRunsGet(Contract):
    """Query: the latest Google Fit runs, newest first (the admin console)."""

    limit: int = Field(20, ge=1, le=500)


class FitUserError(Contract):
    """One user a run could not fully sync: ``code`` is the error tree's (e.g.
    ``reauth_required``, ``retryable``); ``failed_days`` the local dates retried next run."""

    user_id: str
    code: str
    message: str
    failed_days: tuple[str, ...] = ()
    user_failed: bool = True


class FitRunSummary(Contract):
    """One run's row: what the run did across every user it claimed."""

    run_id: str
    worker: str
    started_at: datetime
    finished_at: datetime
    duration_ms: int
    users_processed: int
    successful: int
    failed: int
    tokens_refreshed: int
    days_synced: int
    days_failed: int
    sessions_synced: int
    provider_calls: int
    errors: tuple[FitUserError, ...] = ()


class FitRunsReply(Reply):
    runs: tuple[FitRunSummary, ...] = ()


class TimeZoneSet(Contract):
    """Command: the IANA zone a user's days are counted in (Google Fit daily buckets)."""

    user_id: UserId
    time_zone: str = Field(min_length=1, max_length=64, examples=["Europe/Berlin"])


class TimeZoneGet(Contract):
    """Query: the zone a user's Google Fit days are counted in (the default until set)."""

    user_id: UserId


class TimeZoneReply(Reply):
    user_id: str | None = None
    time_zone: str | None = None


# Request / reply subjects: what is asked, and what comes back.
REQUESTS: dict[str, tuple[type[Contract], type[Reply]]] = {
    subjects.TOKEN_GET: (TokenGet, TokenGetReply),
    subjects.TOKEN_EXCHANGE: (TokenExchange, TokenExchangeReply),
    subjects.TOKEN_REVOKE: (TokenRevoke, TokenRevokeReply),
    subjects.CONNECTIONS_LIST: (ConnectionsList, ConnectionsListReply),
    subjects.STRAVA_SUBSCRIPTION_ENSURE: (StravaSubscriptionEnsure, StravaSubscriptionEnsureReply),
    subjects.CALENDAR_EVENTS_LIST: (CalendarEventsList, CalendarEventsReply),
    subjects.CALENDAR_EVENTS_GET: (CalendarEventRef, CalendarEventReply),
    subjects.CALENDAR_EVENTS_CREATE: (CalendarEventCreate, CalendarEventReply),
    subjects.CALENDAR_EVENTS_UPDATE: (CalendarEventUpdate, CalendarEventReply),
    subjects.CALENDAR_EVENTS_DELETE: (CalendarEventRef, CalendarEventReply),
    subjects.CALENDAR_EVENTS_QUERY: (CalendarEventsQuery, CalendarEventsQueryReply),
    subjects.SYNC_SESSION_GET: (SyncSessionGet, SyncSessionReply),
    subjects.SYNC_STATUS_GET: (SyncStatusGet, SyncStatusReply),
    subjects.DATA_QUERY: (DataQuery, DataReply),
    subjects.CONNECTIONS_STATS: (ConnectionsStats, ConnectionsStatsReply),
    subjects.SYNC_BACKGROUND_RUN: (BackgroundSyncRun, BackgroundSyncRunReply),
    subjects.SYNC_BUDGETS_GET: (BudgetsGet, BudgetsReply),
    subjects.SYNC_SESSIONS_LIST: (SyncSessionsList, SyncSessionsReply),
    subjects.CALENDAR_CHANNELS_LIST: (CalendarChannelsList, CalendarChannelsReply),
    subjects.SYNC_FIT_RUNS_GET: (FitRunsGet, FitRunsReply),
    subjects.SYNC_TIME_ZONE_SET: (TimeZoneSet, TimeZoneReply),
    subjects.SYNC_TIME_ZONE_GET: (TimeZoneGet, TimeZoneReply),
}


def contract_for(subject: str) -> type[Contract]:
    for pattern, model in PAYLOADS.items():
        if subjects.subject_matches(pattern, subject) or pattern == subject:
            return model
    raise LookupError(f"no contract for subject {subject!r}")


def json_schema(model: type[Contract]) -> dict[str, Any]:
    return model.model_json_schema(mode="serialization")
