"""token-service over real NATS, Postgres and the provider sandbox: connect, just-in-time
refresh, failure classification, revocation, deauthorization, keep-alive (issue 4)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from syncplane_common import bus, rpc, subjects
from syncplane_common.contracts import (
    ConnectionsList,
    ConnectionsListReply,
    StravaSubscriptionEnsure,
    StravaSubscriptionEnsureReply,
    TokenRevoke,
    TokenRevokeReply,
    WebhookReceived,
)
from syncplane_common.contracts import token_fingerprint as fingerprint
from syncplane_common.errors import (
    NotConnectedError,
    PermanentError,
    ReauthRequiredError,
    RetryableError,
    RevokedError,
)
from syncplane_devstack.embedded import EmbeddedNats

from tests.integration.token_harness import SCOPES, Stack, stack

pytestmark = pytest.mark.integration

HOUR = 3600.0
TOKEN_ENDPOINTS = {
    "strava": ("strava", "POST /oauth/token"),
    "whoop": ("whoop", "POST /token"),
    "google_fit": ("google", "POST /token"),
}
REFRESH_STATS = {"strava": "strava", "whoop": "whoop", "google_fit": "google"}
ACCOUNT_SPACE = {"strava": "strava", "whoop": "whoop", "google_fit": "google"}


@pytest.fixture(scope="module")
async def s(nats_server: EmbeddedNats, database_url: str) -> AsyncIterator[Stack]:
    # Keep-alive is on (30 days) but its loop waits an hour: the test drives it directly.
    async with stack(nats_server.url, database_url, keepalive_idle_days=30) as arranged:
        yield arranged


@pytest.fixture(autouse=True)
async def clean_faults(s: Stack) -> AsyncIterator[None]:
    yield
    await s.control("DELETE", "/_sandbox/faults")


def user() -> str:
    return f"user-{uuid.uuid4().hex[:10]}"


async def refreshes(s: Stack, provider: str) -> int:
    return int((await s.stats())["refreshes"].get(REFRESH_STATS[provider], 0))


async def account_id(s: Stack, provider: str, login_hint: str) -> str:
    listed = await s.control("GET", f"/_sandbox/{ACCOUNT_SPACE[provider]}/accounts")
    for account in listed["accounts"]:
        if account["login_hint"] == login_hint:
            return str(account["id"])
    raise AssertionError(f"no {provider} account {login_hint}")


async def connected(s: Stack, provider: str) -> tuple[str, str]:
    """A fresh user connected to ``provider``: (user id, login hint)."""
    uid = user()
    hint = f"{uid}-{provider}"
    await s.connect(uid, provider, hint)
    return uid, hint


# -- connect -------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["strava", "whoop", "google_fit", "google_calendar"])
async def test_connect_stores_the_connection_and_announces_it(s: Stack, provider: str) -> None:
    uid = user()
    hint = f"{uid}@example.com"
    reply = await s.exchange(uid, provider, await s.consent(provider, hint))

    space = "google" if provider.startswith("google") else provider
    expected_account = await account_id(s, space if space != "google" else "google_fit", hint)
    assert reply.provider_account_id == expected_account
    assert set(SCOPES[provider]) <= set(reply.scopes)
    assert reply.reconnected is False
    event = await s.events.wait(
        subjects.connection_event("connected", provider), lambda e: e["user_id"] == uid
    )
    assert event["provider_account_id"] == expected_account
    row = await s.row(uid, provider)
    assert row["status"] == "active"
    token = (await s.token(uid, provider)).access_token
    assert token is not None
    assert token.encode() not in row["access_token_ct"]
    assert s.sandbox.tokens.valid_access(space, token) is not None


async def test_reconnecting_updates_the_existing_connection(s: Stack) -> None:
    uid, hint = await connected(s, "whoop")
    first = await s.token(uid, "whoop")
    before = await s.row(uid, "whoop")

    again = await s.connect(uid, "whoop", hint)

    assert again.reconnected is True
    after = await s.row(uid, "whoop")
    assert after["id"] == before["id"]
    count = await s.admin.fetchval(
        "SELECT count(*) FROM tokens.connections WHERE user_id = $1", uid
    )
    assert count == 1
    assert (await s.token(uid, "whoop")).access_token != first.access_token
    await s.events.wait(
        subjects.connection_event("connected", "whoop"),
        lambda e: e["user_id"] == uid and e["reason"] == "reconnected",
    )
    actions = await s.admin.fetch(
        "SELECT action FROM tokens.connection_audit WHERE connection_id = $1 ORDER BY id",
        before["id"],
    )
    assert [a["action"] for a in actions] == ["connected", "reconnected"]


async def test_a_replayed_state_is_refused_before_the_code_is_spent(s: Stack) -> None:
    nonce = uuid.uuid4().hex
    await s.exchange(user(), "strava", await s.consent("strava", "replay-a"), nonce=nonce)
    victim = user()
    code = await s.consent("strava", "replay-b")
    calls_before = (await s.stats())["calls"]["strava POST /oauth/token"]

    with pytest.raises(PermanentError) as refused:
        await s.exchange(victim, "strava", code, nonce=nonce)

    assert refused.value.details["code"] == "conflict"
    assert (await s.stats())["calls"]["strava POST /oauth/token"] == calls_before
    assert (
        await s.admin.fetchval("SELECT count(*) FROM tokens.connections WHERE user_id = $1", victim)
        == 0
    )


async def test_a_callback_that_met_an_unavailable_provider_can_be_retried(s: Stack) -> None:
    uid, nonce = user(), uuid.uuid4().hex
    code = await s.consent("whoop", f"{uid}-hint")
    await s.control(
        "POST",
        "/_sandbox/faults",
        {"provider": "whoop", "endpoint": "POST /token", "status": 503, "count": 1},
    )
    with pytest.raises(RetryableError):
        await s.exchange(uid, "whoop", code, nonce=nonce)
    assert (
        await s.admin.fetchval("SELECT count(*) FROM tokens.connections WHERE user_id = $1", uid)
        == 0
    )

    reply = await s.exchange(uid, "whoop", code, nonce=nonce)

    assert reply.provider_account_id == await account_id(s, "whoop", f"{uid}-hint")


@pytest.mark.parametrize("provider", ["strava", "whoop", "google_fit"])
async def test_a_reused_code_is_refused_and_nothing_stored(s: Stack, provider: str) -> None:
    code = await s.consent(provider, f"reuse-{uuid.uuid4().hex[:8]}")
    await s.exchange(user(), provider, code)
    second = user()

    with pytest.raises(PermanentError):
        await s.exchange(second, provider, code)

    assert (
        await s.admin.fetchval("SELECT count(*) FROM tokens.connections WHERE user_id = $1", second)
        == 0
    )
    assert s.events.of(subjects.connection_event("connected", provider), second) == []


@pytest.mark.parametrize(
    ("provider", "kept"),
    [
        ("google_fit", ["openid"]),
        ("whoop", ["offline", "read:profile", "read:sleep"]),
    ],
)
async def test_reduced_scopes_store_nothing_and_give_the_grant_back(
    s: Stack, provider: str, kept: list[str]
) -> None:
    control = "google" if provider.startswith("google") else provider
    await s.control("POST", f"/_sandbox/{control}/authorize_mode", {"scopes": kept})
    try:
        uid = user()
        code = await s.consent(provider, f"{uid}@example.com")
        with pytest.raises(PermanentError, match="did not grant"):
            await s.exchange(uid, provider, code)
    finally:
        await s.control("POST", f"/_sandbox/{control}/authorize_mode", {"mode": "approve"})
    assert (
        await s.admin.fetchval("SELECT count(*) FROM tokens.connections WHERE user_id = $1", uid)
        == 0
    )
    space = "google" if provider.startswith("google") else provider
    live = [g for g in s.sandbox.tokens.access.values() if g.provider == space]
    hinted = await account_id(s, "google_fit" if space == "google" else space, f"{uid}@example.com")
    assert not [g for g in live if g.account_id == hinted and not g.revoked]


async def test_a_grant_without_refresh_token_stores_nothing(s: Stack) -> None:
    uid = user()
    code = await s.consent("google_fit", f"{uid}@example.com", params={"access_type": "online"})
    with pytest.raises(PermanentError, match="no refresh token"):
        await s.exchange(uid, "google_fit", code)
    assert (
        await s.admin.fetchval("SELECT count(*) FROM tokens.connections WHERE user_id = $1", uid)
        == 0
    )


async def test_google_pkce_verifier_is_sent_with_the_code(s: Stack) -> None:
    verifier = "v" * 43 + uuid.uuid4().hex
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    pkce = {"code_challenge": challenge.rstrip(b"=").decode(), "code_challenge_method": "S256"}
    uid = user()
    code = await s.consent("google_calendar", f"{uid}@example.com", params=pkce)
    reply = await s.exchange(uid, "google_calendar", code, code_verifier=verifier)
    assert reply.provider_account_id

    other = user()
    code = await s.consent("google_calendar", f"{other}@example.com", params=pkce)
    with pytest.raises(PermanentError):
        await s.exchange(other, "google_calendar", code, code_verifier="w" * 43)


# -- token.get -----------------------------------------------------------------------------


async def test_unknown_connection_is_not_connected(s: Stack) -> None:
    with pytest.raises(NotConnectedError):
        await s.token(user(), "strava")


async def test_a_valid_token_is_served_without_calling_the_provider(s: Stack) -> None:
    uid, _ = await connected(s, "whoop")
    before = await refreshes(s, "whoop")
    first = await s.token(uid, "whoop", min_valid_seconds=300)
    second = await s.token(uid, "whoop", min_valid_seconds=300)
    assert first.access_token == second.access_token
    assert first.expires_at is not None
    assert not first.refreshed
    assert not second.refreshed
    assert await refreshes(s, "whoop") == before


@pytest.mark.parametrize("provider", ["whoop", "strava", "google_fit"])
async def test_expired_token_is_refreshed_and_the_rotated_refresh_token_kept(
    s: Stack, provider: str
) -> None:
    await s.control("POST", "/_sandbox/strava/config", {"rotation": "always"})
    uid, _ = await connected(s, provider)
    first = (await s.token(uid, provider)).access_token
    before = await refreshes(s, provider)

    s.advance(7 * HOUR)
    answer = await s.token(uid, provider)
    second = answer.access_token
    repeated = await s.token(uid, provider)
    again = repeated.access_token
    # The caller learns that its request cost a refresh (the Fit run counts them).
    assert answer.refreshed
    assert not repeated.refreshed
    # WHOOP and Strava (rotation "always") killed the refresh token used above: a second
    # refresh works only if the rotated one was stored with the new access token.
    s.advance(7 * HOUR)
    third = (await s.token(uid, provider)).access_token

    assert len({first, second, third}) == 3
    assert again == second
    assert await refreshes(s, provider) == before + 2
    row = await s.row(uid, provider)
    assert row["status"] == "active"
    assert row["refresh_count"] == 2
    assert row["expires_at"] > s.clock.now()


async def test_force_refresh_only_when_the_stored_token_is_the_rejected_one(s: Stack) -> None:
    uid, _ = await connected(s, "whoop")
    t1 = (await s.token(uid, "whoop")).access_token
    assert t1 is not None
    before = await refreshes(s, "whoop")

    t2 = (
        await s.token(uid, "whoop", force_refresh=True, rejected_token_fingerprint=fingerprint(t1))
    ).access_token
    stale = (
        await s.token(uid, "whoop", force_refresh=True, rejected_token_fingerprint=fingerprint(t1))
    ).access_token
    assert t2 is not None
    t3 = (
        await s.token(uid, "whoop", force_refresh=True, rejected_token_fingerprint=fingerprint(t2))
    ).access_token

    assert t2 != t1
    assert stale == t2  # a late 401 on the old token does not refresh again
    assert t3 not in (t1, t2)
    assert await refreshes(s, "whoop") == before + 2


# -- failure classification ----------------------------------------------------------------


async def kill_grant(s: Stack, provider: str, uid: str, hint: str) -> None:
    """What a user revoking our app at the provider looks like to us."""
    if provider == "strava":
        athlete = await account_id(s, "strava", hint)
        await s.control("POST", f"/_sandbox/strava/athletes/{athlete}/deauthorize")
    elif provider == "whoop":
        token = (await s.token(uid, "whoop")).access_token
        url = f"{s.sandbox_url}/whoop/developer/v2/user/access"
        async with s.http.delete(url, headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 204
    else:
        account = await account_id(s, "google_fit", hint)
        await s.control("POST", f"/_sandbox/google/accounts/{account}/revoke")


@pytest.mark.parametrize("provider", ["strava", "whoop", "google_fit"])
async def test_a_definitive_refusal_marks_reauth_required_and_announces_it(
    s: Stack, provider: str
) -> None:
    uid, hint = await connected(s, provider)
    await kill_grant(s, provider, uid, hint)
    await s.expire(uid, provider)

    with pytest.raises(ReauthRequiredError):
        await s.token(uid, provider)

    row = await s.row(uid, provider)
    assert row["status"] == "reauth_required"
    assert row["access_token_ct"] is None
    assert row["refresh_token_ct"] is None
    await s.events.wait(
        subjects.connection_event("reauth_required", provider), lambda e: e["user_id"] == uid
    )
    calls = (await s.stats())["calls"]
    with pytest.raises(ReauthRequiredError):
        await s.token(uid, provider)
    assert (await s.stats())["calls"] == calls  # answered from our record, no provider call


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 500},
        {"status": 503},
        {"status": 429},
        {"timeout": True},
    ],
    ids=["500", "503", "429", "timeout"],
)
async def test_transient_failures_never_change_a_status(s: Stack, fault: dict[str, Any]) -> None:
    users = [(await connected(s, provider))[0] for provider in TOKEN_ENDPOINTS]
    for space, endpoint in TOKEN_ENDPOINTS.values():
        await s.control(
            "POST", "/_sandbox/faults", {"provider": space, "endpoint": endpoint, **fault}
        )
    tries = 1 if fault.get("timeout") else 3  # each timeout costs the client's full wait
    for uid, provider in zip(users, TOKEN_ENDPOINTS, strict=True):
        await s.expire(uid, provider)
        for _ in range(tries):
            with pytest.raises(RetryableError):
                await s.token(uid, provider)
        row = await s.row(uid, provider)
        assert row["status"] == "active"
        assert row["consecutive_failures"] == tries
        assert s.events.of(subjects.connection_event("reauth_required", provider), uid) == []

    await s.control("DELETE", "/_sandbox/faults")
    for uid, provider in zip(users, TOKEN_ENDPOINTS, strict=True):
        assert (await s.token(uid, provider)).access_token
        assert (await s.row(uid, provider))["consecutive_failures"] == 0


async def test_a_slow_provider_does_not_starve_reads_of_valid_tokens(s: Stack) -> None:
    # More slow refreshes than the pool has connections (10): capped at 5 at a time,
    # they leave the pool to the read that serves a valid token.
    slow = [(await connected(s, "whoop"))[0] for _ in range(12)]
    reader, _ = await connected(s, "strava")
    for uid in slow:
        await s.expire(uid, "whoop")
    await s.control(
        "POST",
        "/_sandbox/faults",
        {"provider": "whoop", "endpoint": "POST /token", "latency_ms": 400},
    )
    refreshes_running = [asyncio.create_task(s.token(uid, "whoop")) for uid in slow]
    await asyncio.sleep(0.1)  # the refreshes hold their connections now

    started = time.monotonic()
    assert (await s.token(reader, "strava")).access_token
    waited = time.monotonic() - started

    for task in refreshes_running:
        assert (await task).access_token
    assert waited < 0.3, f"a read waited {waited:.2f}s behind refreshes"


# -- revocation ----------------------------------------------------------------------------

REVOKE_CALLS = {
    "strava": "strava POST /oauth/deauthorize",
    "whoop": "whoop DELETE /v2/user/access",
    "google_fit": "google POST /revoke",
}


async def revoke(s: Stack, uid: str, provider: str) -> TokenRevokeReply:
    ask = TokenRevoke(user_id=uid, provider=provider)
    return await rpc.request(s.broker, subjects.TOKEN_REVOKE, ask, TokenRevokeReply)


@pytest.mark.parametrize("provider", ["strava", "whoop", "google_fit"])
@pytest.mark.parametrize("expired", [False, True], ids=["live", "expired"])
async def test_revoke_withdraws_at_the_provider_and_wipes_the_tokens(
    s: Stack, provider: str, expired: bool
) -> None:
    uid, _ = await connected(s, provider)
    token = (await s.token(uid, provider)).access_token
    if expired:
        s.advance(7 * HOUR)  # Strava and WHOOP need a live token to revoke with
    calls = (await s.stats())["calls"].get(REVOKE_CALLS[provider], 0)

    assert (await revoke(s, uid, provider)).revoked is True

    assert (await s.stats())["calls"][REVOKE_CALLS[provider]] == calls + 1
    space = ACCOUNT_SPACE[provider]
    assert s.sandbox.tokens.valid_access(space, token) is None
    assert not [
        g
        for g in s.sandbox.tokens.refresh.values()
        if g.provider == space
        and g.account_id == (await s.row(uid, provider))["provider_account_id"]
    ]
    row = await s.row(uid, provider)
    assert row["status"] == "revoked"
    assert (row["access_token_ct"], row["refresh_token_ct"], row["key_id"]) == (None, None, None)
    await s.events.wait(
        subjects.connection_event("revoked", provider), lambda e: e["user_id"] == uid
    )
    with pytest.raises(RevokedError):
        await s.token(uid, provider)
    assert (await revoke(s, uid, provider)).revoked is False


async def test_revoke_while_the_provider_is_down_changes_nothing(s: Stack) -> None:
    uid, _ = await connected(s, "strava")
    await s.control(
        "POST",
        "/_sandbox/faults",
        {"provider": "strava", "endpoint": "POST /oauth/deauthorize", "status": 503},
    )
    with pytest.raises(RetryableError):
        await revoke(s, uid, "strava")
    assert (await s.row(uid, "strava"))["status"] == "active"
    assert (await s.token(uid, "strava")).access_token

    await s.control("DELETE", "/_sandbox/faults")
    assert (await revoke(s, uid, "strava")).revoked is True


async def test_revoking_one_google_product_leaves_the_other_connected(s: Stack) -> None:
    uid = user()
    hint = f"{uid}@example.com"
    await s.connect(uid, "google_fit", hint)
    await s.connect(uid, "google_calendar", hint)

    await revoke(s, uid, "google_calendar")

    s.advance(2 * HOUR)
    assert (await s.token(uid, "google_fit")).access_token
    assert (await s.row(uid, "google_fit"))["status"] == "active"


async def test_not_connected_revoke_is_not_connected(s: Stack) -> None:
    with pytest.raises(NotConnectedError):
        await revoke(s, user(), "whoop")


# -- Strava deauthorization webhook --------------------------------------------------------


def deauthorization(athlete: str, authorized: object) -> WebhookReceived:
    return WebhookReceived(
        provider="strava",
        kind="athlete",
        event_id=f"strava-athlete-{athlete}-{uuid.uuid4().hex[:6]}",
        object_id=athlete,
        owner_id=athlete,
        action="update",
        event_time=datetime.now(UTC),
        received_at=datetime.now(UTC),
        attributes={"updates": {"authorized": authorized}},
    )


@pytest.mark.parametrize("authorized", ["false", False], ids=["string", "boolean"])
async def test_strava_deauthorization_revokes_that_athletes_connection(
    s: Stack, authorized: object
) -> None:
    uid, hint = await connected(s, "strava")
    athlete = await account_id(s, "strava", hint)
    event = deauthorization(athlete, authorized)

    await bus.publish(s.app.runtime.broker, event.subject, event, msg_id=event.event_id)

    revoked = await s.events.wait(
        subjects.connection_event("revoked", "strava"), lambda e: e["user_id"] == uid
    )
    assert revoked["provider_account_id"] == athlete
    row = await s.row(uid, "strava")
    assert row["status"] == "revoked"
    assert row["access_token_ct"] is None


async def test_unknown_athletes_and_other_updates_are_acknowledged_and_ignored(s: Stack) -> None:
    uid, hint = await connected(s, "strava")
    athlete = await account_id(s, "strava", hint)
    for event in (deauthorization("999999999", "false"), deauthorization(athlete, "true")):
        await bus.publish(s.app.runtime.broker, event.subject, event, msg_id=event.event_id)
    js = s.nc.jetstream()
    for _ in range(100):
        info = await js.consumer_info("WEBHOOKS", "token-service-deauth")
        if info.num_pending == 0 and info.num_ack_pending == 0:
            break
        await asyncio.sleep(0.05)
    assert info.num_pending == 0
    assert info.num_ack_pending == 0
    assert info.num_redelivered == 0
    assert (await s.row(uid, "strava"))["status"] == "active"


# -- connections.list ----------------------------------------------------------------------


async def test_connections_list_shows_every_connection_without_tokens(s: Stack) -> None:
    uid = user()
    await s.connect(uid, "strava", f"{uid}-s")
    await s.connect(uid, "whoop", f"{uid}-w")
    await revoke(s, uid, "whoop")

    reply = await rpc.request(
        s.broker, subjects.CONNECTIONS_LIST, ConnectionsList(user_id=uid), ConnectionsListReply
    )

    by_provider = {c.provider: c for c in reply.connections}
    assert by_provider["strava"].status == "active"
    assert by_provider["whoop"].status == "revoked"
    assert by_provider["strava"].provider_account_id == await account_id(s, "strava", f"{uid}-s")
    assert "token" not in reply.model_dump_json().replace("_token", "")


# -- Strava push subscription --------------------------------------------------------------


async def test_strava_subscription_is_created_once_and_moved_when_the_callback_changes(
    s: Stack,
) -> None:
    verify = "verify-" + uuid.uuid4().hex

    async def validate(request: web.Request) -> web.Response:
        if request.query.get("hub.verify_token") != verify:
            return web.json_response({}, status=403)
        return web.json_response({"hub.challenge": request.query["hub.challenge"]})

    receiver = web.Application()
    receiver.router.add_get("/webhooks/strava", validate)
    receiver.router.add_get("/elsewhere/strava", validate)
    server = TestServer(receiver, host="127.0.0.1")
    await server.start_server()
    try:
        callback = str(server.make_url("/webhooks/strava"))

        async def ensure(url: str) -> StravaSubscriptionEnsureReply:
            ask = StravaSubscriptionEnsure(callback_url=url, verify_token=verify)
            return await rpc.request(
                s.broker, subjects.STRAVA_SUBSCRIPTION_ENSURE, ask, StravaSubscriptionEnsureReply
            )

        first = await ensure(callback)
        again = await ensure(callback)
        moved = await ensure(str(server.make_url("/elsewhere/strava")))
    finally:
        await server.close()

    assert first.created is True
    assert first.subscription_id is not None
    assert (again.created, again.subscription_id) == (False, first.subscription_id)
    assert moved.created is True
    assert moved.subscription_id != first.subscription_id
    listed = await s.control(
        "GET",
        "/strava/api/v3/push_subscriptions?client_id=24680&client_secret=strava-test-secret",
    )
    assert [item["id"] for item in listed] == [moved.subscription_id]


# -- keep-alive (last: it moves the clocks a month) ----------------------------------------


async def test_keepalive_refreshes_connections_left_idle(s: Stack) -> None:
    uid, _ = await connected(s, "google_fit")
    service = s.app.require()
    before = await refreshes(s, "google_fit")

    s.advance(31 * 24 * HOUR)
    await service.keepalive()

    row = await s.row(uid, "google_fit")
    assert row["refresh_count"] == 1
    assert row["last_refreshed_at"] == s.clock.now()
    assert await refreshes(s, "google_fit") > before
    # Refreshed just now: the next pass leaves it alone.
    await service.keepalive()
    assert (await s.row(uid, "google_fit"))["refresh_count"] == 1
