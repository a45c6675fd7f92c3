"""The connect flow's pure parts: the sealed OAuth state, PKCE, scopes, return_to."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from webhook_gateway._connect_providers import (
    PROVIDERS,
    granted_scopes,
    outcome_url,
    parse_allowlist,
    return_to_allowed,
)
from webhook_gateway.state import (
    ConnectState,
    StateExpired,
    StateInvalid,
    code_challenge,
    derive_key,
    new_code_verifier,
    seal,
    unseal,
)

pytestmark = pytest.mark.unit

KEY = derive_key("x" * 40)
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
STATE = ConnectState(
    user_id="u-1",
    provider="google_fit",
    return_to="http://localhost:3000/done?tab=2",
    expires_at=int(NOW.timestamp()) + 600,
    nonce="n" * 22,
    code_verifier="v" * 64,
    scopes=("openid", "https://www.googleapis.com/auth/fitness.activity.read"),
)


def test_state_round_trips_and_hides_its_contents() -> None:
    token = seal(STATE, KEY)
    assert unseal(token, KEY, "google_fit", NOW) == STATE
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert b"vvvv" not in raw
    assert b"localhost" not in raw
    assert token.replace("-", "").replace("_", "").isalnum()  # url-safe, unpadded
    assert seal(STATE, KEY) != token  # a fresh nonce each time


def test_state_is_bound_to_key_provider_and_bytes() -> None:
    token = seal(STATE, KEY)
    with pytest.raises(StateInvalid):
        unseal(token, derive_key("y" * 40), "google_fit", NOW)
    with pytest.raises(StateInvalid):
        unseal(token, KEY, "google_calendar", NOW)
    for i in (0, 5, len(token) // 2, len(token) - 2):
        flipped = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
        with pytest.raises(StateInvalid):
            unseal(flipped, KEY, "google_fit", NOW)
    for junk in ("", "short", "!!!!", "A" * 9000, token[:-10]):
        with pytest.raises(StateInvalid):
            unseal(junk, KEY, "google_fit", NOW)


def test_expired_state_still_says_where_to_return() -> None:
    token = seal(STATE, KEY)
    later = datetime.fromtimestamp(STATE.expires_at, UTC)
    with pytest.raises(StateExpired) as caught:
        unseal(token, KEY, "google_fit", later)
    assert caught.value.state.return_to == STATE.return_to


def test_pkce_s256_matches_rfc_7636_appendix_b() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert code_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    fresh = new_code_verifier()
    assert 43 <= len(fresh) <= 128


def test_required_scopes_per_provider() -> None:
    strava = PROVIDERS["strava"]
    assert strava.missing(granted_scopes("read,activity:read_all")) == []
    assert strava.missing(granted_scopes("read,activity:read")) == []
    assert strava.missing(granted_scopes("read")) == ["activity:read"]
    whoop = PROVIDERS["whoop"]
    assert whoop.missing(whoop.scopes) == []
    assert whoop.missing(s for s in whoop.scopes if s != "offline") == ["offline"]
    calendar = PROVIDERS["google_calendar"]
    assert calendar.missing(["openid"]) == ["https://www.googleapis.com/auth/calendar"]
    fit = PROVIDERS["google_fit"]
    assert len(fit.missing(["openid"])) == 5
    assert fit.missing(fit.scopes) == []
    # Distance reads need location: a grant without it fails every daily aggregate.
    location = "https://www.googleapis.com/auth/fitness.location.read"
    assert fit.missing(s for s in fit.scopes if s != location) == [location]


def test_return_to_allowlist() -> None:
    allow = parse_allowlist("http://localhost, http://127.0.0.1,https://app.example.com:8443")
    assert return_to_allowed("http://localhost:5173/cb", allow)
    assert return_to_allowed("http://localhost/cb", allow)
    assert return_to_allowed("http://127.0.0.1:9/", allow)
    assert return_to_allowed("https://app.example.com:8443/x", allow)
    for refused in (
        "https://localhost/cb",  # another scheme
        "https://app.example.com/x",  # another port than the entry's
        "http://localhost.evil.com/",
        "http://localhost@evil.com/",
        "//localhost/cb",
        "/relative",
        "javascript:alert(1)",
        "",
        "http://localhost/" + "a" * 3000,
    ):
        assert not return_to_allowed(refused, allow), refused
    with pytest.raises(ValueError, match="not an origin"):
        parse_allowlist("localhost")


def test_outcome_keeps_the_apps_query() -> None:
    url = outcome_url("http://localhost:3000/done?tab=2#top", "whoop", "access_denied")
    assert url == (
        "http://localhost:3000/done?tab=2&connect=error&provider=whoop&reason=access_denied#top"
    )
    assert outcome_url("http://localhost/", "strava", None).endswith(
        "?connect=success&provider=strava"
    )
