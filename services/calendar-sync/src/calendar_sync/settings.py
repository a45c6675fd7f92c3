"""calendar-sync settings: Google Calendar access, pacing, conflict policy, channels."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from syncplane_common.settings import DatabaseSettings, ProviderEndpoints


class CalendarSyncSettings(DatabaseSettings, ProviderEndpoints):
    conflict_policy: Literal["last_write_wins", "local_wins", "remote_wins", "field_merge"] = Field(
        "last_write_wins",
        description="Who wins when an event changed on both sides since the last sync.",
    )
    google_rate_per_user: float = Field(
        10.0, gt=0, description="Google Calendar calls per second per user (outbound pacing)."
    )
    outbox_max_retries: int = Field(
        3, ge=0, description="Retries of a failed push to Google before it is dead-lettered."
    )
    outbox_retry_base_seconds: float = Field(
        2.0, gt=0, description="First retry delay of a failed push; doubles per retry."
    )
    outbox_interval_seconds: float = Field(
        1.0, gt=0, description="How often the sender looks for due pushes it was not woken for."
    )
    outbox_retention_days: float = Field(
        7.0, gt=0, description="Days done and failed outbox rows are kept."
    )
    outbox_concurrency: int = Field(
        4, ge=1, description="Pushes to Google in flight at once per process (across users)."
    )
    sync_window_past_days: int = Field(
        30, ge=0, description="A full sync (first sync, or after a 410) covers this far back."
    )
    sync_window_future_days: int = Field(
        365, ge=1, description="A full sync covers this far ahead."
    )
    gcal_webhook_url: str = Field(
        "",
        description="Public URL of the gateway's /webhooks/google/calendar, where Google "
        "pushes; empty disables push channels (calendars are polled). `syncplane up` "
        "points it at its own gateway.",
    )
    channel_ttl_seconds: int = Field(
        7 * 24 * 3600, ge=60, description="Lifetime asked for a push channel (Google may cut it)."
    )
    channel_renew_margin_seconds: float = Field(
        24 * 3600.0, ge=0, description="Renew a channel once it expires within this many seconds."
    )
    channel_renew_retries: int = Field(
        3, ge=1, description="Failed renewals of a channel before push is disabled for it."
    )
    maintenance_interval_seconds: float = Field(
        60.0, gt=0, description="How often renewals, polling and outbox cleanup are checked."
    )
    poll_interval_seconds: float = Field(
        300.0, gt=0, description="Incremental sync interval of calendars without push."
    )
    backstop_interval_seconds: float = Field(
        3600.0,
        gt=0,
        description="Incremental sync interval of calendars with push (pushes can be lost).",
    )
    rpc_max_workers: int = Field(
        8, ge=1, description="calendar.events.* requests served at once per process."
    )
    provider_timeout_seconds: float = Field(
        20.0, gt=0, description="Total timeout of one Google Calendar call."
    )
