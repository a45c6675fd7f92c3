"""The connect flow and the connections API against the real token-service (its own
harness: migrated Postgres, the sandbox, token-service in this process): the contract
between the two as both sides implement it, not as either side assumes it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from syncplane_devstack.embedded import EmbeddedNats

from tests.integration.gateway_harness import RETURN_TO, Harness, running_gateway
from tests.integration.token_harness import CONFIG, Stack, stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def tokens(nats_server: EmbeddedNats, database_url: str) -> AsyncIterator[Stack]:
    async with stack(nats_server.url, database_url) as running:
        yield running


@pytest.fixture
async def gateway(nats_server: EmbeddedNats, tokens: Stack) -> AsyncIterator[Harness]:
    async with running_gateway(
        nats_server.url,
        sandbox_url=tokens.sandbox_url,
        strava_client_id=CONFIG.strava.client_id,
        whoop_client_id=CONFIG.whoop.client_id,
        google_client_id=CONFIG.google.client_id,
    ) as running:
        yield running


async def _through_provider(
    gateway: Harness, provider: str, user: str, login_hint: str
) -> tuple[str, dict[str, list[str]]]:
    """start → sandbox authorize → callback: the callback URL and the outcome."""
    start = await gateway.client.get(
        f"/connect/{provider}/start",
        params={"return_to": RETURN_TO, "login_hint": login_hint},
        headers=gateway.auth(user),
        allow_redirects=False,
    )
    assert start.status == 302, await start.text()
    async with (
        aiohttp.ClientSession() as http,
        http.get(start.headers["Location"], allow_redirects=False) as resp,
    ):
        back = resp.headers["Location"]
    return back, await _callback(gateway, back)


async def _callback(gateway: Harness, back: str) -> dict[str, list[str]]:
    done = await gateway.client.get(back[len(gateway.base_url) :], allow_redirects=False)
    assert done.status == 302
    return parse_qs(urlsplit(done.headers["Location"]).query)


@pytest.mark.parametrize("provider", ["strava", "google_fit", "google_calendar", "whoop"])
async def test_connect_stores_the_connection_and_announces_it(
    gateway: Harness, tokens: Stack, provider: str
) -> None:
    user = f"ts-{provider}"
    _, outcome = await _through_provider(gateway, provider, user, f"{provider}@example.com")
    assert outcome == {"connect": ["success"], "provider": [provider]}
    event = await tokens.events.wait(
        f"connection.connected.{provider}", lambda body: body["user_id"] == user
    )
    row = await tokens.row(user, provider)
    assert event["provider_account_id"] == row["provider_account_id"] is not None

    resp = await gateway.client.get(f"/api/v1/users/{user}/connections", headers=gateway.auth(user))
    [listed] = (await resp.json())["connections"]
    assert (listed["provider"], listed["status"]) == (provider, "active")
    resp = await gateway.client.delete(
        f"/api/v1/users/{user}/connections/{provider}", headers=gateway.auth(user)
    )
    assert (await resp.json()) == {"provider": provider, "revoked": True}
    await tokens.events.wait(f"connection.revoked.{provider}", lambda body: body["user_id"] == user)


async def test_replay_is_refused_and_reconnect_updates(gateway: Harness, tokens: Stack) -> None:
    back, first = await _through_provider(gateway, "strava", "ts-replay", "replayer")
    assert first["connect"] == ["success"]
    assert (await _callback(gateway, back))["reason"] == ["state_invalid"]
    _, again = await _through_provider(gateway, "strava", "ts-replay", "replayer")
    assert again["connect"] == ["success"]
    count = await tokens.admin.fetchval(
        "SELECT count(*) FROM tokens.connections WHERE user_id = 'ts-replay'"
    )
    assert count == 1


async def test_optional_scope_left_out_is_accepted_downstream(
    gateway: Harness, tokens: Stack
) -> None:
    granted = ["read:recovery", "read:cycles", "read:sleep", "read:workout", "read:profile"]
    await tokens.control(
        "POST", "/_sandbox/whoop/authorize_mode", {"scopes": [*granted, "offline"]}
    )
    try:
        _, outcome = await _through_provider(gateway, "whoop", "ts-partial", "partial")
    finally:
        await tokens.control("POST", "/_sandbox/whoop/authorize_mode", {"mode": "approve"})
    assert outcome["connect"] == ["success"]
    row = await tokens.row("ts-partial", "whoop")
    assert "read:body_measurement" not in row["scopes"]
