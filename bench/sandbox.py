"""Provider sandbox throughput: simple list requests per second on one core.

The sandbox must never be the bottleneck of another benchmark, so it is measured the way
it is used: ``python -m provider_sandbox`` pinned to one core, a keep-alive load
generator pinned to the other, a Strava ``GET /athlete/activities`` page as the request.
The baseline is a bare aiohttp handler returning the same bytes, pinned the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
from syncplane_devstack.embedded import free_port

from bench.loadgen import LoadResult, load
from bench.report import Bench, Figure

TARGET_RPS = 5000.0
SECONDS = 5.0
CONNECTIONS = 32
SERVER_CPU = 0


def _pin(cpu: int) -> None:
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {cpu})


@contextlib.contextmanager
def _server(args: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: _pin(SERVER_CPU),
    )
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


async def _wait_http(url: str, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url) as resp:
                    if resp.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not come up")
            await asyncio.sleep(0.1)


async def _prepare_strava(base: str) -> tuple[str, bytes]:
    """Lift the rate limits (this measures serving, not limiting), seed one athlete with
    200 activities, and mint a token; returns the token and one response body."""
    async with aiohttp.ClientSession() as http:
        huge = [10**9, 10**9]
        async with http.post(
            f"{base}/_sandbox/strava/config", json={"rate_limit": huge, "read_rate_limit": huge}
        ) as resp:
            resp.raise_for_status()
        async with http.post(
            f"{base}/_sandbox/strava/seed", json={"athletes": 1, "activities_per_athlete": 200}
        ) as resp:
            resp.raise_for_status()
            seeded = await resp.json()
        athlete = _first_athlete_id(seeded)
        async with http.post(
            f"{base}/_sandbox/strava/athletes/{athlete}/tokens",
            json={"scopes": ["read", "activity:read_all"]},
        ) as resp:
            resp.raise_for_status()
            token = str((await resp.json())["access_token"])
        async with http.get(
            f"{base}/strava/api/v3/athlete/activities?per_page=30",
            headers={"Authorization": f"Bearer {token}"},
        ) as resp:
            resp.raise_for_status()
            body = await resp.read()
    return token, body


def _first_athlete_id(seeded: object) -> str:
    """The seed answer lists athletes; accept ``{"athletes": [...]}`` of ids or objects."""
    items = seeded.get("athletes") if isinstance(seeded, dict) else seeded
    if not isinstance(items, list) or not items:
        raise ValueError(f"unexpected seed answer: {str(seeded)[:200]}")
    first = items[0]
    return str(first.get("id") if isinstance(first, dict) else first)


BASELINE_APP = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from aiohttp import web

    body = Path(sys.argv[2]).read_bytes()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
    """
)


def _measure(port: int, path: str, headers: list[tuple[str, str]]) -> LoadResult:
    # The load generator runs on the other core; the server's core is all its own.
    return load("127.0.0.1", port, path, headers=headers, connections=CONNECTIONS, seconds=SECONDS)


async def sandbox_list_rate() -> list[Figure]:
    path = "/strava/api/v3/athlete/activities?per_page=30"
    sandbox_port = free_port()
    with _server(["-m", "provider_sandbox", "--port", str(sandbox_port)], sandbox_port):
        base = f"http://127.0.0.1:{sandbox_port}"
        await _wait_http(f"{base}/_sandbox/healthz")
        token, body = await _prepare_strava(base)
        auth = [("Authorization", f"Bearer {token}")]
        ours = await asyncio.to_thread(_measure, sandbox_port, path, auth)
    if ours.errors:
        raise RuntimeError(f"sandbox answered errors under load: {ours.statuses}")
    with tempfile.TemporaryDirectory() as tmp:
        script, payload = Path(tmp) / "bare.py", Path(tmp) / "body.json"
        script.write_text(BASELINE_APP)
        payload.write_bytes(body)
        bare_port = free_port()
        with _server([str(script), str(bare_port), str(payload)], bare_port):
            await _wait_http(f"http://127.0.0.1:{bare_port}/")
            bare = await asyncio.to_thread(_measure, bare_port, path, auth)
    assert json.loads(body), "an empty page would measure nothing"
    ratio = ours.rate / bare.rate
    return [
        Figure(
            name="sandbox.strava_list_rps_one_core",
            value=round(ours.rate),
            unit="req/s",
            baseline_name="bare aiohttp handler, same bytes, same core",
            baseline_value=round(bare.rate),
            ratio=round(ratio, 3),
            target=f">= {TARGET_RPS:,.0f} req/s on one core",
            meets=ours.rate >= TARGET_RPS,
        )
    ]


BENCHES: tuple[Bench, ...] = (Bench("sandbox.list_rate", sandbox_list_rate, timeout=120),)
