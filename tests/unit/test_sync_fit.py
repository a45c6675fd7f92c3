"""The Google Fit run's pure parts (issue 7): run slots, local day windows, what a user's
outcome reports, the Fit budget window and settings, and a lease that says whether its
token had to be refreshed."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError
from sync_worker.admin import read_budgets
from sync_worker.budget import (
    DEFAULT_LIMITS,
    MemoryCounterStore,
    Window,
    configured_limits,
    default_limits,
    google_fit_windows,
)
from sync_worker.fit_run import UserOutcome
from sync_worker.fit_source import local_days
from sync_worker.fit_store import next_slot
from sync_worker.settings import SyncWorkerSettings
from syncplane_common.contracts import TokenGetReply, token_fingerprint
from syncplane_common.errors import ReauthRequiredError, RetryableError, TokenRejectedError
from syncplane_common.tokens import MemoryTokenSource, TokenLease

pytestmark = pytest.mark.unit

TEN_MINUTES = timedelta(minutes=10)


@pytest.mark.parametrize(
    ("now", "slot"),
    [
        # Claimed early in a slot: the next boundary.
        (datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC), datetime(2026, 3, 1, 12, 10, tzinfo=UTC)),
        (datetime(2026, 3, 1, 12, 4, 59, tzinfo=UTC), datetime(2026, 3, 1, 12, 10, tzinfo=UTC)),
        # Claimed late: not again a few seconds later, but at the boundary after.
        (datetime(2026, 3, 1, 12, 9, 50, tzinfo=UTC), datetime(2026, 3, 1, 12, 20, tzinfo=UTC)),
        (datetime(2026, 3, 1, 12, 5, 1, tzinfo=UTC), datetime(2026, 3, 1, 12, 20, tzinfo=UTC)),
    ],
)
def test_next_slot_is_a_boundary_at_least_half_an_interval_away(
    now: datetime, slot: datetime
) -> None:
    assert next_slot(now, TEN_MINUTES) == slot
    assert (slot - now) >= TEN_MINUTES / 2


def test_local_days_end_today_in_the_users_zone() -> None:
    # 23:30 UTC on 1 March is already 2 March in Berlin, still 1 March in New York.
    now = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    assert local_days(now, "Europe/Berlin", 7) == (date(2026, 2, 24), date(2026, 3, 2))
    assert local_days(now, "America/New_York", 1) == (date(2026, 3, 1), date(2026, 3, 1))


def test_an_outcome_reports_only_what_went_wrong() -> None:
    assert UserOutcome("u1", days_synced=7).report() is None
    partly = UserOutcome("u2", days_synced=6, failed_days=["2026-03-01"])
    partly.error = RetryableError("google fit aggregate answered 500")
    report = partly.report()
    assert report is not None
    assert report.failed_days == ("2026-03-01",)
    assert not report.user_failed
    assert report.code == "retryable"
    refused = UserOutcome("u3", error=ReauthRequiredError("invalid_grant"))
    gone = refused.report()
    assert gone is not None
    assert gone.user_failed
    assert gone.code == "reauth_required"


def test_google_fit_has_one_minute_window_from_the_setting() -> None:
    assert DEFAULT_LIMITS["google_fit"] == (Window("minute", 60, 5000),)
    limits = default_limits(google_fit=google_fit_windows(120))
    assert limits["google_fit"] == (Window("minute", 60, 120),)


async def test_the_console_reports_the_limits_the_budget_enforces() -> None:
    # One reading of the settings for both: the console once showed WHOOP's and Google
    # Fit's defaults whatever WHOOP_RATE_LIMIT / GOOGLE_FIT_RATE_LIMIT_PER_MINUTE said.
    settings = SyncWorkerSettings(
        nats_url="nats://127.0.0.1:1",
        database_url="postgresql://x@127.0.0.1/x",
        whoop_rate_limit="50,500",
        google_fit_rate_limit_per_minute=120,
    )
    limits = configured_limits(settings)
    assert limits["whoop"] == (Window("minute", 60, 50), Window("day", 86_400, 500))
    assert limits["google_fit"] == (Window("minute", 60, 120),)
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    reply = await read_budgets(MemoryCounterStore(), settings, now)
    shown = {(w.provider, w.window): w.limit for w in reply.windows}
    assert shown == {
        (provider, window.name): window.limit
        for provider, windows in limits.items()
        for window in windows
    }


def test_settings_refuse_an_unknown_default_zone() -> None:
    nats, db = "nats://127.0.0.1:1", "postgresql://x@127.0.0.1/x"
    assert SyncWorkerSettings(nats_url=nats, database_url=db).default_time_zone == "UTC"
    with pytest.raises(ValidationError, match="IANA"):
        SyncWorkerSettings(nats_url=nats, database_url=db, default_time_zone="Mars/Olympus")


def test_token_reply_says_refreshed_only_when_told() -> None:
    assert TokenGetReply(access_token="t").refreshed is False
    assert TokenGetReply.model_validate_json(b'{"access_token": "t"}').refreshed is False


async def test_a_lease_remembers_that_its_token_was_refreshed() -> None:
    tokens = MemoryTokenSource({("u1", "google_fit"): ["old", "new"]})
    lease = TokenLease(tokens, "u1", "google_fit")
    assert (await lease.current()).value == "old"
    assert not lease.refreshed

    async def call(token: str) -> str:
        if token == "old":
            raise TokenRejectedError("401", fingerprint=token_fingerprint(token))
        return token

    assert await lease.call(call) == "new"
    assert lease.refreshed
