"""Per-type freshness thresholds (SYNC_FRESHNESS_THRESHOLDS) and the WHOOP client's usage
as budget corrections: plain decisions, no I/O."""

from __future__ import annotations

import pytest
from sync_worker.budget import Observed, whoop_client_observed, whoop_observed
from sync_worker.providers.whoop import parse_usage
from sync_worker.queries import Freshness
from sync_worker.settings import DEFAULT_THRESHOLDS, SyncWorkerSettings, parse_thresholds

pytestmark = pytest.mark.unit


def test_default_thresholds_follow_the_smart_sync_design() -> None:
    thresholds = parse_thresholds(DEFAULT_THRESHOLDS)
    assert thresholds[("whoop", "recovery")] == 7200
    assert thresholds[("whoop", "sleep")] == 7200
    assert thresholds[("whoop", "cycle")] == 7200
    assert thresholds[("whoop", "workout")] == 3600
    assert thresholds[("strava", "activities")] == 3600
    assert thresholds[("google_fit", "daily")] == 600
    assert thresholds[("google_fit", "sessions")] == 600


@pytest.mark.parametrize(
    "value",
    ["whoop=7200", "whoop/recovery", "fitbit/steps=60", "whoop/=60", "whoop/sleep=-1", "a/b=x"],
)
def test_malformed_thresholds_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match=value.split("=")[0]):
        parse_thresholds(value)


def test_the_setting_is_validated_and_parsed() -> None:
    settings = SyncWorkerSettings(sync_freshness_thresholds=" whoop/sleep=60 , strava/activities=5")
    assert settings.freshness_thresholds == {("whoop", "sleep"): 60.0, ("strava", "activities"): 5}
    with pytest.raises(ValueError, match="provider/data_type=seconds"):
        SyncWorkerSettings(sync_freshness_thresholds="whoop=60")


def test_a_type_without_a_threshold_falls_back_to_its_schedule_then_an_hour() -> None:
    freshness = Freshness({("whoop", "sleep"): 60.0}, {"whoop": 900})
    assert freshness.threshold("whoop", "sleep") == 60
    assert freshness.threshold("whoop", "cycle") == 900
    assert freshness.threshold("strava", "activities") == 3600


def test_whoop_client_usage_corrects_the_budget_as_the_headers_do() -> None:
    headers = {
        "X-RateLimit-Limit": "100, 100;window=60, 10000;window=86400",
        "X-RateLimit-Remaining": "37",
        "X-RateLimit-Reset": "12",
    }
    expected = [Observed("minute", 100, 63), Observed("day", 10000, 63)]
    assert whoop_observed(headers) == expected
    assert whoop_client_observed(parse_usage(headers)) == expected
    assert whoop_client_observed(None) == []
