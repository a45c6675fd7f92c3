"""The OAuth connect flow end to end: gateway → provider sandbox → gateway → token.exchange.

Real NATS (embedded), the real provider sandbox in-process, and a stand-in token-service
that redeems the code at the sandbox (so a wrong PKCE verifier, redirect URI or a reused
code fail where they would fail at the provider).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from provider_sandbox.app import create_app
from syncplane_common.clock import ManualClock
from syncplane_devstack.embedded import EmbeddedNats

from tests.integration.gateway_harness import (
    RETURN_TO,
    Harness,
    StandInTokenService,
    client_id_overrides,
    running_gateway,
    sandbox_config,
    stand_in_token_service,
)

pytestmark = pytest.mark.integration

SandboxClient = TestClient[web.Request, web.Application]


@dataclass
class Flow:
    gateway: Harness
    sandbox: SandboxClient
    tokens: StandInTokenService

    @property
    def sandbox_url(self) -> str:
        return str(self.sandbox.make_url("")).rstrip("/")

    async def start(
        self, provider: str, user: str = "u-1", *, login_hint: str = "someone", **query: str
    ) -> aiohttp.ClientResponse:
        params = {
            "user_id": user,
            "return_to": RETURN_TO,
            "login_hint": login_hint,
            "access_token": self.gateway.token(user),
            **query,
        }
        return await self.gateway.client.get(
            f"/connect/{provider}/start", params=params, allow_redirects=False
        )

    async def authorize(self, location: str) -> str:
        """Let the sandbox (auto-approving) answer the authorize URL: its redirect back."""
        async with (
            aiohttp.ClientSession() as http,
            http.get(location, allow_redirects=False) as resp,
        ):
            assert resp.status == 302, await resp.text()
            return resp.headers["Location"]

    async def callback(self, location: str) -> aiohttp.ClientResponse:
        assert location.startswith(self.gateway.base_url + "/connect/"), location
        path = location[len(self.gateway.base_url) :]
        return await self.gateway.client.get(path, allow_redirects=False)

    async def run(self, provider: str, user: str = "u-1", **kw: str) -> dict[str, list[str]]:
        start = await self.start(provider, user, **kw)
        assert start.status == 302, await start.text()
        back = await self.authorize(start.headers["Location"])
        done = await self.callback(back)
        return outcome(done)

    async def sandbox_post(self, path: str, body: dict[str, Any]) -> None:
        resp = await self.sandbox.post(path, json=body)
        assert resp.status == 200, await resp.text()


def outcome(resp: aiohttp.ClientResponse) -> dict[str, list[str]]:
    assert resp.status == 302
    location = resp.headers["Location"]
    assert location.startswith(RETURN_TO + "?")
    return parse_qs(urlsplit(location).query)


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxClient]:
    async with TestClient(TestServer(create_app(sandbox_config()))) as client:
        yield client


@pytest.fixture
async def flow(nats_server: EmbeddedNats, sandbox: SandboxClient) -> AsyncIterator[Flow]:
    url = str(sandbox.make_url("")).rstrip("/")
    async with (
        stand_in_token_service(nats_server.url, url) as tokens,
        running_gateway(nats_server.url, sandbox_url=url, **client_id_overrides()) as gateway,
    ):
        yield Flow(gateway, sandbox, tokens)


@pytest.mark.parametrize("provider", ["strava", "google_fit", "google_calendar", "whoop"])
async def test_connect_round_trip_stores_the_connection(flow: Flow, provider: str) -> None:
    start = await flow.start(provider, "u-1", login_hint="ada@example.com")
    assert start.status == 302
    authorize = start.headers["Location"]
    asked = query_of(authorize)
    redirect_uri = f"{flow.gateway.base_url}/connect/{provider}/callback"
    assert asked["redirect_uri"] == redirect_uri
    assert asked["response_type"] == "code"
    assert len(asked["state"]) >= 8

    back = await flow.authorize(authorize)
    code = query_of(back)["code"]
    assert outcome(await flow.callback(back)) == {
        "connect": ["success"],
        "provider": [provider],
    }

    [exchange] = flow.tokens.exchanges
    assert (exchange.user_id, exchange.provider, exchange.code) == ("u-1", provider, code)
    assert exchange.redirect_uri == redirect_uri
    # What the provider says it granted travels on (token-service stores it).
    granted = query_of(back)["scope"].replace(",", " ").split()
    assert sorted(exchange.requested_scopes) == sorted(granted)
    if provider.startswith("google"):
        # PKCE S256: the challenge sent was the hash of the verifier token-service got,
        # and the sandbox (checking it) issued tokens.
        assert asked["code_challenge_method"] == "S256"
        assert exchange.code_verifier is not None
        digest = hashlib.sha256(exchange.code_verifier.encode()).digest()
        assert asked["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        assert (asked["access_type"], asked["prompt"]) == ("offline", "consent")
        assert "openid" in asked["scope"].split()
        assert asked["login_hint"] == "ada@example.com"
    else:
        assert "code_challenge" not in asked
        assert exchange.code_verifier is None
    # The verifier never travels in clear through the browser.
    assert exchange.code_verifier is None or exchange.code_verifier not in authorize
    assert exchange.code_verifier is None or exchange.code_verifier not in back
    assert (("u-1", provider)) in flow.tokens.connections
    accounts = (await (await flow.sandbox.get(f"/_sandbox/{provider}/accounts")).json())["accounts"]
    ada = next(a for a in accounts if a["login_hint"] == "ada@example.com")
    assert flow.tokens.connections[("u-1", provider)].provider_account_id == str(ada["id"])


async def test_strava_asks_read_and_all_activities_with_commas(flow: Flow) -> None:
    start = await flow.start("strava")
    assert query_of(start.headers["Location"])["scope"] == "read,activity:read_all"


async def test_whoop_asks_offline_and_every_read_scope(flow: Flow) -> None:
    start = await flow.start("whoop")
    scopes = set(query_of(start.headers["Location"])["scope"].split())
    assert {"offline", "read:recovery", "read:cycles", "read:sleep", "read:workout"} <= scopes


async def test_reconnecting_updates_the_one_connection(flow: Flow) -> None:
    for _ in range(2):
        assert (await flow.run("strava", login_hint="same-athlete"))["connect"] == ["success"]
    assert len(flow.tokens.exchanges) == 2
    assert list(flow.tokens.connections) == [("u-1", "strava")]


async def test_denial_returns_access_denied_and_stores_nothing(flow: Flow) -> None:
    await flow.sandbox_post("/_sandbox/strava/authorize_mode", {"mode": "deny"})
    result = await flow.run("strava")
    assert result == {"connect": ["error"], "provider": ["strava"], "reason": ["access_denied"]}
    assert flow.tokens.exchanges == []


@pytest.mark.parametrize(
    ("provider", "control", "granted"),
    [
        ("strava", "/_sandbox/strava/authorize_mode", ["read"]),
        ("whoop", "/_sandbox/whoop/authorize_mode", ["read:recovery", "offline"]),
        (
            "google_fit",
            "/_sandbox/google/authorize_mode",
            ["openid", "https://www.googleapis.com/auth/fitness.activity.read"],
        ),
    ],
)
async def test_reduced_scopes_are_refused_before_anything_is_stored(
    flow: Flow, provider: str, control: str, granted: list[str]
) -> None:
    await flow.sandbox_post(control, {"mode": "approve", "scopes": granted})
    result = await flow.run(provider)
    assert result["reason"] == ["insufficient_scope"]
    assert flow.tokens.exchanges == []
    assert flow.tokens.connections == {}


async def test_an_optional_scope_left_out_still_connects(flow: Flow) -> None:
    required = ["read:recovery", "read:cycles", "read:sleep", "read:workout"]
    granted = [*required, "read:profile", "offline"]  # no read:body_measurement
    await flow.sandbox_post("/_sandbox/whoop/authorize_mode", {"scopes": granted})
    assert (await flow.run("whoop"))["connect"] == ["success"]
    [exchange] = flow.tokens.exchanges
    assert sorted(exchange.requested_scopes) == sorted(granted)


async def test_replayed_callback_is_refused(flow: Flow) -> None:
    start = await flow.start("strava")
    back = await flow.authorize(start.headers["Location"])
    assert outcome(await flow.callback(back))["connect"] == ["success"]
    again = outcome(await flow.callback(back))
    assert again["reason"] == ["state_invalid"]


async def test_reused_code_with_a_fresh_state_is_code_invalid(flow: Flow) -> None:
    first = await flow.authorize((await flow.start("strava")).headers["Location"])
    assert outcome(await flow.callback(first))["connect"] == ["success"]
    second = await flow.authorize((await flow.start("strava")).headers["Location"])
    reused = second.replace(query_of(second)["code"], query_of(first)["code"])
    assert outcome(await flow.callback(reused))["reason"] == ["code_invalid"]
    assert len(flow.tokens.connections) == 1


async def test_tampered_or_foreign_state_is_a_400_without_redirect(flow: Flow) -> None:
    back = await flow.authorize((await flow.start("strava")).headers["Location"])
    state = query_of(back)["state"]
    flipped = state[:20] + ("A" if state[20] != "A" else "B") + state[21:]
    tampered = await flow.callback(back.replace(state, flipped))
    assert tampered.status == 400
    assert (await tampered.json())["error"]["code"] == "state_invalid"
    # The same genuine state on another provider's callback.
    foreign = await flow.callback(back.replace("/connect/strava/", "/connect/whoop/"))
    assert foreign.status == 400
    missing = await flow.gateway.client.get("/connect/strava/callback?code=x")
    assert missing.status == 400
    assert flow.tokens.exchanges == []


async def test_provider_error_passes_through_as_reason(flow: Flow) -> None:
    back = await flow.authorize((await flow.start("google_calendar")).headers["Location"])
    state = query_of(back)["state"]
    resp = await flow.gateway.client.get(
        "/connect/google_calendar/callback",
        params={"state": state, "error": "consent_required"},
        allow_redirects=False,
    )
    assert outcome(resp)["reason"] == ["consent_required"]
    odd = await flow.gateway.client.get(
        "/connect/google_calendar/callback",
        params={"state": state, "error": "<script>"},
        allow_redirects=False,
    )
    assert outcome(odd)["reason"] == ["provider_error"]


async def test_start_refuses_bad_requests(flow: Flow) -> None:
    bad_return = await flow.start("strava", return_to="https://evil.example/steal")
    assert bad_return.status == 400
    userinfo = await flow.start("strava", return_to="http://localhost@evil.example/")
    assert userinfo.status == 400
    other_port = await flow.start("strava", return_to="http://127.0.0.1:9/x")
    assert other_port.status == 302  # loopback origins admit any port
    no_token = await flow.gateway.client.get(
        "/connect/strava/start", params={"return_to": RETURN_TO}, allow_redirects=False
    )
    assert no_token.status == 401
    assert no_token.headers["WWW-Authenticate"].startswith("Bearer")
    other_user = await flow.gateway.client.get(
        "/connect/strava/start",
        params={"user_id": "u-2", "return_to": RETURN_TO},
        headers=flow.gateway.auth("u-1"),
        allow_redirects=False,
    )
    assert other_user.status == 403
    unknown = await flow.start("fitbit")
    assert unknown.status == 404


async def test_start_answers_json_to_a_backend(flow: Flow) -> None:
    resp = await flow.gateway.client.get(
        "/connect/whoop/start",
        params={"return_to": RETURN_TO},
        headers={**flow.gateway.auth("u-7"), "Accept": "application/json"},
        allow_redirects=False,
    )
    assert resp.status == 200
    url = (await resp.json())["authorize_url"]
    assert url.startswith(flow.sandbox_url + "/whoop/oauth/oauth2/auth?")


async def test_unconfigured_provider_is_unavailable(nats_server: EmbeddedNats) -> None:
    async with running_gateway(nats_server.url, strava_client_id="") as gateway:
        resp = await gateway.client.get(
            "/connect/strava/start",
            params={"return_to": RETURN_TO},
            headers=gateway.auth("u-1"),
            allow_redirects=False,
        )
        assert resp.status == 503
        assert (await resp.json())["error"]["code"] == "unavailable"


async def test_expired_state_says_so_and_stores_nothing(
    nats_server: EmbeddedNats, sandbox: SandboxClient
) -> None:
    url = str(sandbox.make_url("")).rstrip("/")
    clock = ManualClock()
    async with (
        stand_in_token_service(nats_server.url, url) as tokens,
        running_gateway(
            nats_server.url, sandbox_url=url, clock=clock, **client_id_overrides()
        ) as gateway,
    ):
        flow = Flow(gateway, sandbox, tokens)
        start = await gateway.client.get(
            "/connect/strava/start",
            params={"return_to": RETURN_TO},
            headers=gateway.auth("u-1"),
            allow_redirects=False,
        )
        back = await flow.authorize(start.headers["Location"])
        clock.advance(gateway.settings.oauth_state_ttl_seconds + 1)
        result = outcome(await flow.callback(back))
        assert result["reason"] == ["state_expired"]
        assert tokens.exchanges == []


async def test_token_service_down_is_unavailable(
    nats_server: EmbeddedNats, sandbox: SandboxClient
) -> None:
    url = str(sandbox.make_url("")).rstrip("/")
    async with running_gateway(
        nats_server.url, sandbox_url=url, **client_id_overrides()
    ) as gateway:
        start = await gateway.client.get(
            "/connect/strava/start",
            params={"return_to": RETURN_TO},
            headers=gateway.auth("u-1"),
            allow_redirects=False,
        )
        async with (
            aiohttp.ClientSession() as http,
            http.get(start.headers["Location"], allow_redirects=False) as resp,
        ):
            back = resp.headers["Location"]
        done = await gateway.client.get(back[len(gateway.base_url) :], allow_redirects=False)
        assert outcome(done)["reason"] == ["unavailable"]
