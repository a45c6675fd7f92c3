"""The Google Calendar client against the in-process sandbox (PROVIDERS.md §5): pages and
sync tokens, 410 on an expired token, If-Match and 412, deletes, errors in the tree,
watch and channels.stop."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from calendar_sync.domain import Fields
from calendar_sync.providers.google_calendar import GoogleCalendarClient, from_google, to_google
from syncplane_common.errors import (
    ConflictError,
    CursorInvalidError,
    NotFoundError,
    RetryableError,
    TokenRejectedError,
)

from tests.integration.calendar_harness import Google, calendar_api, google, sandbox_server

pytestmark = pytest.mark.service

EVENT = Fields(title="Gym", start="2026-05-01T10:00:00+00:00", end="2026-05-01T11:00:00+00:00")


@pytest.fixture
async def env() -> AsyncIterator[tuple[GoogleCalendarClient, Google, str]]:
    async with sandbox_server() as (_, url), google(url) as g, aiohttp.ClientSession() as http:
        token = await g.token("ann@example.com")
        yield GoogleCalendarClient(http, calendar_api(url)), g, token


async def test_pages_sync_token_and_410(env: tuple[GoogleCalendarClient, Google, str]) -> None:
    client, g, token = env
    await g.control(
        "POST",
        f"/_sandbox/google_calendar/users/{g.accounts['ann@example.com']}/calendars/primary/events",
        {"generate": 7},
    )
    seen, page_token, sync_token = [], None, None
    while True:
        page = await client.list_page(token, "primary", page_token=page_token, max_results=3)
        assert not (page.next_page_token and page.next_sync_token)
        seen += page.items
        if page.next_page_token is None:
            sync_token = page.next_sync_token
            break
        page_token = page.next_page_token
    assert len(seen) == 7
    assert sync_token
    created = await client.insert(token, "primary", to_google(EVENT, "l1"))
    page = await client.list_page(token, "primary", sync_token=sync_token)
    assert [item["id"] for item in page.items] == [created["id"]]
    await g.control("POST", "/_sandbox/google_calendar/invalidate_sync_tokens", {})
    with pytest.raises(CursorInvalidError):
        await client.list_page(token, "primary", sync_token=sync_token)


async def test_writes_with_if_match(env: tuple[GoogleCalendarClient, Google, str]) -> None:
    client, _, token = env
    chosen = "0123456789abcdef0123456789abcdef"
    created = await client.insert(token, "primary", to_google(EVENT, "l1"), event_id=chosen)
    assert created["id"] == chosen
    assert from_google(created).fields == EVENT
    with pytest.raises(ConflictError):  # the id exists: 409 duplicate
        await client.insert(token, "primary", to_google(EVENT, "l1"), event_id=chosen)
    patched = await client.patch(
        token, "primary", chosen, {"summary": "Gym!"}, etag=created["etag"]
    )
    assert patched["etag"] != created["etag"]
    with pytest.raises(ConflictError):  # 412: stale etag
        await client.patch(token, "primary", chosen, {"summary": "x"}, etag=created["etag"])
    with pytest.raises(ConflictError):
        await client.delete(token, "primary", chosen, etag=created["etag"])
    await client.delete(token, "primary", chosen, etag=patched["etag"])
    with pytest.raises(NotFoundError):  # 410 deleted
        await client.delete(token, "primary", chosen, etag=None)
    with pytest.raises(NotFoundError):
        await client.get(token, "primary", "nosuchevent1")


async def test_errors_map_to_the_tree(env: tuple[GoogleCalendarClient, Google, str]) -> None:
    client, g, token = env
    with pytest.raises(TokenRejectedError):
        await client.list_page("not-a-token", "primary")
    for reason in ("rateLimitExceeded", "backendError"):
        await g.configure(inject={"reason": reason})
        with pytest.raises(RetryableError):
            await client.list_page(token, "primary")
    await g.configure(inject={"reason": "quotaExceeded"})
    with pytest.raises(RetryableError) as info:
        await client.list_page(token, "primary")
    assert info.value.retry_after == 600.0


async def test_watch_and_stop(env: tuple[GoogleCalendarClient, Google, str]) -> None:
    client, g, token = env
    channel = await client.watch(
        token,
        "primary",
        channel_id="chan-1",
        address="http://127.0.0.1:9/webhooks/google/calendar",
        channel_token="secret",
        ttl_seconds=3600,
    )
    assert channel.id == "chan-1"
    assert channel.resource_id
    assert channel.expiration_ms
    listed = await g.control("GET", "/_sandbox/google_calendar/channels")
    assert [c["id"] for c in listed["channels"]] == ["chan-1"]
    await client.stop(token, "chan-1", channel.resource_id)
    listed = await g.control("GET", "/_sandbox/google_calendar/channels")
    assert listed["channels"] == []
    with pytest.raises(NotFoundError):
        await client.stop(token, "chan-1", channel.resource_id)
