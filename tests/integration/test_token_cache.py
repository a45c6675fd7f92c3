"""token.get answers a still-valid token from memory; a refused token always goes back
to the database (the rejected fingerprint), so a stale memory never outlives a 401."""

from __future__ import annotations

import hashlib

import pytest
from syncplane_devstack.embedded import EmbeddedNats

from tests.integration.token_harness import stack

pytestmark = pytest.mark.integration


async def test_valid_token_is_served_from_memory_until_refused(
    nats_server: EmbeddedNats, database_url: str
) -> None:
    async with stack(nats_server.url, database_url, token_cache_seconds=60.0) as s:
        await s.connect("cache-u1", "whoop", "cache-hint")
        first = await s.token("cache-u1", "whoop")
        refreshes = (await s.stats())["refreshes"].get("whoop", 0)
        # Behind the service's back the stored token expires: from memory, the process
        # keeps answering with the token it knows is valid for about an hour.
        await s.expire("cache-u1", "whoop")
        assert (await s.token("cache-u1", "whoop")).access_token == first.access_token
        assert (await s.stats())["refreshes"].get("whoop", 0) == refreshes
        # The provider refuses it: the caller says so, and memory is bypassed.
        assert first.access_token is not None
        rejected = hashlib.sha256(first.access_token.encode()).hexdigest()
        forced = await s.token(
            "cache-u1", "whoop", force_refresh=True, rejected_token_fingerprint=rejected
        )
        assert forced.access_token != first.access_token
        assert forced.refreshed
        assert (await s.stats())["refreshes"].get("whoop", 0) == refreshes + 1
        # And the new token is what memory holds from now on, not as a new refresh.
        remembered = await s.token("cache-u1", "whoop")
        assert remembered.access_token == forced.access_token
        assert not remembered.refreshed
