"""The control API every other tool drives: reset, clock, faults, stats, accounts."""

from __future__ import annotations

import pytest
from provider_sandbox.config import provider_urls
from provider_sandbox.core import Sandbox

from tests.sandbox.conftest import Client

pytestmark = pytest.mark.service


async def test_clock_advances_and_refuses_going_back(client: Client) -> None:
    before = await (await client.get("/_sandbox/clock")).json()
    resp = await client.post("/_sandbox/clock/advance", json={"seconds": 900})
    assert resp.status == 200
    after = await resp.json()
    assert after["offset_seconds"] == before["offset_seconds"] + 900
    bad = await client.post("/_sandbox/clock/advance", json={"seconds": -1})
    assert bad.status == 400
    assert (await bad.json())["error"]["code"] == "bad_request"
    garbage = await client.post("/_sandbox/clock/advance", data=b"{nope")
    assert garbage.status == 400


async def test_faults_validate_and_clear(client: Client, sandbox: Sandbox) -> None:
    ok = await client.post(
        "/_sandbox/faults",
        json={"provider": "whoop", "endpoint": "GET /v2/recovery", "status": 500, "rate": 1.0},
    )
    assert ok.status == 201
    assert len(sandbox.faults.rules) == 1
    unknown = await client.post(
        "/_sandbox/faults", json={"provider": "whoop", "endpoint": "x", "colour": "red"}
    )
    assert unknown.status == 400
    out_of_range = await client.post(
        "/_sandbox/faults", json={"provider": "whoop", "endpoint": "x", "rate": 3}
    )
    assert out_of_range.status == 400
    cleared = await client.delete("/_sandbox/faults")
    assert cleared.status == 200
    assert sandbox.faults.rules == []


async def test_fault_count_is_honoured(sandbox: Sandbox) -> None:
    from provider_sandbox.core import FaultRule

    sandbox.faults.add(FaultRule("strava", "GET /x", status=503, count=2))
    picks = [sandbox.faults.pick("strava", "GET /x") for _ in range(3)]
    assert [p is not None for p in picks] == [True, True, False]
    assert sandbox.faults.pick("whoop", "GET /x") is None


async def test_a_fault_may_hit_one_account_only(sandbox: Sandbox) -> None:
    from provider_sandbox.core import FaultRule

    sandbox.faults.add(FaultRule("google_fit", "*", status=500, account_id="111"))
    assert sandbox.faults.pick("google_fit", "GET /users/me/sessions", "111") is not None
    assert sandbox.faults.pick("google_fit", "GET /users/me/sessions", "222") is None
    assert sandbox.faults.pick("google_fit", "GET /users/me/sessions") is None


async def test_accounts_and_stats_and_reset(client: Client, sandbox: Sandbox) -> None:
    first = sandbox.accounts.get_or_create("strava", "alice")
    again = sandbox.accounts.get_or_create("strava", "alice")
    assert first is again
    google = sandbox.accounts.get_or_create("google_calendar", "bob@example.com")
    assert sandbox.accounts.get_or_create("google_fit", "bob@example.com") is google
    listed = await (await client.get("/_sandbox/strava/accounts")).json()
    assert [a["id"] for a in listed["accounts"]] == [int(first.id)]
    assert (await client.get("/_sandbox/nowhere/accounts")).status == 404
    body = await (await client.get("/_sandbox/stats")).json()
    assert set(body) >= {"calls", "rate_limited", "refreshes", "webhooks"}
    await client.post("/_sandbox/clock/advance", json={"seconds": 60})
    assert (await client.post("/_sandbox/reset")).status == 200
    assert sandbox.accounts.list("strava") == []
    assert sandbox.clock.offset == 0


async def test_tokens_expire_on_the_virtual_clock(sandbox: Sandbox) -> None:
    grant = sandbox.tokens.issue("whoop", "42", "whoop-client", frozenset({"read:recovery"}), 3600)
    assert sandbox.tokens.valid_access("whoop", grant.access_token) is grant
    assert sandbox.tokens.valid_access("strava", grant.access_token) is None
    sandbox.clock.advance(3600)
    assert sandbox.tokens.valid_access("whoop", grant.access_token) is None


def test_provider_urls_cover_every_provider_setting() -> None:
    urls = provider_urls("http://127.0.0.1:9999/")
    assert urls["STRAVA_API_BASE"] == "http://127.0.0.1:9999/strava/api/v3"
    assert len(urls) == 11
