"""The app API's own models: path / query / body of each route and what it answers. The
bodies sent to other services are their contracts in ``syncplane_common.contracts``."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, model_validator
from syncplane_common.contracts import (
    CalendarEventBody,
    ConnectionView,
    ProviderName,
    Reply,
    UserId,
)

Id = Annotated[str, Field(min_length=1, max_length=200)]

# What a smart read can ask for (ARCHITECTURE §8).
DATA_TYPES: dict[str, tuple[str, ...]] = {
    "strava": ("activities",),
    "google_fit": ("daily", "sessions"),
    "whoop": ("recovery", "sleep", "cycle", "workout"),
    "google_calendar": ("events",),
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- errors and pass-through ---------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class OwnerReply(Reply):
    """Any owner's reply: ``error`` is read (it decides the status), the rest passes."""

    model_config = ConfigDict(frozen=True, extra="allow")


class OwnerObject(BaseModel):
    """Documented as an object: its fields are the owning service's."""

    model_config = ConfigDict(extra="allow")


# -- paths ---------------------------------------------------------------------------------


class UserPath(Strict):
    user_id: UserId


class UserProviderPath(Strict):
    user_id: UserId
    provider: ProviderName


class SessionPath(Strict):
    user_id: UserId
    session_id: Id


class DataPath(Strict):
    user_id: UserId
    provider: ProviderName
    type: str = Field(description="; ".join(f"{p}: {', '.join(t)}" for p, t in DATA_TYPES.items()))

    @model_validator(mode="after")
    def _known(self) -> DataPath:
        if self.type not in DATA_TYPES[self.provider]:
            raise ValueError(f"{self.provider} has no data type {self.type!r}")
        return self


class EventPath(Strict):
    user_id: UserId
    event_id: Id


# -- connections ---------------------------------------------------------------------------


class ConnectionsReply(BaseModel):
    connections: list[ConnectionView]


class RevokeResult(BaseModel):
    provider: ProviderName
    revoked: bool


# -- sync ----------------------------------------------------------------------------------

SyncMode = Literal["app_focus", "manual", "backfill"]


class SyncBody(Strict):
    mode: SyncMode = Field(
        description="app_focus: sync only if the last sync is older than the freshness "
        "threshold (sync-worker decides); manual: pull-to-refresh, always; backfill: history."
    )
    provider: ProviderName | None = Field(
        None, description="Default: every provider the user has an active connection for."
    )
    data_types: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=16
    )
    since: datetime | None = Field(None, description="backfill: how far back.")


class SessionRef(BaseModel):
    provider: ProviderName
    request_id: str


class SyncAccepted(BaseModel):
    sessions: list[SessionRef]


class StatusQuery(Strict):
    provider: ProviderName | None = None
    data_type: str | None = Field(None, min_length=1, max_length=64)


# -- smart reads ---------------------------------------------------------------------------


class DataQueryParams(Strict):
    start: datetime | None = None
    end: datetime | None = None
    limit: int | None = Field(None, ge=1, le=1000)
    force_refresh: bool = False


class DataReply(OwnerObject):
    """The smart-read answer (the WHOOP smart-sync design's shape)."""

    status: str = Field(description="success | success_with_warning (stale_cache)")
    data: list[JsonValue]
    metadata: dict[str, JsonValue] = Field(
        description="source (cache | <provider>_api | stale_cache), record_count, "
        "last_sync_at (cache, stale_cache) or synced_at (<provider>_api), "
        "time_since_sync_seconds, time_since_sync_hours, threshold_seconds, cached_enough, "
        "note | warning + error"
    )


# -- Google Fit days -----------------------------------------------------------------------


class TimeZoneBody(Strict):
    time_zone: str = Field(
        min_length=1,
        max_length=64,
        description="IANA zone the user's Google Fit days are counted in from the next sync.",
        examples=["Europe/Berlin"],
    )


class TimeZoneView(BaseModel):
    user_id: str
    time_zone: str = Field(examples=["Europe/Berlin"])


# -- calendar ------------------------------------------------------------------------------


def _moment(value: str, all_day: bool | None) -> None:
    """RFC 3339 date-time with an offset, or a date when all_day (None: either)."""
    if all_day is not False:
        try:
            date.fromisoformat(value)
            return
        except ValueError:
            if all_day:
                raise ValueError(f"{value!r} is not a date (all_day events)") from None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an RFC 3339 date-time") from None
    if parsed.tzinfo is None or "T" not in value.upper():
        raise ValueError(f"{value!r} needs a date, a time and an offset")


class EventCreate(Strict):
    calendar_id: Id = "primary"
    title: str = Field("", max_length=1024)
    description: str = Field("", max_length=8192)
    location: str = Field("", max_length=1024)
    start: str = Field(description="RFC 3339 date-time, or a date when all_day")
    end: str
    all_day: bool = False
    time_zone: str | None = Field(None, max_length=64)
    metadata: dict[str, JsonValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _times(self) -> EventCreate:
        _moment(self.start, self.all_day)
        _moment(self.end, self.all_day)
        if _sort_key(self.end) <= _sort_key(self.start):
            raise ValueError("end must be after start")
        return self

    def as_event(self) -> CalendarEventBody:
        return CalendarEventBody(**self.model_dump())


def _sort_key(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:  # pragma: no cover - validated before
        return datetime.min


class EventPatch(Strict):
    title: str | None = Field(None, max_length=1024)
    description: str | None = Field(None, max_length=8192)
    location: str | None = Field(None, max_length=1024)
    start: str | None = None
    end: str | None = None
    all_day: bool | None = None
    time_zone: str | None = Field(None, max_length=64)
    metadata: dict[str, JsonValue] | None = None

    @model_validator(mode="after")
    def _some(self) -> EventPatch:
        if not self.model_fields_set:
            raise ValueError("nothing to change")
        for moment in (self.start, self.end):
            if moment is not None:
                _moment(moment, self.all_day)
        return self


class EventsQuery(Strict):
    calendar_id: Id | None = None
    start: datetime | None = None
    end: datetime | None = None
    include_deleted: bool = False
    limit: int | None = Field(None, ge=1, le=1000)


class EventsReply(OwnerObject):
    events: list[CalendarEventBody]


# -- admin ---------------------------------------------------------------------------------


class StreamStats(BaseModel):
    messages: int | None = None
    bytes: int | None = None
    consumers: int | None = None
    status: Literal["ok", "missing"] = "ok"


class ConsumerStats(BaseModel):
    stream: str
    durable: str
    service: str
    status: Literal["ok", "missing"] = "ok"
    pending: int | None = Field(None, description="Messages not yet delivered.")
    ack_pending: int | None = Field(None, description="Delivered, not yet acknowledged.")
    redelivered: int | None = None


class Overview(BaseModel):
    streams: dict[str, StreamStats]
    consumers: list[ConsumerStats]
    dead_letters: int | None
    connections: dict[str, JsonValue] = Field(
        description="token-service's counts, or {status: unavailable, message}."
    )


class BackgroundSyncBody(Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    sync_type: Literal["quick", "full"] = Field("quick", alias="syncType")
    max_users: int | None = Field(None, ge=1, le=100_000, alias="maxUsers")


class SubscriptionResult(BaseModel):
    subscription_id: int
    created: bool


def _dlq_filter(subject: str) -> str:
    """A NATS filter on the DLQ stream: ``dlq.`` then tokens, ``*`` whole tokens, ``>`` last."""
    tokens = subject.split(".")
    if tokens[0] != "dlq" or len(tokens) < 2:
        raise ValueError("must start with dlq.")
    for i, token in enumerate(tokens):
        bad_wild = ("*" in token and token != "*") or (
            ">" in token and (token != ">" or i != len(tokens) - 1)
        )
        if not token or bad_wild:
            raise ValueError(f"{subject!r} is not a valid subject filter")
    return subject


DlqFilter = Annotated[
    str,
    Field(pattern=r"^dlq\.[A-Za-z0-9_.*>-]+$", max_length=256),
    AfterValidator(_dlq_filter),
]


class DeadLettersQuery(Strict):
    subject: DlqFilter = "dlq.>"
    limit: int = Field(100, ge=1, le=1000)


class DeadLetterView(BaseModel):
    sequence: int
    subject: str
    original_subject: str
    error: dict[str, str]
    consumer: str | None
    failed_at: str | None
    body: JsonValue = Field(None, description="The original body when it is JSON.")
    body_base64: str | None = Field(None, description="The original body when it is not.")


class DeadLetters(BaseModel):
    dead_letters: list[DeadLetterView]


class ReplayBody(Strict):
    sequences: list[Annotated[int, Field(ge=1)]] | None = Field(None, min_length=1, max_length=1000)
    subject: DlqFilter | None = None
    limit: int = Field(100, ge=1, le=1000)

    @model_validator(mode="after")
    def _one(self) -> ReplayBody:
        if (self.sequences is None) == (self.subject is None):
            raise ValueError("give either sequences or subject")
        return self


class Replayed(BaseModel):
    sequence: int
    subject: str
    new_sequence: int


class ReplayResult(BaseModel):
    replayed: list[Replayed]
    missing: list[int]
