"""`syncplane up` / `down` as a newcomer runs them: real processes, embedded servers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
import urllib3
from syncplane_devstack.embedded import EmbeddedNats

pytestmark = pytest.mark.e2e

SYNCPLANE = Path(sys.executable).parent / "syncplane"
STATE_KEYS = {
    "gateway_url",
    "sandbox_url",
    "nats_url",
    "database_url",
    "console_url",
    "services",
    "provider_urls",
    "dev_secrets",
}
SERVICES = {"webhook-gateway", "token-service", "sync-worker", "calendar-sync"}
HTTP = urllib3.PoolManager(timeout=urllib3.Timeout(total=2.0), retries=False)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"NATS_URL", "DATABASE_URL"}}
    env.update(extra)
    return env


def _status(url: str) -> int:
    try:
        return HTTP.request("GET", url).status
    except urllib3.exceptions.HTTPError:
        return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def _all_pids(state: dict[str, Any]) -> list[int]:
    infra = state["infrastructure"]
    pids = [svc["pid"] for svc in state["services"].values()]
    pids += [p for p in (infra["nats_pid"], infra["postgres_pid"], infra["sandbox_pid"]) if p]
    return [*pids, state["supervisor_pid"]]


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _assert_strava_webhooks_flow(state: dict[str, Any]) -> None:
    """No manual step: the push subscription exists, and a new activity in the sandbox
    arrives on the WEBHOOKS stream through the gateway."""
    sandbox = state["sandbox_url"]
    subscription = state["dev_secrets"]["STRAVA_SUBSCRIPTION_ID"]
    assert subscription
    seeded = HTTP.request(
        "POST", f"{sandbox}/_sandbox/strava/seed", json={"athletes": 1, "tokens": True}
    ).json()
    athlete = seeded["athletes"][0]["id"]
    created = HTTP.request(
        "POST",
        f"{sandbox}/_sandbox/strava/athletes/{athlete}/activities",
        json={"generate": 1},
    )
    assert created.status == 201

    async def stored() -> int:
        nc = await nats.connect(state["nats_url"])
        try:
            info = await nc.jetstream().stream_info("WEBHOOKS")
            return info.state.messages
        finally:
            await nc.close()

    _wait(lambda: asyncio.run(stored()) >= 1, 15, "the activity webhook on WEBHOOKS")


@pytest.fixture
def state_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "stack.json"
    yield path
    if path.exists():  # a failed test must not leave a stack running
        subprocess.run([str(SYNCPLANE), "down", "--state-file", str(path)], check=False)


def test_up_detach_then_down(state_file: Path) -> None:
    started = time.monotonic()
    up = subprocess.run(
        [str(SYNCPLANE), "up", "--detach", "--state-file", str(state_file)],
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert up.returncode == 0, up.stderr
    elapsed = time.monotonic() - started
    assert elapsed < 30, f"stack took {elapsed:.1f}s to be ready"
    state = json.loads(state_file.read_text())
    assert state.keys() >= STATE_KEYS
    assert set(state["services"]) == SERVICES
    assert state["gateway_url"] == state["services"]["webhook-gateway"]["url"]
    assert state["console_url"] == state["gateway_url"] + "/admin"
    sandbox = state["sandbox_url"]
    assert sandbox
    assert _status(sandbox + "/_sandbox/healthz") == 200
    # Every provider endpoint points at the sandbox unless the environment said otherwise.
    assert state["provider_urls"]["STRAVA_API_BASE"] == sandbox + "/strava/api/v3"
    assert all(url.startswith(sandbox) for url in state["provider_urls"].values())
    _assert_strava_webhooks_flow(state)
    assert len(state["dev_secrets"]["API_JWT_SECRET"]) >= 32
    assert state["dev_secrets"]["TOKEN_KEYS"].startswith("dev1:")
    for svc in state["services"].values():
        assert _status(svc["url"] + "/readyz") == 200
        assert _status(svc["url"] + "/healthz") == 200
        assert _status(svc["url"] + "/metrics") == 200
    token = subprocess.run(
        [str(SYNCPLANE), "token", "--user", "u-1", "--state-file", str(state_file)],
        capture_output=True,
        text=True,
        check=True,
        env=_clean_env(),
    ).stdout.strip()
    assert token.count(".") == 2
    pids = _all_pids(state)
    down = subprocess.run(
        [str(SYNCPLANE), "down", "--state-file", str(state_file)],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert down.returncode == 0, down.stderr
    _wait(lambda: not any(_alive(p) for p in pids), 15, "every stack process to exit")
    assert not state_file.exists()


def test_ctrl_c_leaves_no_process_behind(state_file: Path) -> None:
    proc = subprocess.Popen(
        [str(SYNCPLANE), "up", "--state-file", str(state_file)],
        env=_clean_env(WEATHER_API_BASE="http://weather.invalid/v1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait(state_file.exists, 60, "the stack to be ready")
        state = json.loads(state_file.read_text())
        pids = _all_pids(state)
        assert all(_alive(p) for p in pids)
        # A provider URL set in the environment wins over the sandbox's.
        assert state["provider_urls"]["WEATHER_API_BASE"] == "http://weather.invalid/v1"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    _wait(lambda: not any(_alive(p) for p in pids), 15, "every stack process to exit")
    assert not state_file.exists()


def test_readyz_follows_nats_down_and_back(
    state_file: Path, nats_server: EmbeddedNats, database_url: str
) -> None:
    """External NATS and Postgres (the test's own): kill NATS, services go red; restart it
    on the same port, they go green again with the same pids (no restart)."""
    up = subprocess.run(
        [str(SYNCPLANE), "up", "--detach", "--no-sandbox", "--state-file", str(state_file)],
        env=_clean_env(NATS_URL=nats_server.url, DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert up.returncode == 0, up.stderr
    state = json.loads(state_file.read_text())
    assert state["nats_url"] == nats_server.url
    assert state["sandbox_url"] is None
    assert state["provider_urls"]["STRAVA_API_BASE"] == "https://www.strava.com/api/v3"
    urls = [svc["url"] + "/readyz" for svc in state["services"].values()]
    pids = [svc["pid"] for svc in state["services"].values()]
    try:
        assert all(_status(u) == 200 for u in urls)
        nats_server.kill()
        _wait(lambda: all(_status(u) == 503 for u in urls), 15, "readyz to turn red")
        nats_server.start()
        _wait(lambda: all(_status(u) == 200 for u in urls), 30, "readyz to turn green")
        assert all(_alive(p) for p in pids)
        assert [
            svc["pid"] for svc in json.loads(state_file.read_text())["services"].values()
        ] == pids
    finally:
        if nats_server.pid is None:
            nats_server.start()
        subprocess.run([str(SYNCPLANE), "down", "--state-file", str(state_file)], check=False)


@pytest.mark.parametrize(
    ("module", "env", "setting"),
    [
        ("token_service", {"TOKEN_KEYS": "dev1:not-base64!"}, "TOKEN_KEYS"),
        ("token_service", {}, "TOKEN_KEYS"),
        ("webhook_gateway", {"API_JWT_SECRET": "short"}, "API_JWT_SECRET"),
        ("sync_worker", {"HTTP_PORT": "http"}, "HTTP_PORT"),
    ],
)
def test_bad_setting_stops_service_with_one_clear_line(
    module: str, env: dict[str, str], setting: str
) -> None:
    clean = {k: v for k, v in os.environ.items() if k not in {"TOKEN_KEYS", "API_JWT_SECRET"}}
    result = subprocess.run(
        [sys.executable, "-m", module],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert setting in lines[0]
    assert "configuration error" in lines[0]
