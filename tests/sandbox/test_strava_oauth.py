"""Strava OAuth emulation (PROVIDERS.md §3.1, §3.5): both authorize URLs, refusal and
partial grants, exchange and refresh on both token paths, single-use codes, the
keep-if-more-than-an-hour rule, rotation modes, deauthorization and the error bodies.

Also home of the helpers the other ``test_strava_*`` files share."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from aiohttp import ClientResponse
from provider_sandbox.core import Sandbox

from tests.provider_payloads import PAYLOADS
from tests.sandbox.conftest import Client

pytestmark = pytest.mark.service

CLIENT_ID = "12345"
SECRET = "strava-secret"
REDIRECT = "http://127.0.0.1:9/connect/strava/callback?flow=1"
ACTIVITIES = "/strava/api/v3/athlete/activities"


def payload(name: str) -> Any:
    return json.loads((PAYLOADS / name).read_text())


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
    anything, and list items are checked against the example's first item."""
    if example is None:
        return
    assert json_type(ours) == json_type(example), f"{path}: {ours!r} vs {example!r}"
    if isinstance(example, dict):
        assert set(ours) == set(example), f"{path}: keys {sorted(ours)} vs {sorted(example)}"
        for key, value in example.items():
            assert_shape(ours[key], value, f"{path}.{key}")
    elif isinstance(example, list) and example:
        for index, item in enumerate(ours):
            assert_shape(item, example[0], f"{path}[{index}]")


def strava_error(resource: str, field: str, code: str, message: str) -> dict[str, Any]:
    return {"message": message, "errors": [{"resource": resource, "field": field, "code": code}]}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def athlete_id(sandbox: Sandbox, hint: str) -> int:
    return int(sandbox.accounts.get_or_create("strava", hint).id)


async def issue_token(
    client: Client, athlete: int, scopes: list[str] | None = None
) -> dict[str, Any]:
    body = {} if scopes is None else {"scopes": scopes}
    resp = await client.post(f"/_sandbox/strava/athletes/{athlete}/tokens", json=body)
    assert resp.status == 201
    issued: dict[str, Any] = await resp.json()
    return issued


async def configure(client: Client, **settings: Any) -> dict[str, Any]:
    resp = await client.post("/_sandbox/strava/config", json=settings)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def authorize(
    client: Client, path: str = "/strava/oauth/authorize", **params: str
) -> ClientResponse:
    query = {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "approval_prompt": "auto",
        "scope": "read,activity:read_all",
        "state": "st-1",
        **params,
    }
    return await client.get(path, params=query, allow_redirects=False)


def redirected(resp: ClientResponse) -> dict[str, str]:
    assert resp.status == 302, resp.status
    return dict(parse_qsl(urlsplit(resp.headers["Location"]).query, keep_blank_values=True))


async def token_call(client: Client, path: str = "/strava/oauth/token", **params: str) -> Any:
    form = {"client_id": CLIENT_ID, "client_secret": SECRET, **params}
    resp = await client.post(path, data=form)
    return resp.status, await resp.json()


async def connect(client: Client, hint: str = "alice") -> dict[str, Any]:
    code = redirected(await authorize(client, login_hint=hint))["code"]
    status, body = await token_call(client, code=code, grant_type="authorization_code")
    assert status == 200
    result: dict[str, Any] = body
    return result


# -- authorize ------------------------------------------------------------------------------


async def test_both_authorize_urls_redirect_with_code_granted_scope_and_state(
    client: Client, sandbox: Sandbox
) -> None:
    web = redirected(await authorize(client, login_hint="alice"))
    mobile = redirected(
        await authorize(client, "/strava/oauth/mobile/authorize", login_hint="alice")
    )
    for params in (web, mobile):
        assert params["state"] == "st-1"
        assert params["scope"] == "read,activity:read_all"
        assert params["flow"] == "1"  # the redirect_uri's own query survives
        assert len(params["code"]) >= 20
    assert web["code"] != mobile["code"]
    location = (await authorize(client)).headers["Location"]
    assert location.startswith("http://127.0.0.1:9/connect/strava/callback?")
    # login_hint names one athlete; without it, each consent is a new athlete
    assert len(sandbox.accounts.list("strava")) == 2
    first = await token_call(client, code=web["code"], grant_type="authorization_code")
    second = await token_call(client, code=mobile["code"], grant_type="authorization_code")
    assert first[1]["athlete"]["id"] == second[1]["athlete"]["id"]
    assert isinstance(first[1]["athlete"]["id"], int)


async def test_authorize_checks_client_id_and_the_redirect_domain(client: Client) -> None:
    for path in ("/strava/oauth/authorize", "/strava/oauth/mobile/authorize"):
        bad_client = await authorize(client, path, client_id="999")
        assert bad_client.status == 400
        assert await bad_client.json() == strava_error(
            "Application", "client_id", "invalid", "Bad Request"
        )
        assert (await authorize(client, path, redirect_uri="https://evil.example/")).status == 400
    foreign = await authorize(client, redirect_uri="https://evil.example/cb")
    assert foreign.status == 400
    assert (await foreign.json())["errors"][0]["field"] == "redirect_uri"
    assert (await authorize(client, redirect_uri="notaurl")).status == 400
    assert (await authorize(client, scope="read,everything")).status == 400
    assert (await authorize(client, response_type="token")).status == 400
    for local in ("http://localhost:8080/cb", "http://127.0.0.1/cb"):
        assert (await authorize(client, redirect_uri=local)).status == 302
    await configure(client, callback_domain="syncplane.example")
    assert (await authorize(client, redirect_uri="https://app.syncplane.example/cb")).status == 302
    assert (await authorize(client, redirect_uri="https://syncplane.example/cb")).status == 302
    assert (await authorize(client, redirect_uri="https://notsyncplane.example/cb")).status == 400


async def test_refusal_and_partial_grants_are_controllable(client: Client) -> None:
    resp = await client.post("/_sandbox/strava/authorize_mode", json={"mode": "deny"})
    assert resp.status == 200
    denied = redirected(await authorize(client))
    assert denied == {"flow": "1", "state": "st-1", "error": "access_denied"}

    await client.post(
        "/_sandbox/strava/authorize_mode",
        json={"mode": "approve", "scopes": ["read", "activity:read"]},
    )
    partial = redirected(await authorize(client, scope="read,activity:read_all,profile:read_all"))
    assert partial["scope"] == "read"  # boxes unticked; read cannot be refused
    partial = redirected(await authorize(client, scope="read,activity:read"))
    assert partial["scope"] == "read,activity:read"
    _, body = await token_call(client, code=partial["code"], grant_type="authorization_code")
    api = await client.get(ACTIVITIES, headers=bearer(body["access_token"]))
    assert api.status == 200

    # per-request knobs override the mode for one consent
    await client.post("/_sandbox/strava/authorize_mode", json={"mode": "approve"})
    assert "error" in redirected(await authorize(client, sandbox_decision="deny"))
    knob = redirected(await authorize(client, sandbox_scopes="activity:read_all"))
    assert knob["scope"] == "read,activity:read_all"
    knob = redirected(await authorize(client, scope="activity:read_all", sandbox_scopes="read"))
    assert knob["scope"] == ""
    bad = await client.post("/_sandbox/strava/authorize_mode", json={"mode": "maybe"})
    assert bad.status == 400


# -- token endpoint -------------------------------------------------------------------------


async def test_exchange_on_both_paths_with_query_or_form_params(
    client: Client, sandbox: Sandbox
) -> None:
    code = redirected(await authorize(client, login_hint="bob"))["code"]
    resp = await client.post(
        "/strava/api/v3/oauth/token",
        params={
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "code": code,
            "grant_type": "authorization_code",
        },
    )
    assert resp.status == 200
    exchanged = await resp.json()
    assert_shape(exchanged, payload("strava_token_exchange_response.json") | {"athlete": None})
    assert exchanged["token_type"] == "Bearer"
    athlete = exchanged["athlete"]
    assert athlete["id"] == athlete_id(sandbox, "bob")
    assert athlete["resource_state"] == 2
    assert {"firstname", "lastname", "username"} <= set(athlete)

    code = redirected(await authorize(client, login_hint="bob"))["code"]
    status, form_body = await token_call(client, code=code, grant_type="authorization_code")
    assert status == 200
    assert "athlete" in form_body
    assert sandbox.stats.calls["strava POST /oauth/token"] == 2

    status, refreshed = await token_call(
        client,
        "/strava/api/v3/oauth/token",
        grant_type="refresh_token",
        refresh_token=form_body["refresh_token"],
    )
    assert status == 200
    assert "athlete" not in refreshed
    assert_shape(refreshed, payload("strava_token_refresh_response.json"))
    assert sandbox.stats.refreshes["strava"] == 1


async def test_codes_are_single_use_and_short_lived(client: Client, sandbox: Sandbox) -> None:
    invalid_code = strava_error("AuthorizationCode", "code", "invalid", "Bad Request")
    code = redirected(await authorize(client))["code"]
    assert (await token_call(client, code=code, grant_type="authorization_code"))[0] == 200
    assert await token_call(client, code=code, grant_type="authorization_code") == (
        400,
        invalid_code,
    )
    assert await token_call(client, code="nope", grant_type="authorization_code") == (
        400,
        invalid_code,
    )
    stale = redirected(await authorize(client))["code"]
    sandbox.clock.advance(601)
    assert await token_call(client, code=stale, grant_type="authorization_code") == (
        400,
        invalid_code,
    )
    fresh = redirected(await authorize(client))["code"]
    status, body = await token_call(
        client, code=fresh, client_id="999", grant_type="authorization_code"
    )
    assert (status, body) == (
        400,
        strava_error("Application", "client_id", "invalid", "Bad Request"),
    )
    status, body = await token_call(client, code=fresh, client_secret="wrong")
    assert status == 400
    assert body["errors"][0]["field"] == "client_secret"
    status, body = await token_call(client, code=fresh, grant_type="password")
    assert status == 400
    # grant_type may be left out of an exchange, as Strava's older docs do
    assert (await token_call(client, code=fresh))[0] == 200


async def test_access_ttl_and_refresh_keeps_the_token_while_more_than_an_hour_is_left(
    client: Client, sandbox: Sandbox
) -> None:
    await configure(client, rotation="never")
    start = int(sandbox.clock.time())
    first = await connect(client)
    assert first["expires_in"] == 21600
    assert abs(first["expires_at"] - (start + 21600)) <= 1

    sandbox.clock.advance(1000)
    _, same = await token_call(
        client, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert same["access_token"] == first["access_token"]
    assert same["expires_at"] == first["expires_at"]
    assert 20598 <= same["expires_in"] <= 20600  # the remaining lifetime, as in the doc example

    sandbox.clock.advance(21600 - 1000 - 3600)  # exactly an hour left: a new token
    _, renewed = await token_call(
        client, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert renewed["access_token"] != first["access_token"]
    assert renewed["expires_in"] == 21600
    old = await client.get(ACTIVITIES, headers=bearer(first["access_token"]))
    assert old.status == 200  # the previous token lives until its own expiry
    sandbox.clock.advance(3600)
    old = await client.get(ACTIVITIES, headers=bearer(first["access_token"]))
    assert old.status == 401
    assert (await client.get(ACTIVITIES, headers=bearer(renewed["access_token"]))).status == 200


async def test_rotation_always_kills_the_previous_refresh_token_at_once(
    client: Client, sandbox: Sandbox
) -> None:
    await configure(client, rotation="always")
    first = await connect(client)
    _, rotated = await token_call(
        client, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert rotated["refresh_token"] != first["refresh_token"]
    assert rotated["access_token"] == first["access_token"]  # > 1 h left: same access token
    status, body = await token_call(
        client, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert (status, body) == (
        400,
        strava_error("RefreshToken", "refresh_token", "invalid", "Bad Request"),
    )
    sandbox.clock.advance(21000)
    status, newest = await token_call(
        client, grant_type="refresh_token", refresh_token=rotated["refresh_token"]
    )
    assert status == 200
    assert newest["access_token"] != first["access_token"]
    assert newest["refresh_token"] not in (first["refresh_token"], rotated["refresh_token"])
    assert (
        await token_call(client, grant_type="refresh_token", refresh_token=rotated["refresh_token"])
    )[0] == 400


async def test_rotation_never_and_random(client: Client) -> None:
    await configure(client, rotation="never")
    first = await connect(client)
    for _ in range(3):
        _, body = await token_call(
            client, grant_type="refresh_token", refresh_token=first["refresh_token"]
        )
        assert body["refresh_token"] == first["refresh_token"]

    await configure(client, rotation="random", rotation_probability=0.5)
    current, outcomes = first["refresh_token"], set()
    for _ in range(24):
        status, body = await token_call(client, grant_type="refresh_token", refresh_token=current)
        assert status == 200  # always the latest token: never refused
        outcomes.add(body["refresh_token"] == current)
        current = body["refresh_token"]
    assert outcomes == {True, False}
    assert (await client.post("/_sandbox/strava/config", json={"rotation": "often"})).status == 400


# -- deauthorization and 401s ---------------------------------------------------------------


async def test_deauthorize_kills_every_token_of_the_athlete(client: Client) -> None:
    first = await connect(client, "carol")
    second = await connect(client, "carol")
    other = await connect(client, "dave")
    resp = await client.post(
        "/strava/oauth/deauthorize", data={"access_token": first["access_token"]}
    )
    assert resp.status == 200
    assert await resp.json() == {"access_token": first["access_token"]}
    unauthorized = strava_error("Athlete", "access_token", "invalid", "Authorization Error")
    for grant in (first, second):
        api = await client.get(ACTIVITIES, headers=bearer(grant["access_token"]))
        assert api.status == 401
        assert await api.json() == unauthorized
        status, body = await token_call(
            client, grant_type="refresh_token", refresh_token=grant["refresh_token"]
        )
        assert (status, body) == (
            400,
            strava_error("RefreshToken", "refresh_token", "invalid", "Bad Request"),
        )
    assert (await client.get(ACTIVITIES, headers=bearer(other["access_token"]))).status == 200
    again = await client.post("/strava/oauth/deauthorize", headers=bearer(first["access_token"]))
    assert again.status == 401
    via_header = await client.post(
        "/strava/oauth/deauthorize", headers=bearer(other["access_token"])
    )
    assert via_header.status == 200


async def test_unknown_missing_or_expired_access_tokens_get_the_401_body(
    client: Client, sandbox: Sandbox
) -> None:
    unauthorized = strava_error("Athlete", "access_token", "invalid", "Authorization Error")
    for headers in ({}, bearer("deadbeef"), {"Authorization": "Basic abc"}):
        resp = await client.get(ACTIVITIES, headers=headers)
        assert resp.status == 401
        assert await resp.json() == unauthorized
    grant = await issue_token(client, athlete_id(sandbox, "erin"))
    assert grant["expires_in"] == 21600
    sandbox.clock.advance(21600)
    resp = await client.get(ACTIVITIES, headers=bearer(grant["access_token"]))
    assert resp.status == 401
    assert await resp.json() == unauthorized
