"""The /admin console over real NATS, Postgres, token-service, sync-worker and the sandbox:
who gets in, that the page carries each owner's data (and says "not available" for an
owner that is absent or slow, within its second), and that every action has its effect
on the bus."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.js.errors import NotFoundError
from syncplane_common import rpc, subjects
from syncplane_common.contracts import CalendarChannelsList, CalendarChannelsReply

from tests.integration.console_harness import Console, console_stack
from tests.integration.sync_harness import eventually, seed_strava, sessions_of

pytestmark = pytest.mark.integration

USER = "u-console"


@pytest.fixture(scope="module")
async def console(nats_server: Any, database_url: str) -> AsyncIterator[Console]:
    async with console_stack(nats_server.url, database_url) as c:
        hint = f"{USER}-athlete"
        await seed_strava(c.stack, hint, 30)
        await c.stack.connect(USER, "strava", hint)
        await eventually(lambda: c.seen.of("sync.completed.strava", USER))
        yield c


async def _page(console: Console, **headers: str) -> tuple[int, str]:
    resp = await console.gateway.client.get("/admin", headers=headers)
    return resp.status, await resp.text()


async def test_no_token_gets_the_login_form_and_a_user_token_a_403(console: Console) -> None:
    status, page = await _page(console)
    assert status == 200
    assert 'action="/admin/login"' in page
    assert "syncplane token --user" in page
    status, page = await _page(console, **console.gateway.auth("u-1"))
    assert status == 403
    assert "no admin scope" in page
    status, page = await _page(console, Authorization="Bearer not-a-jwt")
    assert status == 401
    assert 'action="/admin/login"' in page
    # The login form refuses a user token too, and sets no cookie.
    resp = await console.gateway.client.post(
        "/admin/login", data={"token": console.gateway.token("u-1")}, allow_redirects=False
    )
    assert resp.status == 403
    assert "Set-Cookie" not in resp.headers


async def test_login_sets_an_httponly_strict_cookie_scoped_to_admin(console: Console) -> None:
    resp = await console.gateway.client.post(
        "/admin/login",
        data={"token": console.gateway.token("ops", admin=True)},
        allow_redirects=False,
    )
    assert resp.status == 303
    assert resp.headers["Location"] == "/admin"
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/admin" in cookie


async def test_the_page_shows_every_owners_data(console: Console) -> None:
    sequence = await console.dead_letter(USER, 1)
    status, page = await _page(console, **console.gateway.auth("ops", admin=True))
    assert status == 200
    # Nothing loads from elsewhere: the CSP says so, and the page names no other host.
    resp = await console.gateway.client.get(
        "/admin", headers=console.gateway.auth("ops", admin=True)
    )
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    # connections (token-service): strava has one active connection.
    connections = _section(page, "connections")
    assert re.search(r"<th>strava</th><td>1</td><td>0</td><td>0</td><td>1</td>", connections)
    # rate budgets (sync-worker, from the shared KV): the backfill's calls are counted.
    budgets = _section(page, "budgets")
    used = re.search(
        r"<th>strava</th><td>read_15min</td><td><progress[^>]*></progress> (\d+) / 100", budgets
    )
    assert used, budgets
    assert int(used.group(1)) >= 1
    # sync sessions (sync-worker): the backfill, completed.
    (session,) = await sessions_of(console.stack, USER)
    assert f'id="session-{session["id"]}" data-state="completed"' in _section(page, "sessions")
    # dead letters (JetStream), with a replay button for the letter.
    letters = _section(page, "dead_letters")
    assert f'name="sequence" value="{sequence}"' in letters
    assert "console test letter 1" in letters
    # webhooks (this gateway's counters) render, even with no delivery yet.
    assert 'data-state="ok"' in _section_tag(page, "webhooks")
    # Google Fit runs (sync-worker): no Fit user here, so no run has claimed anyone yet.
    assert 'data-state="ok"' in _section_tag(page, "fit_runs")
    assert "no runs yet" in _section(page, "fit_runs")
    # Calendar channels: calendar-sync is not running here, which is said plainly.
    assert 'data-state="unavailable"' in _section_tag(page, "channels")
    assert "Not available: nobody serves" in _section(page, "channels")


async def test_a_slow_owner_costs_its_section_one_second_not_the_page(console: Console) -> None:
    release = asyncio.Event()

    async def slow(_: CalendarChannelsList) -> CalendarChannelsReply:
        await release.wait()
        return CalendarChannelsReply()

    broker = console.stack.broker
    rpc.responder(
        broker,
        subjects.CALENDAR_CHANNELS_LIST,
        CalendarChannelsList,
        CalendarChannelsReply,
        queue="slow",
    )(slow)
    await rpc.start_responders(broker)
    try:
        started = time.monotonic()
        status, page = await _page(console, **console.gateway.auth("ops", admin=True))
        elapsed = time.monotonic() - started
    finally:
        release.set()
        await rpc.stop_responders(broker)
    assert status == 200
    channels = _section(page, "channels")
    assert "Not available: calendar.channels.list did not answer within 0.9s" in channels
    assert 'data-state="ok"' in _section_tag(page, "connections")
    assert elapsed < 2.0, elapsed


async def test_actions_need_the_csrf_token_with_the_cookie(console: Console) -> None:
    async with console.signed_in() as (http, csrf):
        url = f"{console.url}/admin/actions/sync-user"
        async with http.post(url, data={"user_id": USER}) as resp:
            assert resp.status == 403
            assert "CSRF" in await resp.text()
        async with http.post(url, data={"user_id": USER, "csrf": "0" * 64}) as resp:
            assert resp.status == 403
        assert csrf


async def test_sync_one_user_now_publishes_an_interactive_request(console: Console) -> None:
    async with (
        console.signed_in() as (http, csrf),
        http.post(
            f"{console.url}/admin/actions/sync-user",
            data={"user_id": USER, "csrf": csrf},
            headers={"Accept": "application/json"},
        ) as resp,
    ):
        assert resp.status == 200
        answer = await resp.json()
    assert answer["ok"] is True
    request_id = answer["detail"]["requests"]["strava"]
    requested = await eventually(
        lambda: [
            b
            for b in console.seen.of("sync.requested.strava", USER)
            if b["request_id"] == request_id
        ]
    )
    assert requested[0]["priority"] == "interactive"
    assert requested[0]["kind"] == "on_demand"
    assert requested[0]["mode"] == "manual"


async def test_background_sync_queues_every_active_connection(console: Console) -> None:
    headers = {**console.gateway.auth("ops", admin=True), "Accept": "application/json"}
    resp = await console.gateway.client.post(
        "/admin/actions/background-sync", data={"sync_type": "quick"}, headers=headers
    )
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert answer["detail"]["queued"] == 1
    assert answer["detail"]["by_provider"] == {"strava": 1}
    run_id = answer["detail"]["run_id"]
    requested = await eventually(
        lambda: [
            b
            for b in console.seen.of("sync.requested.strava", USER)
            if b["request_id"].startswith(f"background:{run_id}:")
        ]
    )
    assert requested[0]["kind"] == "scheduled"
    assert requested[0]["priority"] == "background"


async def test_replay_puts_the_letter_back_on_its_subject(console: Console) -> None:
    sequence = await console.dead_letter(USER, 2)
    async with (
        console.signed_in() as (http, csrf),
        http.post(
            f"{console.url}/admin/actions/replay", data={"sequence": str(sequence), "csrf": csrf}
        ) as resp,
    ):
        assert resp.status == 200
        assert "Replayed 1 dead letter(s) onto sync.requested.strava" in await resp.text()
    await eventually(
        lambda: [
            b
            for b in console.seen.of("sync.requested.strava", USER)
            if b["request_id"] == f"dead-{USER}-2"
        ]
    )
    with pytest.raises(NotFoundError):
        await console.js.get_msg(subjects.DLQ.name, sequence)


async def test_strava_subscription_is_set_up_and_recorded(console: Console) -> None:
    headers = {**console.gateway.auth("ops", admin=True), "Accept": "application/json"}
    resp = await console.gateway.client.post("/admin/actions/strava-subscription", headers=headers)
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    subscription_id = answer["detail"]["subscription_id"]
    kv = await console.js.key_value("webhook_config")
    entry = await kv.get("strava.subscription_id")
    assert entry.value == str(subscription_id).encode()


def _section_tag(page: str, name: str) -> str:
    match = re.search(rf'<section id="s-{name}"[^>]*>', page)
    assert match, f"no section {name}"
    return match.group(0)


def _section(page: str, name: str) -> str:
    start = page.index(f'<section id="s-{name}"')
    return page[start : page.index("</section>", start)]
