"""The keyring: start-up refuses a bad key with one line; ``rotate-keys`` re-encrypts
every row in batches while the service keeps serving, and is idempotent."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
from provider_sandbox.core import Sandbox
from syncplane_devstack.embedded import EmbeddedNats

from tests.integration.token_harness import Stack, new_key, role_dsn, sandbox_server, stack

pytestmark = pytest.mark.integration

USERS = [("rot-strava", "strava"), ("rot-whoop", "whoop"), ("rot-google", "google_fit")]


def _env(**values: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TOKEN_")}
    return {**base, **values}


SECRET_LOOKING = base64.b64encode(secrets.token_bytes(16)).decode()


def test_start_up_refuses_a_short_key_with_one_line_and_no_key_material() -> None:
    """The process as an orchestrator starts it; the other bad keyrings are unit tests."""
    done = subprocess.run(
        [sys.executable, "-m", "token_service"],
        env=_env(NATS_URL="nats://127.0.0.1:1", TOKEN_KEYS=f"k1:{SECRET_LOOKING}"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [
        "token-service: configuration error: TOKEN_KEYS is invalid: "
        "Value error, key 'k1' must be 32 bytes for AES-256, got 16"
    ], done.stderr
    assert SECRET_LOOKING not in done.stderr


@pytest.fixture(scope="module")
async def sandbox() -> AsyncIterator[tuple[Sandbox, str]]:
    async with sandbox_server() as running:
        yield running


async def rotate(database_url: str, keys: str, active: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "token_service",
        "rotate-keys",
        "--batch-size",
        "2",
        env=_env(DATABASE_URL=role_dsn(database_url), TOKEN_KEYS=keys, TOKEN_ACTIVE_KEY_ID=active),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_rotate_keys_reencrypts_every_row_while_the_service_serves(
    nats_server: EmbeddedNats, database_url: str, sandbox: tuple[Sandbox, str]
) -> None:
    old, new = f"old:{new_key()}", f"new:{new_key()}"
    shared = sandbox  # one sandbox: the tokens it issued stay valid across the phases

    async with stack(nats_server.url, database_url, sandbox=shared, token_keys=old) as s:
        for uid, provider in USERS:
            await s.connect(uid, provider, f"{uid}-hint")
        before = {uid: (await s.token(uid, p)).access_token for uid, p in USERS}
        assert set(await _keys(s)) == {"old"}

    both = f"{old},{new}"
    async with stack(
        nats_server.url, database_url, sandbox=shared, token_keys=both, token_active_key_id="new"
    ) as s:
        # Still readable under the old key; a refresh during the run writes under the new.
        assert {uid: (await s.token(uid, p)).access_token for uid, p in USERS} == before
        await s.expire("rot-whoop", "whoop")
        served: list[str | None] = []
        stop = asyncio.Event()

        async def keep_asking() -> None:
            while not stop.is_set():
                for uid, provider in USERS:
                    served.append((await s.token(uid, provider)).access_token)

        asker = asyncio.create_task(keep_asking())
        try:
            report = await rotate(database_url, both, "new")
        finally:
            stop.set()
            await asker
        assert None not in served
        assert len(served) >= len(USERS)
        assert "re-encrypted under key 'new'" in report
        assert set(await _keys(s)) == {"new"}
        assert "rotate-keys: 0 connection(s)" in await rotate(database_url, both, "new")
        after = {uid: (await s.token(uid, p)).access_token for uid, p in USERS}

    async with stack(nats_server.url, database_url, sandbox=shared, token_keys=new) as s:
        assert {uid: (await s.token(uid, p)).access_token for uid, p in USERS} == after


async def _keys(s: Stack) -> dict[str, int]:
    rows = await s.admin.fetch(
        "SELECT key_id, count(*) AS n FROM tokens.connections GROUP BY key_id"
    )
    return {r["key_id"]: r["n"] for r in rows}
