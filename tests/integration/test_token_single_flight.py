"""Single flight across the cluster: three token-service processes, 500 concurrent
``token.get`` for one expired connection, exactly one refresh at the provider, and every
caller gets the new token (over real NATS, Postgres and the sandbox)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from syncplane_common import rpc, subjects
from syncplane_common.contracts import TokenGet, TokenGetReply
from syncplane_devstack.embedded import EmbeddedNats

from tests.integration.token_harness import Stack, service_env, settings_for, stack

pytestmark = pytest.mark.integration

REPLICAS = 3
CALLERS = 500
TOKEN_ENDPOINT = {"whoop": "whoop POST /token", "strava": "strava POST /oauth/token"}
REFRESH_KEY = {"whoop": "whoop", "strava": "strava"}


@contextlib.contextmanager
def replicas(env: dict[str, str], logs: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(REPLICAS):
            log = (logs / f"token-service-{i}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "token_service"],
                    env={**os.environ, **env, "HTTP_PORT": "0"},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


async def wait_started(logs: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 30
    for i, proc in enumerate(procs):
        path = logs / f"token-service-{i}.log"
        while '"token-service started"' not in path.read_text(errors="replace"):
            assert proc.poll() is None, f"replica {i} exited:\n{path.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"replica {i} did not start"
            await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
async def cluster(
    nats_server: EmbeddedNats, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Stack, Path]]:
    """Three replicas as processes; the in-process stack is only the caller's side here
    (and connects users), sharing the database, the bus and the sandbox with them."""
    logs = tmp_path_factory.mktemp("replicas")
    async with stack(nats_server.url, database_url) as s:
        settings = settings_for(
            nats_server.url,
            database_url,
            s.sandbox_url,
            token_keys=s.app.settings.token_keys,
            provider_timeout_seconds=10.0,
            refresh_lock_timeout_seconds=15.0,
        )
        with replicas(service_env(settings), logs) as procs:
            await wait_started(logs, procs)
            # The in-process replica would take a share of the requests: off the bus.
            await s.app.runtime.broker.stop()
            yield s, logs


async def ask_all(s: Stack, user_id: str, provider: str) -> list[TokenGetReply]:
    ask = TokenGet(user_id=user_id, provider=provider, min_valid_seconds=300)
    return await asyncio.gather(
        *(
            rpc.request(s.broker, subjects.TOKEN_GET, ask, TokenGetReply, wait=20)
            for _ in range(CALLERS)
        )
    )


@pytest.mark.parametrize(
    ("provider", "latency_ms"),
    [("whoop", 0), ("whoop", 2000), ("strava", 2000)],
    ids=["whoop", "whoop-slow-2s", "strava-slow-2s"],
)
async def test_one_refresh_for_500_concurrent_callers_on_three_replicas(
    cluster: tuple[Stack, Path], provider: str, latency_ms: int
) -> None:
    s, logs = cluster
    await s.control("POST", "/_sandbox/strava/config", {"rotation": "always"})
    user_id = f"flight-{provider}-{latency_ms}"
    await s.connect(user_id, provider, f"{user_id}-hint")
    before = (await s.token(user_id, provider)).access_token
    await s.expire(user_id, provider)
    s.sandbox.clock.advance(7 * 3600)  # expired for the provider too (Strava keeps live ones)
    stats = await s.stats()
    if latency_ms:
        fault: dict[str, Any] = {
            "provider": provider,
            "endpoint": TOKEN_ENDPOINT[provider].split(" ", 1)[1],
            "latency_ms": latency_ms,
        }
        await s.control("POST", "/_sandbox/faults", fault)
    try:
        started = time.monotonic()
        replies = await ask_all(s, user_id, provider)
        elapsed = time.monotonic() - started
    finally:
        await s.control("DELETE", "/_sandbox/faults")

    after = await s.stats()
    tokens = {reply.access_token for reply in replies}
    assert len(tokens) == 1, f"{len(tokens)} different tokens handed out"
    assert tokens != {before}
    assert (
        after["refreshes"][REFRESH_KEY[provider]]
        == stats["refreshes"].get(REFRESH_KEY[provider], 0) + 1
    )
    key = TOKEN_ENDPOINT[provider]
    assert after["calls"][key] == stats["calls"].get(key, 0) + 1
    row = await s.row(user_id, provider)
    assert row["status"] == "active"
    assert row["refresh_count"] == 1
    assert elapsed < 10, elapsed
    # The token handed out is the one the provider accepts now.
    space = "whoop" if provider == "whoop" else "strava"
    assert s.sandbox.tokens.valid_access(space, tokens.pop()) is not None
    served_by = [
        i
        for i in range(REPLICAS)
        if "token refreshed" in (logs / f"token-service-{i}.log").read_text(errors="replace")
    ]
    assert served_by, "no replica logged the refresh"
