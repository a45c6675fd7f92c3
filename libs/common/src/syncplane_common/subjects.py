"""Every subject, stream, durable consumer and KV bucket of syncplane, in one place.

ARCHITECTURE §3 is the design; ``docs/adr/0001-subject-naming.md`` the naming rule:
``<domain>.<past-tense event | imperative command>.<provider>[.<kind>]``. The
provisioner (:mod:`syncplane_common.provision`) creates exactly what is listed here, and
services bind to it with ``declare=False``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Literal

PROVIDERS = ("strava", "google_fit", "whoop", "google_calendar")
Provider = Literal["strava", "google_fit", "whoop", "google_calendar"]

DAY = 24 * 3600.0


# -- subject builders: the only place subject strings are spelled -------------------------


def webhook_received(provider: str, kind: str) -> str:
    return f"webhook.received.{provider}.{kind}"


def sync_requested(provider: str) -> str:
    return f"sync.requested.{provider}"


def connection_event(
    what: Literal["connected", "revoked", "reauth_required"], provider: str
) -> str:
    return f"connection.{what}.{provider}"


def sync_event(what: Literal["progress", "completed", "failed"], provider: str) -> str:
    return f"sync.{what}.{provider}"


def records_changed(provider: str, data_type: str) -> str:
    return f"records.changed.{provider}.{data_type}"


def dead_letter(subject: str) -> str:
    return f"dlq.{subject}"


def original_of_dead_letter(subject: str) -> str:
    if not subject.startswith("dlq."):
        raise ValueError(f"not a dead-letter subject: {subject}")
    return subject[len("dlq.") :]


CALENDAR_LOCAL_CHANGED = "calendar.local.changed"
CALENDAR_REMOTE_CHANGED = "calendar.remote.changed"
CALENDAR_CONFLICT_DETECTED = "calendar.conflict.detected"
CALENDAR_PUSH_DISABLED = "calendar.push.disabled"

# Request/reply subjects (core NATS, served by a queue group of the owning service).
TOKEN_GET = "token.get"
TOKEN_EXCHANGE = "token.exchange"
TOKEN_REVOKE = "token.revoke"
CONNECTIONS_LIST = "token.connections.list"
STRAVA_SUBSCRIPTION_ENSURE = "token.strava.subscription.ensure"
DATA_QUERY = "data.query"
SYNC_STATUS_GET = "sync.status.get"
SYNC_SESSION_GET = "sync.session.get"
SYNC_FIT_RUNS_GET = "sync.fit_runs.get"
SYNC_TIME_ZONE_SET = "sync.time_zone.set"
SYNC_TIME_ZONE_GET = "sync.time_zone.get"
CALENDAR_EVENTS = "calendar.events.*"
CALENDAR_EVENTS_LIST = "calendar.events.list"
CALENDAR_EVENTS_GET = "calendar.events.get"
CALENDAR_EVENTS_CREATE = "calendar.events.create"
CALENDAR_EVENTS_UPDATE = "calendar.events.update"
CALENDAR_EVENTS_DELETE = "calendar.events.delete"
CALENDAR_EVENTS_QUERY = "calendar.events.query"
# The admin console's questions (asked by the gateway's /admin, answered by the owners).
CONNECTIONS_STATS = "token.connections.stats"
SYNC_BACKGROUND_RUN = "sync.background.run"
SYNC_BUDGETS_GET = "sync.budgets.get"
SYNC_SESSIONS_LIST = "sync.sessions.list"
CALENDAR_CHANNELS_LIST = "calendar.channels.list"
CALENDAR_EVENTS_SUBJECTS = (
    CALENDAR_EVENTS_LIST,
    CALENDAR_EVENTS_GET,
    CALENDAR_EVENTS_CREATE,
    CALENDAR_EVENTS_UPDATE,
    CALENDAR_EVENTS_DELETE,
    CALENDAR_EVENTS_QUERY,
)


def inbox_prefix(service: str) -> str:
    """Each service's replies (request/reply answers, PubAcks, pull deliveries) arrive
    under its own prefix, so NATS permissions can keep one service from reading another's
    replies — ``token.get`` replies carry access tokens."""
    return f"_INBOX_{service.replace('-', '_')}"


# -- streams -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamDef:
    name: str
    subjects: tuple[str, ...]
    retention: Literal["limits", "workqueue"] = "limits"
    max_age: float = 7 * DAY
    # Nats-Msg-Id dedupe window: provider retries (Strava retries for ~ an hour, Google
    # and WHOOP for minutes) must land inside it to be recognised as duplicates.
    duplicate_window: float = 2 * 3600.0
    description: str = ""


WEBHOOKS = StreamDef(
    "WEBHOOKS",
    ("webhook.received.>",),
    max_age=7 * DAY,
    description="Verified provider notifications, replayable for 7 days.",
)
SYNC = StreamDef(
    "SYNC",
    ("sync.requested.>",),
    retention="workqueue",
    max_age=3 * DAY,
    description="Sync commands: one message is one unit of work.",
)
EVENTS = StreamDef(
    "EVENTS",
    (
        "connection.>",
        "sync.progress.>",
        "sync.completed.>",
        "sync.failed.>",
        "records.changed.>",
    ),
    max_age=7 * DAY,
    description="Facts for the app, the console and other services.",
)
CALENDAR = StreamDef(
    "CALENDAR",
    (
        CALENDAR_LOCAL_CHANGED,
        CALENDAR_REMOTE_CHANGED,
        CALENDAR_CONFLICT_DETECTED,
        CALENDAR_PUSH_DISABLED,
    ),
    max_age=7 * DAY,
    description="Calendar changes in both directions, and detected conflicts.",
)
DLQ = StreamDef(
    "DLQ",
    ("dlq.>",),
    max_age=14 * DAY,
    description="Messages that exhausted their deliveries or failed permanently.",
)

STREAMS: tuple[StreamDef, ...] = (WEBHOOKS, SYNC, EVENTS, CALENDAR, DLQ)


@functools.lru_cache(maxsize=4096)
def stream_for(subject: str) -> StreamDef:
    """The stream that captures a subject; raises for subjects no stream captures."""
    for stream in STREAMS:
        if any(subject_matches(pattern, subject) for pattern in stream.subjects):
            return stream
    raise LookupError(f"no stream captures subject {subject!r}")


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard matching: ``*`` one token, ``>`` one or more trailing tokens."""
    p_tokens, s_tokens = pattern.split("."), subject.split(".")
    for i, token in enumerate(p_tokens):
        if token == ">":
            return len(s_tokens) > i
        if i >= len(s_tokens) or (token != "*" and token != s_tokens[i]):
            return False
    return len(p_tokens) == len(s_tokens)


# -- durable consumers ---------------------------------------------------------------------


@dataclass(frozen=True)
class ConsumerDef:
    """A durable pull consumer. ``service`` is who binds to it."""

    service: str
    stream: str
    durable: str
    filter_subjects: tuple[str, ...]
    max_deliver: int = 5
    # Long enough for a provider page fetch + upsert; handlers call in_progress() when
    # they need longer. Retries use nak(delay=...) from the ack middleware, not backoff
    # lists, because a consumer backoff list would override ack_wait.
    ack_wait: float = 60.0
    max_ack_pending: int = 1000
    description: str = ""


CONSUMERS: tuple[ConsumerDef, ...] = (
    ConsumerDef(
        "sync-worker",
        "WEBHOOKS",
        "sync-worker-webhooks",
        (webhook_received("strava", "activity"), "webhook.received.whoop.>"),
        description="Provider notifications that become refetch / delete work.",
    ),
    ConsumerDef(
        "sync-worker",
        "SYNC",
        "sync-worker-requests",
        ("sync.requested.>",),
        max_ack_pending=200,
        # A running session beats in_progress every SYNC_HEARTBEAT_SECONDS; a worker
        # that dies mid-session is taken over this long after its last beat.
        ack_wait=30.0,
        description="Sync sessions to run (backfill, incremental, scheduled, on demand).",
    ),
    ConsumerDef(
        "sync-worker",
        "EVENTS",
        "sync-worker-lifecycle",
        ("connection.>",),
        description="Connections connected / revoked / needing reauth.",
    ),
    ConsumerDef(
        "calendar-sync",
        "WEBHOOKS",
        "calendar-sync-webhooks",
        ("webhook.received.gcal.>",),
        description="Google Calendar push notifications.",
    ),
    ConsumerDef(
        "calendar-sync",
        "CALENDAR",
        "calendar-sync-local",
        (CALENDAR_LOCAL_CHANGED,),
        description="Local calendar edits to push to Google.",
    ),
    ConsumerDef(
        "calendar-sync",
        "EVENTS",
        "calendar-sync-lifecycle",
        ("connection.*.google_calendar",),
        description="Google Calendar connections connected / revoked.",
    ),
    ConsumerDef(
        "token-service",
        "WEBHOOKS",
        "token-service-deauth",
        (webhook_received("strava", "athlete"),),
        description="Strava athlete deauthorizations.",
    ),
)


def consumer(durable: str) -> ConsumerDef:
    for item in CONSUMERS:
        if item.durable == durable:
            return item
    raise LookupError(f"no consumer named {durable!r}")


# -- KV buckets ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BucketDef:
    name: str
    history: int = 1
    ttl: float | None = None
    description: str = ""


BUCKETS: tuple[BucketDef, ...] = (
    BucketDef(
        "gcal_channels",
        description="Calendar push channel id -> token, for the gateway to verify pushes.",
    ),
    BucketDef(
        "webhook_config",
        history=5,
        description="Webhook settings decided at run time, e.g. key strava.subscription_id.",
    ),
    BucketDef(
        "rate_budgets",
        ttl=2 * DAY,
        description="Per provider and window request counts shared by all sync-workers.",
    ),
)


# -- who talks on what (the AsyncAPI documents are generated from this) --------------------


@dataclass(frozen=True)
class ServiceChannels:
    service: str
    publishes: tuple[str, ...] = ()
    consumes: tuple[str, ...] = ()  # durable consumer names
    replies: tuple[str, ...] = ()  # request/reply subjects it serves
    requests: tuple[str, ...] = ()  # request/reply subjects it calls
    extra: dict[str, str] = field(default_factory=dict)


SERVICES: tuple[ServiceChannels, ...] = (
    ServiceChannels(
        "webhook-gateway",
        publishes=("webhook.received.>", "sync.requested.>", CALENDAR_LOCAL_CHANGED),
        requests=(
            TOKEN_EXCHANGE,
            TOKEN_REVOKE,
            CONNECTIONS_LIST,
            STRAVA_SUBSCRIPTION_ENSURE,
            DATA_QUERY,
            SYNC_STATUS_GET,
            SYNC_SESSION_GET,
            SYNC_FIT_RUNS_GET,
            SYNC_TIME_ZONE_SET,
            SYNC_TIME_ZONE_GET,
            *CALENDAR_EVENTS_SUBJECTS,
            CONNECTIONS_STATS,
            SYNC_BACKGROUND_RUN,
            SYNC_BUDGETS_GET,
            SYNC_SESSIONS_LIST,
            CALENDAR_CHANNELS_LIST,
        ),
    ),
    ServiceChannels(
        "token-service",
        publishes=("connection.>",),
        consumes=("token-service-deauth",),
        replies=(
            TOKEN_GET,
            TOKEN_EXCHANGE,
            TOKEN_REVOKE,
            CONNECTIONS_LIST,
            STRAVA_SUBSCRIPTION_ENSURE,
            CONNECTIONS_STATS,
        ),
    ),
    ServiceChannels(
        "sync-worker",
        publishes=(
            "sync.requested.>",
            "sync.progress.>",
            "sync.completed.>",
            "sync.failed.>",
            "records.changed.>",
        ),
        consumes=("sync-worker-webhooks", "sync-worker-requests", "sync-worker-lifecycle"),
        replies=(
            DATA_QUERY,
            SYNC_STATUS_GET,
            SYNC_SESSION_GET,
            SYNC_BACKGROUND_RUN,
            SYNC_BUDGETS_GET,
            SYNC_SESSIONS_LIST,
            SYNC_FIT_RUNS_GET,
            SYNC_TIME_ZONE_SET,
            SYNC_TIME_ZONE_GET,
        ),
        requests=(TOKEN_GET,),
    ),
    ServiceChannels(
        "calendar-sync",
        publishes=(CALENDAR_REMOTE_CHANGED, CALENDAR_CONFLICT_DETECTED, CALENDAR_PUSH_DISABLED),
        consumes=("calendar-sync-webhooks", "calendar-sync-local", "calendar-sync-lifecycle"),
        replies=(*CALENDAR_EVENTS_SUBJECTS, CALENDAR_CHANNELS_LIST),
        requests=(TOKEN_GET,),
    ),
)


def service_channels(service: str) -> ServiceChannels:
    for item in SERVICES:
        if item.service == service:
            return item
    raise LookupError(f"unknown service {service!r}")
