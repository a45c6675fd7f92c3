"""WHOOP OAuth emulation (PROVIDERS.md §7.1, §7.5): the redirect rules, state, consent
controls, exchange, rotation on every refresh (old refresh and access tokens die), racing
refreshes, revocation and Hydra's error bodies.

Also home of the helpers the other ``test_whoop_*`` files share."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import ClientResponse
from provider_sandbox.core import Sandbox

from tests.provider_payloads import PAYLOADS
from tests.sandbox.conftest import Client

pytestmark = pytest.mark.service

CLIENT_ID = "whoop-client"
SECRET = "whoop-secret"
REDIRECT = "https://app.example.com/connect/whoop/callback"
AUTH = "/whoop/oauth/oauth2/auth"
TOKEN = "/whoop/oauth/oauth2/token"
API = "/whoop/developer"
ALL_SCOPES = [
    "read:recovery",
    "read:cycles",
    "read:workout",
    "read:sleep",
    "read:profile",
    "read:body_measurement",
    "offline",
]
INVALID_GRANT = {
    "error": "invalid_grant",
    "error_description": "The provided authorization grant (e.g., authorization code, "
    "resource owner credentials) or refresh token is invalid, expired, revoked, does not "
    "match the redirection URI used in the authorization request, or was issued to another "
    "client.",
}


def payload(name: str) -> Any:
    return json.loads((PAYLOADS / name).read_text())


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "null"


def assert_shape(
    ours: Any, example: Any, path: str = "$", optional: frozenset[str] = frozenset()
) -> None:
    """Same keys, nesting and JSON value types (integers apart from other numbers) as
    ``example``; a null there matches anything; keys in ``optional`` may be missing."""
    if example is None:
        return
    assert json_type(ours) == json_type(example), f"{path}: {ours!r} vs {example!r}"
    if isinstance(example, dict):
        expected = set(example)
        assert set(ours) <= expected, f"{path}: extra keys {sorted(set(ours) - expected)}"
        missing = expected - set(ours) - optional
        assert not missing, f"{path}: missing keys {sorted(missing)}"
        for key in ours:
            assert_shape(ours[key], example[key], f"{path}.{key}", optional)
    elif isinstance(example, list) and example:
        for index, item in enumerate(ours):
            assert_shape(item, example[0], f"{path}[{index}]", optional)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def user_id(sandbox: Sandbox, hint: str) -> int:
    return int(sandbox.accounts.get_or_create("whoop", hint).id)


async def issue_token(client: Client, user: int, scopes: list[str] | None = None) -> dict[str, Any]:
    body = {} if scopes is None else {"scopes": scopes}
    resp = await client.post(f"/_sandbox/whoop/users/{user}/tokens", json=body)
    assert resp.status == 200, await resp.text()
    issued: dict[str, Any] = await resp.json()
    return issued


async def generate(client: Client, user: int, kind: str, n: int) -> list[dict[str, Any]]:
    resp = await client.post(f"/_sandbox/whoop/users/{user}/{kind}", json={"generate": n})
    assert resp.status == 201, await resp.text()
    records: list[dict[str, Any]] = (await resp.json())["records"]
    return records


async def configure(client: Client, **settings: Any) -> None:
    resp = await client.post("/_sandbox/whoop/config", json=settings)
    assert resp.status == 200, await resp.text()


async def authorize(client: Client, **overrides: str) -> ClientResponse:
    params = {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": " ".join(ALL_SCOPES),
        "state": "csrf-state-0123",
        **overrides,
    }
    params = {k: v for k, v in params.items() if v != "<absent>"}
    return await client.get(AUTH, params=params, allow_redirects=False)


def redirect_params(resp: ClientResponse) -> dict[str, str]:
    assert resp.status == 302, resp.status
    location = urlsplit(resp.headers["Location"])
    return {k: v[0] for k, v in parse_qs(location.query).items()}


async def connect(
    client: Client, hint: str = "alice@example.com", scopes: list[str] | None = None
) -> dict[str, Any]:
    """The whole consent flow; answers the token response."""
    resp = await authorize(client, login_hint=hint, scope=" ".join(scopes or ALL_SCOPES))
    code = redirect_params(resp)["code"]
    token = await client.post(
        TOKEN,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "redirect_uri": REDIRECT,
        },
    )
    assert token.status == 200, await token.text()
    body: dict[str, Any] = await token.json()
    return body


async def refresh(client: Client, refresh_token: str, *, as_json: bool = False) -> ClientResponse:
    form = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "scope": "offline",
    }
    if as_json:
        return await client.post(TOKEN, json=form)
    return await client.post(TOKEN, data=form)


async def api_status(client: Client, access_token: str, path: str = "/v2/cycle") -> int:
    resp = await client.get(API + path, headers=bearer(access_token))
    return resp.status


# -- authorize -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example.com/cb",
        "whoop://example/redirect",
        "http://localhost:8080/cb",
        "http://127.0.0.1:9/connect/whoop/callback?x=1",
    ],
)
async def test_authorize_accepts_https_whoop_and_loopback_redirects(
    client: Client, uri: str
) -> None:
    params = redirect_params(await authorize(client, redirect_uri=uri))
    assert params["code"]
    assert params["state"] == "csrf-state-0123"
    assert set(params["scope"].split()) == set(ALL_SCOPES)


@pytest.mark.parametrize("uri", ["http://app.example.com/cb", "ftp://x/cb", "<absent>", "/cb"])
async def test_authorize_refuses_other_redirects_without_redirecting(
    client: Client, uri: str
) -> None:
    resp = await authorize(client, redirect_uri=uri)
    assert resp.status == 400
    body = await resp.json()
    assert body["error"] == "invalid_request"
    assert "Location" not in resp.headers


async def test_authorize_enforces_registered_redirects(client: Client) -> None:
    await configure(client, redirect_uris=[REDIRECT])
    assert (await authorize(client)).status == 302
    other = await authorize(client, redirect_uri="https://app.example.com/elsewhere")
    assert other.status == 400
    assert (await other.json())["error"] == "invalid_request"


async def test_authorize_refuses_unknown_client(client: Client) -> None:
    resp = await authorize(client, client_id="someone-else")
    assert resp.status == 401
    assert (await resp.json())["error"] == "invalid_client"


@pytest.mark.parametrize("state", ["short", "<absent>", "1234567"])
async def test_authorize_wants_a_state_of_eight_characters(client: Client, state: str) -> None:
    params = redirect_params(await authorize(client, state=state))
    assert params["error"] == "invalid_state"
    assert "code" not in params
    if state != "<absent>":
        assert params["state"] == state


async def test_authorize_refuses_bad_response_type_and_unknown_scope(client: Client) -> None:
    assert redirect_params(await authorize(client, response_type="token"))["error"] == (
        "unsupported_response_type"
    )
    unknown = redirect_params(await authorize(client, scope="read:recovery read:everything"))
    assert unknown["error"] == "invalid_scope"
    assert unknown["state"] == "csrf-state-0123"


async def test_authorize_acts_as_login_hint_account(client: Client, sandbox: Sandbox) -> None:
    first = await connect(client, "bob@example.com")
    second = await connect(client, "bob@example.com")
    anonymous = await connect(client, "<absent>")
    owners = {sandbox.tokens.access[t["access_token"]].account_id for t in (first, second)}
    assert owners == {str(user_id(sandbox, "bob@example.com"))}
    assert sandbox.tokens.access[anonymous["access_token"]].account_id not in owners
    listed = await (await client.get("/_sandbox/whoop/accounts")).json()
    assert len(listed["accounts"]) == 2


async def test_refusal_and_partial_consent_controls(client: Client) -> None:
    resp = await client.post("/_sandbox/whoop/authorize_mode", json={"mode": "deny"})
    assert resp.status == 200
    denied = redirect_params(await authorize(client))
    assert denied["error"] == "access_denied"
    assert denied["state"] == "csrf-state-0123"
    await client.post(
        "/_sandbox/whoop/authorize_mode",
        json={"mode": "approve", "scopes": ["read:sleep", "read:cycles"]},
    )
    granted = await connect(client, scopes=["read:sleep", "read:recovery", "offline"])
    assert granted["scope"] == "read:sleep"
    assert "refresh_token" not in granted
    assert await api_status(client, granted["access_token"], "/v2/activity/sleep") == 200
    assert await api_status(client, granted["access_token"], "/v2/recovery") == 401
    bad = await client.post("/_sandbox/whoop/authorize_mode", json={"mode": "maybe"})
    assert bad.status == 400


# -- token endpoint --------------------------------------------------------------------


async def test_exchange_answers_whoop_token_response(client: Client) -> None:
    body = await connect(client)
    assert body["expires_in"] == 3600
    assert body["token_type"] == "bearer"
    assert set(body["scope"].split()) == set(ALL_SCOPES)
    assert body["refresh_token"]
    assert_shape(body, payload("whoop_token_refresh_response.json"))


async def test_no_refresh_token_without_offline(client: Client) -> None:
    body = await connect(client, scopes=["read:recovery", "read:sleep"])
    assert "refresh_token" not in body
    assert body["scope"] == "read:recovery read:sleep"
    assert await api_status(client, body["access_token"], "/v2/recovery") == 200


async def test_exchange_accepts_json_and_basic_auth(client: Client) -> None:
    code = redirect_params(await authorize(client))["code"]
    resp = await client.post(
        TOKEN,
        json={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
        headers={
            "Authorization": "Basic " + base64.b64encode(b"whoop-client:whoop-secret").decode()
        },
    )
    assert resp.status == 200
    assert (await resp.json())["token_type"] == "bearer"


async def test_exchange_errors(client: Client) -> None:
    code = redirect_params(await authorize(client))["code"]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": CLIENT_ID,
        "client_secret": "wrong",
        "redirect_uri": REDIRECT,
    }
    bad_secret = await client.post(TOKEN, data=form)
    assert bad_secret.status == 401
    assert (await bad_secret.json())["error"] == "invalid_client"
    wrong_uri = await client.post(
        TOKEN, data={**form, "client_secret": SECRET, "redirect_uri": "https://x.example/cb"}
    )
    assert wrong_uri.status == 400
    assert await wrong_uri.json() == INVALID_GRANT
    unsupported = await client.post(
        TOKEN, data={**form, "client_secret": SECRET, "grant_type": "password"}
    )
    assert (await unsupported.json())["error"] == "unsupported_grant_type"
    missing = await client.post(TOKEN, data={"client_id": CLIENT_ID, "client_secret": SECRET})
    assert (await missing.json())["error"] == "invalid_request"


async def test_code_is_single_use_and_replay_kills_its_tokens(client: Client) -> None:
    code = redirect_params(await authorize(client))["code"]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "redirect_uri": REDIRECT,
    }
    first = await (await client.post(TOKEN, data=form)).json()
    replay = await client.post(TOKEN, data=form)
    assert replay.status == 400
    assert await replay.json() == INVALID_GRANT
    assert await api_status(client, first["access_token"]) == 401
    assert (await refresh(client, first["refresh_token"])).status == 400


async def test_code_expires(client: Client, sandbox: Sandbox) -> None:
    code = redirect_params(await authorize(client))["code"]
    sandbox.clock.advance(601)
    resp = await client.post(
        TOKEN,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "redirect_uri": REDIRECT,
        },
    )
    assert await resp.json() == INVALID_GRANT


async def test_every_refresh_rotates_and_kills_earlier_tokens(
    client: Client, sandbox: Sandbox
) -> None:
    first = await connect(client)
    resp = await refresh(client, first["refresh_token"])
    assert resp.status == 200
    second = await resp.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["expires_in"] == 3600
    assert set(second["scope"].split()) == set(ALL_SCOPES)
    # The previous access token dies at once, unlike Strava's.
    assert await api_status(client, first["access_token"]) == 401
    assert await api_status(client, second["access_token"]) == 200
    reused = await refresh(client, first["refresh_token"])
    assert reused.status == 400
    assert await reused.json() == INVALID_GRANT
    third = await (await refresh(client, second["refresh_token"], as_json=True)).json()
    assert await api_status(client, second["access_token"]) == 401
    assert await api_status(client, third["access_token"]) == 200
    assert sandbox.stats.refreshes["whoop"] == 2


async def test_the_second_of_two_racing_refreshes_fails(client: Client) -> None:
    first = await connect(client)
    answers = await asyncio.gather(
        refresh(client, first["refresh_token"]), refresh(client, first["refresh_token"])
    )
    assert sorted(r.status for r in answers) == [200, 400]
    loser = next(r for r in answers if r.status == 400)
    assert await loser.json() == INVALID_GRANT


async def test_refresh_errors(client: Client) -> None:
    first = await connect(client)
    assert await (await refresh(client, "not-a-token")).json() == INVALID_GRANT
    wider = await client.post(
        TOKEN,
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "scope": "offline read:everything",
        },
    )
    assert (await wider.json())["error"] == "invalid_scope"
    # A refused refresh leaves the grant alive.
    assert (await refresh(client, first["refresh_token"])).status == 200


async def test_access_token_expires_after_an_hour(client: Client, sandbox: Sandbox) -> None:
    body = await connect(client)
    sandbox.clock.advance(3599)
    assert await api_status(client, body["access_token"]) == 200
    sandbox.clock.advance(2)
    assert await api_status(client, body["access_token"]) == 401
    assert (await refresh(client, body["refresh_token"])).status == 200


async def test_revoking_access_kills_every_token(client: Client) -> None:
    body = await connect(client)
    resp = await client.delete(API + "/v2/user/access", headers=bearer(body["access_token"]))
    assert resp.status == 204
    assert await resp.read() == b""
    assert await api_status(client, body["access_token"]) == 401
    assert await (await refresh(client, body["refresh_token"])).json() == INVALID_GRANT
    again = await client.delete(API + "/v2/user/access", headers=bearer(body["access_token"]))
    assert again.status == 401


async def test_injected_token_fault_speaks_hydra(client: Client) -> None:
    await client.post(
        "/_sandbox/faults",
        json={"provider": "whoop", "endpoint": "POST /token", "status": 503, "count": 1},
    )
    code = redirect_params(await authorize(client))["code"]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "redirect_uri": REDIRECT,
    }
    failed = await client.post(TOKEN, data=form)
    assert failed.status == 503
    assert (await failed.json())["error"] == "temporarily_unavailable"
    assert (await client.post(TOKEN, data=form)).status == 200
    stats = await (await client.get("/_sandbox/stats")).json()
    assert stats["calls"]["whoop POST /token"] == 2
    assert stats["calls"]["whoop GET /auth"] == 1
