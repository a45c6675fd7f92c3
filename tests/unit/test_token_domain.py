"""token-service decisions: when to refresh, what a refresh keeps, who the account is."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from syncplane_common.contracts import token_fingerprint as fingerprint
from syncplane_common.errors import ReauthRequiredError, RevokedError
from token_service.domain import (
    Decision,
    Need,
    Policy,
    Snapshot,
    TokenGrant,
    decide,
    grant_family,
    id_token_subject,
    keepalive_cutoff,
    kept_refresh_token,
    missing_scopes,
    parse_scopes,
    should_touch,
    strava_deauthorized,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
POLICY = Policy(margin_seconds=120, cooldown_seconds=30)
TOKEN_FP = fingerprint("access-1")


def snap(
    *,
    expires_in: float | None = 3600,
    status: str = "active",
    refreshed_ago: float | None = None,
    fp: str | None = TOKEN_FP,
) -> Snapshot:
    return Snapshot(
        status=status,  # type: ignore[arg-type]
        expires_at=None if expires_in is None else NOW + timedelta(seconds=expires_in),
        last_refreshed_at=None if refreshed_ago is None else NOW - timedelta(seconds=refreshed_ago),
        access_fingerprint=fp,
    )


@pytest.mark.parametrize(
    ("expires_in", "min_valid", "expected"),
    [
        (3600, 300, Decision.SERVE),
        (421, 300, Decision.SERVE),  # 300 asked + 120 margin = 420
        (419, 300, Decision.REFRESH),
        (0, 0, Decision.REFRESH),
        (-10, 0, Decision.REFRESH),
        (121, 0, Decision.SERVE),
    ],
)
def test_refresh_when_the_token_would_not_last_the_asked_time_plus_margin(
    expires_in: float, min_valid: int, expected: Decision
) -> None:
    assert decide(snap(expires_in=expires_in), Need(min_valid), POLICY, NOW) is expected


def test_a_token_just_refreshed_is_served_rather_than_refreshed_again() -> None:
    # Strava hands back the same token while it has over an hour left: asking twice in a
    # row for 3600 s would otherwise refresh on every call.
    fresh = snap(expires_in=3650, refreshed_ago=5)
    assert decide(fresh, Need(3600), POLICY, NOW) is Decision.SERVE
    stale = snap(expires_in=3650, refreshed_ago=300)
    assert decide(stale, Need(3600), POLICY, NOW) is Decision.REFRESH
    short = snap(expires_in=200, refreshed_ago=5)
    assert decide(short, Need(300), POLICY, NOW) is Decision.SERVE
    within_margin = snap(expires_in=60, refreshed_ago=5)
    assert decide(within_margin, Need(0), POLICY, NOW) is Decision.REFRESH


def test_force_refresh_only_when_the_stored_token_is_the_rejected_one() -> None:
    stored = snap(expires_in=3000)
    rejected_now = Need(300, force_refresh=True, rejected_fingerprint=TOKEN_FP)
    rejected_before = Need(300, force_refresh=True, rejected_fingerprint=fingerprint("old"))
    upper = Need(300, force_refresh=True, rejected_fingerprint=TOKEN_FP.upper())
    assert decide(stored, rejected_now, POLICY, NOW) is Decision.REFRESH
    assert decide(stored, upper, POLICY, NOW) is Decision.REFRESH
    assert decide(stored, rejected_before, POLICY, NOW) is Decision.SERVE
    assert decide(stored, Need(300, force_refresh=True), POLICY, NOW) is Decision.REFRESH


def test_no_serving_from_a_connection_that_ended() -> None:
    with pytest.raises(RevokedError):
        decide(snap(status="revoked", expires_in=None, fp=None), Need(0), POLICY, NOW)
    with pytest.raises(ReauthRequiredError):
        decide(snap(status="reauth_required"), Need(0), POLICY, NOW)


def test_keepalive_need_refreshes_only_what_was_not_refreshed_since_the_cutoff() -> None:
    cutoff = NOW - timedelta(days=30)
    need = Need(0, refreshed_before=cutoff)
    assert decide(snap(refreshed_ago=None), need, POLICY, NOW) is Decision.REFRESH
    assert decide(snap(refreshed_ago=40 * 86400), need, POLICY, NOW) is Decision.REFRESH
    assert decide(snap(refreshed_ago=10), need, POLICY, NOW) is Decision.SERVE
    assert keepalive_cutoff(NOW, 0) is None
    assert keepalive_cutoff(NOW, 30) == cutoff


def test_a_refresh_answer_without_refresh_token_keeps_the_stored_one() -> None:
    google = TokenGrant(access_token="a2", refresh_token=None, expires_in=3599)
    whoop = TokenGrant(access_token="a2", refresh_token="r2", expires_in=3600)
    assert kept_refresh_token("r1", google) == "r1"
    assert kept_refresh_token("r1", whoop) == "r2"


def test_expiry_prefers_the_relative_lifetime() -> None:
    both = TokenGrant("a", "r", expires_in=100, expires_at_epoch=NOW.timestamp() + 9999)
    absolute = TokenGrant("a", "r", expires_at_epoch=NOW.timestamp() + 500)
    neither = TokenGrant("a", "r")
    assert both.expires_at(NOW) == NOW + timedelta(seconds=100)
    assert absolute.expires_at(NOW) == NOW + timedelta(seconds=500)
    assert neither.expires_at(NOW) == NOW + timedelta(hours=1)


def test_a_grant_never_prints_its_tokens() -> None:
    grant = TokenGrant("access-secret", "refresh-secret", account_id="42")
    assert "secret" not in repr(grant)
    assert "secret" not in str(grant)


def _id_token(claims: dict[str, object]) -> str:
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return ".".join((part(b'{"alg":"RS256"}'), part(json.dumps(claims).encode()), part(b"sig")))


def test_google_subject_comes_from_the_id_token_payload() -> None:
    assert id_token_subject(_id_token({"sub": "1234567890", "aud": "x"})) == "1234567890"
    assert id_token_subject(_id_token({"aud": "x"})) is None
    assert id_token_subject(None) is None
    assert id_token_subject("not-a-jwt") is None
    assert id_token_subject("a.!!!.c") is None


def test_scopes() -> None:
    assert parse_scopes("openid https://x/y  openid") == ("https://x/y", "openid")
    assert parse_scopes("read,activity:read_all") == ("activity:read_all", "read")
    assert parse_scopes(None) is None
    assert missing_scopes(["read", "activity:read_all"], ["read"]) == ("activity:read_all",)
    assert missing_scopes(["read"], ["read", "profile:read_all"]) == ()


@pytest.mark.parametrize(
    ("attributes", "deauthorized"),
    [
        ({"updates": {"authorized": "false"}}, True),
        ({"updates": {"authorized": False}}, True),
        ({"updates": {"authorized": "FALSE "}}, True),
        ({"updates": {"authorized": "true"}}, False),
        ({"updates": {"authorized": True}}, False),
        ({"updates": {"title": "Messy"}}, False),
        ({"updates": "authorized=false"}, False),
        ({}, False),
    ],
)
def test_strava_deauthorization_accepts_the_string_and_the_boolean(
    attributes: dict[str, object], deauthorized: bool
) -> None:
    assert strava_deauthorized(attributes) is deauthorized


def test_google_products_share_one_grant() -> None:
    assert grant_family("google_fit") == grant_family("google_calendar") == "google"
    assert grant_family("strava") == "strava"


def test_last_use_is_written_at_most_once_per_resolution() -> None:
    assert should_touch(None, NOW, 60)
    assert not should_touch(NOW - timedelta(seconds=30), NOW, 60)
    assert should_touch(NOW - timedelta(seconds=60), NOW, 60)
