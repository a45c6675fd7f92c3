"""sync-worker settings: provider access for sync sessions and enrichment, scheduling,
rate budgets, and what happens to stored data when a connection goes."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, Field, field_validator
from syncplane_common.settings import DatabaseSettings, ProviderEndpoints
from syncplane_common.subjects import PROVIDERS


def parse_intervals(value: str) -> dict[str, int]:
    """``strava=10800,whoop=3600`` → {"strava": 10800, "whoop": 3600}."""
    intervals: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        provider, sep, seconds = item.partition("=")
        provider = provider.strip()
        if not sep or provider not in PROVIDERS:
            raise ValueError(f"{item!r}: expected provider=seconds with a provider of {PROVIDERS}")
        try:
            every = int(seconds)
        except ValueError:
            raise ValueError(f"{item!r}: seconds must be an integer") from None
        if every < 60:
            raise ValueError(f"{item!r}: at least 60 seconds between background syncs")
        intervals[provider] = every
    return intervals


DEFAULT_THRESHOLDS = (
    "whoop/recovery=7200,whoop/sleep=7200,whoop/cycle=7200,whoop/workout=3600,"
    "strava/activities=3600,google_fit/daily=600,google_fit/sessions=600"
)


def parse_thresholds(value: str) -> dict[tuple[str, str], float]:
    """``whoop/recovery=7200,strava/activities=3600`` → {("whoop", "recovery"): 7200.0, ...}:
    how old a data type's last sync may be before a smart read syncs it again."""
    thresholds: dict[tuple[str, str], float] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, sep, seconds = item.partition("=")
        provider, slash, data_type = name.strip().partition("/")
        if not sep or not slash or provider not in PROVIDERS or not data_type:
            raise ValueError(
                f"{item!r}: expected provider/data_type=seconds with a provider of {PROVIDERS}"
            )
        try:
            age = float(seconds)
        except ValueError:
            raise ValueError(f"{item!r}: seconds must be a number") from None
        if age < 0:
            raise ValueError(f"{item!r}: a threshold cannot be negative")
        thresholds[(provider, data_type)] = age
    return thresholds


def parse_pair(value: str) -> tuple[int, int]:
    """``200,2000`` → (200, 2000): a short-window and a daily limit, both positive."""
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError("expected '<per window>,<per day>', two positive integers")
    return int(parts[0]), int(parts[1])


class SyncWorkerSettings(DatabaseSettings, ProviderEndpoints):
    provider_timeout_seconds: float = Field(
        20.0, gt=0, description="Total timeout of one provider API call (sync-worker)."
    )
    provider_connect_timeout_seconds: float = Field(
        5.0, gt=0, description="Connect timeout of provider API calls (sync-worker)."
    )
    token_request_timeout_seconds: float = Field(
        5.0, gt=0, description="How long sync-worker waits for token.get to answer."
    )
    token_cache_seconds: float = Field(
        30.0,
        ge=0,
        description="How long sync-worker reuses an access token token.get gave it (while "
        "it stays valid for 5 more minutes); 0 asks every time. A refused token is "
        "never reused.",
    )
    sync_concurrency: int = Field(
        4, ge=1, le=64, description="Sync sessions one sync-worker process runs at once."
    )
    webhook_concurrency: int = Field(
        16, ge=1, le=256, description="Webhook events one sync-worker process handles at once."
    )
    sync_heartbeat_seconds: float = Field(
        10.0,
        gt=0,
        description="How often a running session tells JetStream it is alive; keep it "
        "well under the sync-worker-requests consumer's ack_wait (30 s).",
    )
    strava_backfill_since: AwareDatetime | None = Field(
        None,
        description="Oldest Strava activity a backfill fetches (RFC 3339); empty: all history.",
    )
    strava_incremental_overlap_seconds: int = Field(
        3600,
        ge=0,
        description="An incremental Strava sync starts this long before the newest stored "
        "activity, to catch activities uploaded late.",
    )
    strava_per_page: int = Field(
        200, ge=1, le=200, description="Activities per Strava list call (the maximum is 200)."
    )
    strava_sport_types: str = Field(
        "",
        description="Comma-separated Strava sport types to keep (e.g. Run,Ride); empty: all. "
        "Others are counted as skipped, not stored.",
    )
    schedule_intervals: str = Field(
        "strava=10800,whoop=3600,google_fit=600",
        description="Background sync interval per provider in seconds, as "
        "provider=seconds pairs; a provider left out is not scheduled. google_fit's is "
        "the interval of the unified Google Fit run.",
    )
    scheduler_tick_seconds: float = Field(
        30.0, gt=0, description="How often each sync-worker replica claims due connections."
    )
    scheduler_batch_size: int = Field(
        500, ge=1, le=10_000, description="Due connections claimed per scheduler transaction."
    )
    app_focus_min_age_seconds: int = Field(
        3600,
        ge=0,
        description="An app_focus sync runs only when the last completed sync is older.",
    )
    delete_data_on_revoke: bool = Field(
        False, description="Delete a connection's stored provider data when it is revoked."
    )
    rate_background_share: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Share of each provider rate window that backfills and scheduled syncs "
        "may use; the rest is kept for webhooks and on-demand work.",
    )
    rate_budget_enabled: bool = Field(
        True,
        description="Hold provider calls to the shared per-app rate budget (NATS KV "
        "rate_budgets); off only for a single worker against a provider without limits.",
    )
    rate_inline_wait_seconds: float = Field(
        2.0,
        ge=0,
        description="A rate-budget wait up to this long is slept through; a longer one "
        "defers the session to the window boundary (acknowledged, continued later).",
    )
    strava_rate_limit: str = Field(
        "200,2000",
        description="Strava app limit, overall: requests per 15 minutes,per day.",
    )
    strava_read_rate_limit: str = Field(
        "100,1000",
        description="Strava app limit, non-upload (read): requests per 15 minutes,per day.",
    )
    whoop_rate_limit: str = Field(
        "100,10000",
        description="WHOOP app limit: requests per minute,per day (raised on request).",
    )
    whoop_backfill_since: AwareDatetime | None = Field(
        None,
        description="Oldest WHOOP record a backfill fetches (RFC 3339); empty: all history.",
    )
    whoop_incremental_overlap_seconds: int = Field(
        172800,
        ge=0,
        description="An incremental WHOOP sync starts this long before the newest stored "
        "record of each type, to catch records WHOOP scores or edits later.",
    )
    sync_freshness_thresholds: str = Field(
        DEFAULT_THRESHOLDS,
        description="How old a data type's last sync may be before a smart read (or the "
        "status's needs_sync) asks the provider again, as provider/data_type=seconds pairs; "
        "a type left out uses its provider's schedule interval.",
    )
    google_fit_days_back: int = Field(
        7,
        ge=1,
        le=89,
        description="Local days every Google Fit sync re-reads (Google revises recent days); "
        "the run reads them in one call.",
    )
    google_fit_backfill_days: int = Field(
        90, ge=1, le=3650, description="Local days of Google Fit history read on connect."
    )
    google_fit_run_batch_size: int = Field(
        100, ge=1, le=10_000, description="Due Google Fit users one run claims per batch."
    )
    google_fit_run_concurrency: int = Field(
        10, ge=1, le=256, description="Google Fit users one run syncs at once."
    )
    google_fit_run_pause_seconds: float = Field(
        1.0, ge=0, description="Pause between two batches of one Google Fit run."
    )
    google_fit_rate_limit_per_minute: int = Field(
        5000,
        ge=1,
        description="Google Fit calls per minute for the whole app (fixed windows, so half "
        "the sliding quota).",
    )
    default_time_zone: str = Field(
        "UTC",
        description="IANA zone of a user's Google Fit days until sync.time_zone.set names one.",
    )
    weather_enabled: bool = Field(True, description="Enrich activities with historical weather.")
    geocoding_enabled: bool = Field(
        True, description="Enrich activities with the city, state and country of the start."
    )
    geocoding_user_agent: str = Field(
        "syncplane/0.1 (+https://github.com/syncplane)",
        description="User-Agent naming this deployment, as Nominatim's policy requires.",
    )
    geocoding_min_interval_seconds: float = Field(
        1.0, ge=0, description="Seconds between geocoding requests (Nominatim: 1/s)."
    )
    geocoding_inline_per_page: int = Field(
        2,
        ge=0,
        description="Uncached geocoding lookups made while a page is synced; the rest are "
        "filled by the enrichment pass, so the 1/s policy never stalls a backfill.",
    )
    enrichment_breaker_failures: int = Field(
        5, ge=1, description="Consecutive enrichment failures that open its circuit breaker."
    )
    enrichment_breaker_cooldown_seconds: float = Field(
        60.0, gt=0, description="Seconds an open enrichment breaker waits before a probe."
    )
    enrichment_pass_batch: int = Field(
        50, ge=1, description="Activities the periodic enrichment pass completes per tick."
    )

    @field_validator("strava_backfill_since", "whoop_backfill_since", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("strava_rate_limit", "strava_read_rate_limit", "whoop_rate_limit")
    @classmethod
    def _pair(cls, value: str) -> str:
        parse_pair(value)
        return value

    @field_validator("default_time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone") from None
        return value

    @field_validator("schedule_intervals")
    @classmethod
    def _intervals(cls, value: str) -> str:
        parse_intervals(value)
        return value

    @field_validator("sync_freshness_thresholds")
    @classmethod
    def _thresholds(cls, value: str) -> str:
        parse_thresholds(value)
        return value

    @property
    def freshness_thresholds(self) -> dict[tuple[str, str], float]:
        return parse_thresholds(self.sync_freshness_thresholds)

    @property
    def schedule_interval_seconds(self) -> dict[str, int]:
        return parse_intervals(self.schedule_intervals)

    @property
    def strava_sport_type_filter(self) -> frozenset[str]:
        return frozenset(t.strip() for t in self.strava_sport_types.split(",") if t.strip())
