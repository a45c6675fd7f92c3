"""Google OAuth emulation (PROVIDERS.md §4.4): authorize, exchange, refresh, revoke, the
refresh-token death rules, and the ``google_grant`` check the Google APIs rely on."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from provider_sandbox.app import create_app
from provider_sandbox.config import AppCredentials, SandboxConfig
from provider_sandbox.core import Grant, Sandbox
from provider_sandbox.providers._google_oauth_state import OAuthSettings
from provider_sandbox.providers.google_oauth import google_grant

from tests.provider_payloads import PAYLOADS
from tests.sandbox.conftest import Client

pytestmark = pytest.mark.service

CLIENT_ID = "g-client.apps.googleusercontent.com"
SECRET = "google-secret"
REDIRECT = "http://127.0.0.1:9/connect/google_fit/callback?flow=1"
AUTH = "https://www.googleapis.com/auth/"
FIT = AUTH + "fitness.activity.read"
HEART = AUTH + "fitness.heart_rate.read"
CAL = AUTH + "calendar"
DAY = 86400


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "null"


def assert_shape(ours: Any, example: Any, path: str = "$") -> None:
    """Same keys, nesting and JSON value types as ``example``; a null there matches
    anything, an empty list any list; list items are checked against the item at the
    same index (or the example's last)."""
    if example is None:
        return
    assert json_type(ours) == json_type(example), f"{path}: {ours!r} vs {example!r}"
    if isinstance(example, dict):
        assert set(ours) == set(example), f"{path}: keys {sorted(ours)} vs {sorted(example)}"
        for key, value in example.items():
            assert_shape(ours[key], value, f"{path}.{key}")
    elif isinstance(example, list) and example:
        for index, item in enumerate(ours):
            assert_shape(item, example[min(index, len(example) - 1)], f"{path}[{index}]")


def _drop_none(params: dict[str, str | None]) -> dict[str, str]:
    return {k: v for k, v in params.items() if v is not None}


async def authorize_raw(client: Client, **params: str | None) -> ClientResponse:
    query = _drop_none(
        {
            "client_id": CLIENT_ID,
            "redirect_uri": REDIRECT,
            "response_type": "code",
            "scope": FIT,
            "access_type": "offline",
            **params,
        }
    )
    return await client.get("/google/o/oauth2/v2/auth", params=query, allow_redirects=False)


async def authorize(client: Client, **params: str | None) -> dict[str, str]:
    """Run the consent screen; the query Google appends to the redirect URI."""
    resp = await authorize_raw(client, **params)
    assert resp.status == 302, await resp.text()
    location = resp.headers["Location"]
    assert location.startswith(REDIRECT.split("?")[0])
    query = dict(parse_qsl(urlsplit(location).query))
    assert query.pop("flow") == "1"  # the redirect URI's own query survives
    return query


async def exchange(client: Client, code: str, **extra: str) -> ClientResponse:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "redirect_uri": REDIRECT,
        **extra,
    }
    return await client.post("/google/token", data=form)


async def refresh(client: Client, refresh_token: str, **extra: str) -> ClientResponse:
    form = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        **extra,
    }
    return await client.post("/google/token", data=form)


async def connect(client: Client, **params: str | None) -> dict[str, Any]:
    """Authorize and exchange: the token response."""
    query = await authorize(client, **params)
    resp = await exchange(client, query["code"])
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def assert_invalid_grant(
    resp: ClientResponse, description: str = "Token has been expired or revoked."
) -> None:
    """The §4.3 body: 400, JSON in UTF-8, exactly ``error`` and ``error_description``."""
    assert resp.status == 400
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert await resp.json() == {"error": "invalid_grant", "error_description": description}


# -- authorize ---------------------------------------------------------------------------------


async def test_authorize_checks_client_and_exact_redirect_uri(client: Client) -> None:
    missing = await authorize_raw(client, client_id=None)
    assert missing.status == 400
    assert "invalid_request" in await missing.text()
    unknown = await authorize_raw(client, client_id="someone-else")
    assert unknown.status == 401
    assert "invalid_client" in await unknown.text()
    assert (await authorize_raw(client, redirect_uri="not a url")).status == 400
    # Once URIs are registered, only an exact string match passes.
    await client.post("/_sandbox/google/settings", json={"redirect_uris": [REDIRECT]})
    for near_miss in (REDIRECT + "&x=1", REDIRECT.replace("127.0.0.1", "localhost")):
        resp = await authorize_raw(client, redirect_uri=near_miss)
        assert resp.status == 400
        assert "redirect_uri_mismatch" in await resp.text()
        assert "Location" not in resp.headers
    query = await authorize(client, state="xyz 1/2")
    assert query["state"] == "xyz 1/2"
    assert query["code"].startswith("4/0")


async def test_scopes_are_space_separated_and_validated(client: Client) -> None:
    query = await authorize(client, scope=f"{FIT}  {HEART} email")
    assert query["scope"].split(" ") == sorted([FIT, HEART, AUTH + "userinfo.email"])
    token = await (await exchange(client, query["code"])).json()
    assert set(token["scope"].split(" ")) == {FIT, HEART, AUTH + "userinfo.email"}
    bad = await authorize_raw(client, scope=f"{FIT},{HEART}")
    assert bad.status == 400
    assert "invalid_scope" in await bad.text()
    assert (await authorize_raw(client, scope="")).status == 400
    assert (await authorize_raw(client, response_type="token")).status == 400


async def test_login_hint_names_the_account_else_a_new_one(
    client: Client, sandbox: Sandbox
) -> None:
    first = await connect(client, login_hint="ann@example.com")
    again = await connect(client, login_hint="ann@example.com", prompt="consent")
    anonymous = await connect(client)
    owner = sandbox.tokens.access[first["access_token"]].account_id
    assert sandbox.tokens.access[again["access_token"]].account_id == owner
    assert sandbox.tokens.access[anonymous["access_token"]].account_id != owner
    assert sandbox.accounts.get_or_create("google_fit", "ann@example.com").id == owner


async def test_refresh_token_only_offline_and_on_consent(client: Client) -> None:
    online = await connect(client, login_hint="a@example.com", access_type=None)
    assert "refresh_token" not in online
    # Consent was already given (online), so an offline request without prompt=consent
    # shows no consent screen and gets no refresh token: Google's well-known trap.
    silent = await connect(client, login_hint="a@example.com")
    assert "refresh_token" not in silent
    forced = await connect(client, login_hint="a@example.com", prompt="consent")
    assert forced["refresh_token"].startswith("1//")
    first_offline = await connect(client, login_hint="b@example.com")
    assert "refresh_token" in first_offline
    # A scope not granted before brings the consent screen back.
    wider = await connect(client, login_hint="b@example.com", scope=f"{FIT} {HEART}")
    assert "refresh_token" in wider
    none_needed = await authorize(client, login_hint="c@example.com", prompt="none")
    assert none_needed["error"] == "consent_required"


async def test_access_denied_and_partial_grant_controls(client: Client) -> None:
    denied = await client.post("/_sandbox/google/authorize_mode", json={"mode": "deny"})
    assert (await denied.json())["mode"] == "deny"
    query = await authorize(client, state="s1")
    assert query == {"error": "access_denied", "state": "s1"}
    await client.post("/_sandbox/google/authorize_mode", json={"mode": "approve", "scopes": [FIT]})
    partial = await authorize(client, scope=f"{FIT} {HEART}")
    assert partial["scope"] == FIT
    token = await (await exchange(client, partial["code"])).json()
    assert token["scope"] == FIT
    bad = await client.post("/_sandbox/google/authorize_mode", json={"mode": "maybe"})
    assert bad.status == 400


async def test_include_granted_scopes_merges_earlier_grants(client: Client) -> None:
    await connect(client, login_hint="inc@example.com", scope=CAL)
    narrow = await authorize(client, login_hint="inc@example.com", scope=FIT)
    assert narrow["scope"] == FIT
    merged = await authorize(
        client, login_hint="inc@example.com", scope=FIT, include_granted_scopes="true"
    )
    assert merged["scope"].split(" ") == sorted([CAL, FIT])
    token = await (await exchange(client, merged["code"])).json()
    assert set(token["scope"].split(" ")) == {CAL, FIT}


# -- exchange ----------------------------------------------------------------------------------


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def test_pkce_s256_is_verified_at_exchange(client: Client) -> None:
    verifier = "v" * 43 + "-._~0123"
    params = {"code_challenge": s256(verifier), "code_challenge_method": "S256"}
    wrong = await authorize(client, **params)
    await assert_invalid_grant(
        await exchange(client, wrong["code"], code_verifier="w" * 50), "Invalid code verifier."
    )
    missing = await authorize(client, **params)
    await assert_invalid_grant(await exchange(client, missing["code"]), "Missing code verifier.")
    right = await authorize(client, **params)
    resp = await exchange(client, right["code"], code_verifier=verifier)
    assert resp.status == 200
    plain = await authorize(client, code_challenge=verifier)
    assert (await exchange(client, plain["code"], code_verifier=verifier)).status == 200
    assert (await authorize_raw(client, code_challenge="short")).status == 400
    assert (await authorize_raw(client, code_challenge_method="S512")).status == 400


async def test_code_is_single_use_and_expires(client: Client, sandbox: Sandbox) -> None:
    query = await authorize(client)
    assert (await exchange(client, query["code"])).status == 200
    await assert_invalid_grant(await exchange(client, query["code"]), "Bad Request")
    stale = await authorize(client)
    sandbox.clock.advance(601)
    await assert_invalid_grant(await exchange(client, stale["code"]), "Bad Request")
    await assert_invalid_grant(await exchange(client, "4/0nope"), "Malformed auth code.")
    other = await authorize(client)
    mismatch = await exchange(client, other["code"], redirect_uri="http://127.0.0.1:9/other")
    assert mismatch.status == 400
    assert (await mismatch.json())["error"] == "redirect_uri_mismatch"
    # A mismatch does not burn the code.
    assert (await exchange(client, other["code"])).status == 200


async def test_exchange_response_fields(client: Client) -> None:
    body = await connect(client, scope=f"openid email {FIT}", login_hint="id@example.com")
    assert set(body) == {
        "access_token",
        "expires_in",
        "refresh_token",
        "scope",
        "token_type",
        "id_token",
    }
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3599
    claims = json.loads(base64.urlsafe_b64decode(body["id_token"].split(".")[1] + "=="))
    assert claims["aud"] == CLIENT_ID
    assert claims["email"] == "id@example.com"


async def test_invalid_client_and_grant_type(client: Client) -> None:
    query = await authorize(client)
    wrong_secret = await exchange(client, query["code"], client_secret="nope")
    assert wrong_secret.status == 401
    assert (await wrong_secret.json())["error"] == "invalid_client"
    unknown = await exchange(client, query["code"], client_id="other.apps.googleusercontent.com")
    assert unknown.status == 401
    assert (await unknown.json()) == {
        "error": "invalid_client",
        "error_description": "The OAuth client was not found.",
    }
    no_type = await client.post("/google/token", data={"code": query["code"]})
    assert no_type.status == 400
    assert (await no_type.json())["error"] == "unsupported_grant_type"
    # HTTP Basic client authentication works as well as form fields.
    basic = base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
    resp = await client.post(
        "/google/token",
        data={"grant_type": "authorization_code", "code": query["code"], "redirect_uri": REDIRECT},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert resp.status == 200


# -- refresh -----------------------------------------------------------------------------------


async def test_refresh_never_returns_a_refresh_token(client: Client, sandbox: Sandbox) -> None:
    token = await connect(client)
    for _ in range(2):
        resp = await refresh(client, token["refresh_token"])
        assert resp.status == 200
        body = await resp.json()
        assert "refresh_token" not in body
        assert body["expires_in"] == 3599
        assert body["scope"] == FIT
        assert sandbox.tokens.valid_access("google", body["access_token"]) is not None
    assert sandbox.stats.refreshes["google"] == 2
    await client.post("/_sandbox/google/settings", json={"expires_in": 120})
    assert (await (await refresh(client, token["refresh_token"])).json())["expires_in"] == 120


async def test_refresh_response_matches_google_sample(client: Client) -> None:
    example = json.loads((PAYLOADS / "google_token_refresh.json").read_text())
    token = await connect(client)
    body = await (await refresh(client, token["refresh_token"])).json()
    assert_shape(body, example)


async def test_unknown_refresh_token_is_invalid_grant(client: Client) -> None:
    await assert_invalid_grant(await refresh(client, "1//0not-a-token"))
    missing = await refresh(client, "")
    assert missing.status == 400
    assert (await missing.json())["error"] == "invalid_request"


async def test_user_revocation_kills_the_refresh_token(client: Client, sandbox: Sandbox) -> None:
    token = await connect(client, login_hint="rev@example.com")
    account = sandbox.accounts.get_or_create("google", "rev@example.com")
    resp = await client.post(f"/_sandbox/google/accounts/{account.id}/revoke")
    assert (await resp.json())["revoked"] >= 2
    await assert_invalid_grant(await refresh(client, token["refresh_token"]))
    assert sandbox.tokens.valid_access("google", token["access_token"]) is None
    # Revocation also forgets consent: the next offline connect gets a refresh token.
    assert "refresh_token" in await connect(client, login_hint="rev@example.com")


async def test_refresh_token_dies_after_six_months_unused(client: Client, sandbox: Sandbox) -> None:
    kept = await connect(client, login_hint="kept@example.com")
    idle = await connect(client, login_hint="idle@example.com")
    for _ in range(7):  # one refresh a month keeps the first alive
        sandbox.clock.advance(30 * DAY)
        assert (await refresh(client, kept["refresh_token"])).status == 200
    await assert_invalid_grant(await refresh(client, idle["refresh_token"]))


async def test_testing_mode_refresh_tokens_last_seven_days(
    client: Client, sandbox: Sandbox
) -> None:
    await client.post("/_sandbox/google/settings", json={"testing_mode": True})
    fit = await connect(client)
    basic = await connect(client, scope="openid email profile", login_hint="basic@example.com")
    sandbox.clock.advance(6 * DAY)
    assert (await refresh(client, fit["refresh_token"])).status == 200
    sandbox.clock.advance(DAY)
    await assert_invalid_grant(await refresh(client, fit["refresh_token"]))
    # Basic profile scopes are exempt from the Testing-mode expiry.
    assert (await refresh(client, basic["refresh_token"])).status == 200


async def test_live_refresh_token_cap_evicts_the_oldest(client: Client) -> None:
    await client.post("/_sandbox/google/settings", json={"refresh_token_cap": 3})
    grants = [
        await connect(client, login_hint="cap@example.com", prompt="consent") for _ in range(4)
    ]
    await assert_invalid_grant(await refresh(client, grants[0]["refresh_token"]))
    for grant in grants[1:]:
        assert (await refresh(client, grant["refresh_token"])).status == 200
    other = await connect(client, login_hint="other@example.com")
    assert (await refresh(client, other["refresh_token"])).status == 200


async def test_time_limited_grant(client: Client, sandbox: Sandbox) -> None:
    await client.post(
        "/_sandbox/google/authorize_mode",
        json={"mode": "approve", "refresh_token_expires_in": 3600},
    )
    token = await connect(client)
    assert token["refresh_token_expires_in"] == 3600
    sandbox.clock.advance(1800)
    body = await (await refresh(client, token["refresh_token"])).json()
    assert body["refresh_token_expires_in"] == 1800
    sandbox.clock.advance(1800)
    await assert_invalid_grant(await refresh(client, token["refresh_token"]))


async def test_password_change_only_kills_gmail_tokens(client: Client, sandbox: Sandbox) -> None:
    fit = await connect(client, login_hint="pw@example.com")
    gmail = await connect(
        client, login_hint="pw@example.com", scope="https://mail.google.com/", prompt="consent"
    )
    account = sandbox.accounts.get_or_create("google", "pw@example.com")
    resp = await client.post(f"/_sandbox/google/accounts/{account.id}/password_change")
    assert (await resp.json())["revoked"] == 1
    await assert_invalid_grant(await refresh(client, gmail["refresh_token"]))
    assert (await refresh(client, fit["refresh_token"])).status == 200


async def test_admin_restricted_scope_refuses_refresh(client: Client) -> None:
    token = await connect(client)
    await client.post("/_sandbox/google/settings", json={"restricted_scopes": [FIT]})
    resp = await refresh(client, token["refresh_token"])
    assert resp.status == 400
    assert (await resp.json())["error"] == "admin_policy_enforced"


# -- revoke ------------------------------------------------------------------------------------


async def test_revoking_the_access_token_kills_its_refresh_token(
    client: Client, sandbox: Sandbox
) -> None:
    token = await connect(client)
    resp = await client.post("/google/revoke", params={"token": token["access_token"]})
    assert resp.status == 200
    assert sandbox.tokens.valid_access("google", token["access_token"]) is None
    await assert_invalid_grant(await refresh(client, token["refresh_token"]))
    again = await client.post("/google/revoke", data={"token": token["access_token"]})
    assert again.status == 400
    assert (await again.json())["error"] == "invalid_token"


async def test_revoking_the_refresh_token_kills_the_pair(client: Client, sandbox: Sandbox) -> None:
    token = await connect(client)
    resp = await client.post("/google/revoke", data={"token": token["refresh_token"]})
    assert resp.status == 200
    assert sandbox.tokens.valid_access("google", token["access_token"]) is None
    await assert_invalid_grant(await refresh(client, token["refresh_token"]))
    assert (await client.post("/google/revoke", data={"token": "nope"})).status == 400
    assert (await client.post("/google/revoke")).status == 400


async def test_revocation_propagation_delay(client: Client, sandbox: Sandbox) -> None:
    await client.post("/_sandbox/google/settings", json={"revoke_delay_seconds": 60})
    token = await connect(client)
    assert (
        await client.post("/google/revoke", data={"token": token["access_token"]})
    ).status == 200
    assert sandbox.tokens.valid_access("google", token["access_token"]) is not None
    during = await (await refresh(client, token["refresh_token"])).json()
    sandbox.clock.advance(60)
    assert sandbox.tokens.valid_access("google", token["access_token"]) is None
    assert sandbox.tokens.valid_access("google", during["access_token"]) is None
    await assert_invalid_grant(await refresh(client, token["refresh_token"]))


# -- google_grant: what the Calendar and Fit APIs call ----------------------------------------


def _request(token: str | None) -> web.Request:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return make_mocked_request("GET", "/google/fitness/v1/users/me/sessions", headers=headers)


async def test_google_grant_401_and_403_bodies(client: Client, sandbox: Sandbox) -> None:
    token = await connect(client)
    granted = google_grant(sandbox, _request(token["access_token"]), frozenset({FIT, HEART}))
    assert isinstance(granted, Grant)
    assert granted.scopes == frozenset({FIT})
    narrow = google_grant(sandbox, _request(token["access_token"]), frozenset({CAL}))
    assert isinstance(narrow, web.Response)
    assert narrow.status == 403
    assert narrow.text is not None
    assert json.loads(narrow.text)["error"]["errors"][0]["reason"] == "insufficientPermissions"
    missing = google_grant(sandbox, _request(None), frozenset())
    assert isinstance(missing, web.Response)
    assert missing.status == 401
    sandbox.clock.advance(3599)
    expired = google_grant(sandbox, _request(token["access_token"]), frozenset({FIT}))
    assert isinstance(expired, web.Response)
    assert expired.status == 401
    assert expired.text is not None
    body = json.loads(expired.text)["error"]
    assert body["code"] == 401
    assert body["status"] == "UNAUTHENTICATED"
    assert body["message"].startswith("Request had invalid authentication credentials.")
    assert body["errors"][0]["reason"] == "authError"
    assert 'error="invalid_token"' in expired.headers["WWW-Authenticate"]


# -- control routes and robustness -------------------------------------------------------------


async def test_control_mints_tokens_for_an_account(client: Client, sandbox: Sandbox) -> None:
    created = await client.post("/_sandbox/google/accounts", json={"login_hint": "m@example.com"})
    assert created.status == 201
    account_id = (await created.json())["id"]
    resp = await client.post(
        f"/_sandbox/google/accounts/{account_id}/tokens", json={"scopes": [FIT, CAL]}
    )
    assert resp.status == 201
    body = await resp.json()
    assert set(body) == {"access_token", "expires_in", "refresh_token", "scope", "token_type"}
    assert body["scope"] == " ".join(sorted([CAL, FIT]))
    assert sandbox.tokens.valid_access("google", body["access_token"]) is not None
    assert (await refresh(client, body["refresh_token"])).status == 200
    assert (
        await client.post("/_sandbox/google/accounts/0/tokens", json={"scopes": [FIT]})
    ).status == 404
    bad_bodies: list[dict[str, Any]] = [
        {"scopes": []},
        {"scopes": ["nope"]},
        {"scopes": [FIT], "offline": "yes"},
    ]
    for bad in bad_bodies:
        resp = await client.post(f"/_sandbox/google/accounts/{account_id}/tokens", json=bad)
        assert resp.status == 400
    assert (await client.post("/_sandbox/google/accounts/0/revoke")).status == 404
    assert (await client.post("/_sandbox/google/settings", json={"expires_in": -1})).status == 400
    assert (await client.post("/_sandbox/google/settings", json={"colour": 1})).status == 400


async def test_reset_restores_settings_and_forgets_state(client: Client) -> None:
    await client.post("/_sandbox/google/settings", json={"expires_in": 60})
    await client.post("/_sandbox/google/authorize_mode", json={"mode": "deny"})
    await client.post("/_sandbox/reset")
    settings = await (await client.get("/_sandbox/google/settings")).json()
    assert settings["expires_in"] == 3599
    assert "code" in await authorize(client)


async def test_injected_token_faults_use_the_oauth_body(client: Client, sandbox: Sandbox) -> None:
    await client.post(
        "/_sandbox/faults",
        json={"provider": "google", "endpoint": "POST /token", "status": 429, "count": 1},
    )
    token_resp = await client.post("/google/token", data={"grant_type": "refresh_token"})
    assert token_resp.status == 429
    assert (await token_resp.json())["error"] == "rate_limit_exceeded"
    assert sandbox.stats.rate_limited["google POST /token"] == 1
    assert sandbox.stats.calls["google POST /token"] == 1
    assert sandbox.stats.calls["google GET /o/oauth2/v2/auth"] == 0


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/google/token", {"data": b"\xff\xfe", "headers": {"Content-Type": "text/plain"}}),
        (
            "POST",
            "/google/token",
            {"data": b"{nope", "headers": {"Content-Type": "application/json"}},
        ),
        ("POST", "/google/token", {"json": [1, 2]}),
        (
            "POST",
            "/google/token",
            {
                "json": {
                    "grant_type": "authorization_code",
                    "client_id": CLIENT_ID,
                    "client_secret": SECRET,
                    "code": "x",
                    "redirect_uri": "y",
                }
            },
        ),
        (
            "POST",
            "/google/token",
            {"headers": {"Authorization": "Basic %%%"}, "data": {"grant_type": "refresh_token"}},
        ),
        (
            "POST",
            "/google/token",
            {
                "headers": {"Authorization": "Basic " + base64.b64encode(b"\xff").decode()},
                "data": {"grant_type": "refresh_token"},
            },
        ),
        ("POST", "/google/revoke", {"data": b"token=%ff%fe"}),
        (
            "GET",
            "/google/o/oauth2/v2/auth?client_id="
            + CLIENT_ID
            + "&redirect_uri=http://x/&response_type=code&scope="
            + FIT
            + "&prompt=none+consent",
            {},
        ),
        (
            "GET",
            "/google/o/oauth2/v2/auth?client_id="
            + CLIENT_ID
            + "&redirect_uri=http://x/&response_type=code&scope="
            + FIT
            + "&access_type=forever",
            {},
        ),
        (
            "GET",
            "/google/o/oauth2/v2/auth?client_id="
            + CLIENT_ID
            + "&redirect_uri=http://x/%23frag&response_type=code&scope=%00",
            {},
        ),
        ("POST", "/_sandbox/google/authorize_mode", {"data": b"[1"}),
        ("POST", "/_sandbox/google/authorize_mode", {"json": {"scopes": "x"}}),
        ("POST", "/_sandbox/google/accounts", {"json": {"login_hint": 5}}),
    ],
)
async def test_bad_input_is_a_4xx_never_a_500(
    client: Client, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    resp = await client.request(method, path, allow_redirects=False, **kwargs)
    assert 400 <= resp.status < 500, (resp.status, await resp.text())


async def test_settings_come_from_the_environment() -> None:
    settings = OAuthSettings.from_env(
        {
            "SANDBOX_GOOGLE_EXPIRES_IN": "120",
            "SANDBOX_GOOGLE_TESTING_MODE": "yes",
            "SANDBOX_GOOGLE_REDIRECT_URIS": "http://a/cb, http://b/cb",
            "SANDBOX_GOOGLE_REFRESH_TOKEN_CAP": "5",
            "SANDBOX_SEED": "3",
        }
    )
    assert settings.expires_in == 120
    assert settings.testing_mode is True
    assert settings.redirect_uris == ("http://a/cb", "http://b/cb")
    assert settings.refresh_token_cap == 5
    assert settings.revoke_delay_seconds == 0
    with pytest.raises(ValueError, match="refresh_token_cap"):
        OAuthSettings.from_env({"SANDBOX_GOOGLE_REFRESH_TOKEN_CAP": "0"})
    config = SandboxConfig(
        google=AppCredentials(CLIENT_ID, SECRET), extra={"SANDBOX_GOOGLE_EXPIRES_IN": "60"}
    )
    async with TestClient(TestServer(create_app(config))) as other:
        assert (await connect(other))["expires_in"] == 60
