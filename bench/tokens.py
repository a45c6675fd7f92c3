"""token-service figures: ``token.get`` latency for a valid token beside a raw NATS
request/reply echo, its capacity beside a no-op responder on the same service stack,
and what a just-in-time refresh adds over the provider's own token endpoint.

Everything runs as it does in production, each in its own process: an embedded
nats-server and Postgres in a temp dir, the provider sandbox, one token-service, and the
baselines (a bare nats-py echo responder; a ServiceRuntime whose ``rpc.responder``
answers without doing anything). This process only sends requests, the same bytes to
every subject, with raw nats-py so client cost is equal on all sides.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import asyncpg
import nats
import token_service
from nats.aio.client import Client as NatsClient
from provider_sandbox.config import SandboxConfig, provider_urls
from syncplane_common import subjects
from syncplane_common.contracts import TokenExchange, TokenExchangeReply, TokenGet, TokenGetReply
from syncplane_common.migrations import migrate
from syncplane_common.provision import provision_js
from syncplane_devstack.embedded import EmbeddedPostgres, free_port

from bench.bus import Send, alternate, embedded_nats, paced, percentile
from bench.report import Bench, Figure

RATE = 2000.0  # token.get per second, and as many echoes, taking turns
LOW_RATE = 400.0  # a pace one replica sustains on a 2-core machine, for comparison
SECONDS = 4.0
IN_FLIGHT = 64  # capacity: requests kept in flight
CAPACITY_SECONDS = 2.0
CAPACITY_ROUNDS = 2
TIMEOUT = 5.0
REFRESHES = 60
OVERHEAD_TARGET_MS = 10.0
PROVIDER = "google_fit"
SCOPES = ("https://www.googleapis.com/auth/fitness.activity.read", "openid")
REDIRECT_URI = "http://localhost:8080/connect/google_fit/callback"
ECHO_SUBJECT = "bench.echo"
NOOP_SUBJECT = "bench.noop.token.get"
CREDS = SandboxConfig()
MIGRATIONS = Path(token_service.__file__).parent / "migrations"

ECHO = textwrap.dedent(
    """
    import asyncio, sys
    import nats

    async def main():
        nc = await nats.connect(sys.argv[1])
        async def echo(msg):
            await msg.respond(msg.data)
        await nc.subscribe(sys.argv[2], queue="echo", cb=echo)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)

# The service stack without the service: ServiceRuntime (its broker, middlewares and
# telemetry) and rpc.responder with the same concurrency, answering at once.
NOOP = textwrap.dedent(
    """
    import sys
    from syncplane_common import rpc
    from syncplane_common.contracts import TokenGet, TokenGetReply
    from syncplane_common.runtime import ServiceRuntime, run
    from syncplane_common.settings import ServiceSettings

    def build():
        settings = ServiceSettings(nats_url=sys.argv[1], log_level="WARNING")
        runtime = ServiceRuntime("bench-noop", settings, None)

        @rpc.responder(
            runtime.broker, sys.argv[2], TokenGet, TokenGetReply, queue="noop", max_workers=64
        )
        async def answer(ask: TokenGet) -> TokenGetReply:
            return TokenGetReply(access_token="not-a-token")

        return runtime

    run(build)
    """
)


# -- the arrangement -----------------------------------------------------------------------


@asynccontextmanager
async def embedded_postgres() -> AsyncIterator[str]:
    workdir = Path(tempfile.mkdtemp(prefix="syncplane-bench-pg-"))
    server = EmbeddedPostgres(workdir)
    try:
        await asyncio.to_thread(server.start)
        yield server.url
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, *args], env={**os.environ, **env}, stdout=out, stderr=out
        )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def role_dsn(admin_dsn: str) -> str:
    parts = urlsplit(admin_dsn)
    return f"postgresql://token_service:token_service@{parts.hostname}:{parts.port}{parts.path}"


def service_env(nats_url: str, admin_dsn: str, sandbox_url: str) -> dict[str, str]:
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    return {
        "NATS_URL": nats_url,
        "DATABASE_URL": role_dsn(admin_dsn),
        "TOKEN_KEYS": f"bench:{key}",
        "HTTP_PORT": "0",
        "LOG_LEVEL": "WARNING",
        "STRAVA_CLIENT_ID": CREDS.strava.client_id,
        "STRAVA_CLIENT_SECRET": CREDS.strava.client_secret,
        "WHOOP_CLIENT_ID": CREDS.whoop.client_id,
        "WHOOP_CLIENT_SECRET": CREDS.whoop.client_secret,
        "GOOGLE_CLIENT_ID": CREDS.google.client_id,
        "GOOGLE_CLIENT_SECRET": CREDS.google.client_secret,
        **provider_urls(sandbox_url),
    }


async def wait_until(what: str, check: Any, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if await check():
                return
        except Exception:  # noqa: S110 - not up yet
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not come up")
        await asyncio.sleep(0.1)


@asynccontextmanager
async def arranged(**service_overrides: str) -> AsyncIterator[tuple[NatsClient, str, str]]:
    """NATS, Postgres, sandbox, token-service and the echo responder, all running."""
    logs = Path(tempfile.mkdtemp(prefix="syncplane-bench-tokens-"))
    async with embedded_nats() as nats_url, embedded_postgres() as admin_dsn:
        await migrate(admin_dsn, "token-service", MIGRATIONS)
        nc = await nats.connect(nats_url)
        await provision_js(nc.jetstream())
        sandbox_port = free_port()
        sandbox_url = f"http://127.0.0.1:{sandbox_port}"
        sandbox_env = {
            "GOOGLE_CLIENT_ID": CREDS.google.client_id,
            "GOOGLE_CLIENT_SECRET": CREDS.google.client_secret,
        }
        try:
            with (
                process(
                    ["-m", "provider_sandbox", "--port", str(sandbox_port)],
                    sandbox_env,
                    logs / "sandbox.log",
                ),
                process(
                    ["-m", "token_service"],
                    {**service_env(nats_url, admin_dsn, sandbox_url), **service_overrides},
                    logs / "token-service.log",
                ),
                process(["-c", ECHO, nats_url, ECHO_SUBJECT], {}, logs / "echo.log"),
                process(["-c", NOOP, nats_url, NOOP_SUBJECT], {}, logs / "noop.log"),
            ):
                await wait_until("sandbox", lambda: _http_ok(f"{sandbox_url}/_sandbox/healthz"))
                await wait_until("token-service", lambda: _serving(nc))
                await wait_until("echo", lambda: _echoing(nc, ECHO_SUBJECT))
                await wait_until("no-op responder", lambda: _echoing(nc, NOOP_SUBJECT))
                yield nc, admin_dsn, sandbox_url
        finally:
            await nc.drain()
            shutil.rmtree(logs, ignore_errors=True)


async def _http_ok(url: str) -> bool:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status == 200


async def _serving(nc: NatsClient) -> bool:
    ask = TokenGet(user_id="nobody", provider=PROVIDER)
    msg = await nc.request(subjects.TOKEN_GET, ask.to_bytes(), timeout=1)
    reply = TokenGetReply.model_validate_json(msg.data)
    return reply.error is not None and reply.error.code == "not_connected"


async def _echoing(nc: NatsClient, subject: str) -> bool:
    ask = TokenGet(user_id="nobody", provider=PROVIDER).to_bytes()
    return bool((await nc.request(subject, ask, timeout=1)).data)


async def consent_and_exchange(
    nc: NatsClient,
    http: aiohttp.ClientSession,
    authorize_url: str,
    *,
    provider: str,
    client_id: str,
    user_id: str,
    hint: str,
    scopes: tuple[str, ...],
    scope_separator: str = " ",
    extra: Mapping[str, str] | None = None,
    reply_within: float = 30.0,
) -> None:
    """Consent at the sandbox's ``authorize_url`` as a browser would (the code comes back
    in the redirect), then token.exchange as the gateway's callback would."""
    query = {
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": scope_separator.join(scopes),
        "state": uuid.uuid4().hex,
        "login_hint": hint,
        **(extra or {}),
    }
    async with http.get(authorize_url, params=query, allow_redirects=False) as resp:
        code = parse_qs(urlsplit(resp.headers["Location"]).query)["code"][0]
    ask = TokenExchange(
        user_id=user_id,
        provider=provider,
        code=code,
        redirect_uri=REDIRECT_URI,
        requested_scopes=scopes,
        state_nonce=uuid.uuid4().hex,
    )
    msg = await nc.request(subjects.TOKEN_EXCHANGE, ask.to_bytes(), timeout=reply_within)
    reply = TokenExchangeReply.model_validate_json(msg.data)
    if reply.error is not None:
        raise RuntimeError(f"exchange failed: {reply.error.message}")


async def connect_google(
    nc: NatsClient,
    http: aiohttp.ClientSession,
    sandbox_url: str,
    provider: str,
    user_id: str,
    hint: str,
    scopes: tuple[str, ...],
    reply_within: float = 30.0,
) -> None:
    """:func:`consent_and_exchange` at Google's authorize endpoint, offline access."""
    await consent_and_exchange(
        nc,
        http,
        f"{sandbox_url}/google/o/oauth2/v2/auth",
        provider=provider,
        client_id=CREDS.google.client_id,
        user_id=user_id,
        hint=hint,
        scopes=scopes,
        extra={"access_type": "offline", "prompt": "consent"},
        reply_within=reply_within,
    )


async def connect(nc: NatsClient, sandbox_url: str, user_id: str) -> None:
    async with aiohttp.ClientSession() as http:
        hint = f"{user_id}@example.com"
        await connect_google(nc, http, sandbox_url, PROVIDER, user_id, hint, SCOPES, 10)


def token_request(user_id: str) -> bytes:
    return TokenGet(user_id=user_id, provider=PROVIDER, min_valid_seconds=300).to_bytes()


def check_token_reply(data: bytes) -> None:
    reply = TokenGetReply.model_validate_json(data)
    if reply.error is not None or not reply.access_token:
        raise RuntimeError(f"token.get failed: {reply.error}")


# -- 1. token.get for a valid token --------------------------------------------------------


def _sender(nc: NatsClient, subject: str, payload: bytes, failures: list[str]) -> Send:
    async def send() -> None:
        try:
            msg = await nc.request(subject, payload, timeout=TIMEOUT)
        except nats.errors.TimeoutError:
            # Counted at the full wait: a saturated service shows in the tail, and the run
            # goes on instead of losing every figure to one timeout.
            failures.append("timeout")
            return
        if b'"error":{' in msg.data:
            failures.append(msg.data.decode(errors="replace")[:200])

    return send


async def _capacity(send: Send) -> float:
    """Requests per second with IN_FLIGHT kept outstanding for CAPACITY_SECONDS."""
    done = 0
    deadline = time.perf_counter() + CAPACITY_SECONDS

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await send()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return done / (time.perf_counter() - started)


async def token_get_latency() -> list[Figure]:
    async with arranged() as (nc, _, sandbox_url):
        await connect(nc, sandbox_url, "bench-valid")
        payload = token_request("bench-valid")
        check_token_reply((await nc.request(subjects.TOKEN_GET, payload, timeout=5)).data)
        failures: list[str] = []
        ours = _sender(nc, subjects.TOKEN_GET, payload, failures)
        echo = _sender(nc, ECHO_SUBJECT, payload, [])
        noop = _sender(nc, NOOP_SUBJECT, payload, [])

        await paced(ours, echo, LOW_RATE, 0.5)
        # Capacity and the sustainable pace first: the full pace may outrun one replica,
        # and the backlog it leaves would weigh on whatever is measured after it.
        ours_rps, noop_rps = await alternate(
            lambda: _capacity(ours), lambda: _capacity(noop), CAPACITY_ROUNDS
        )
        low_ours, low_echo = await paced(ours, echo, LOW_RATE, SECONDS)
        ours_ms, echo_ms = await paced(ours, echo, RATE, SECONDS)
        errors = [f for f in failures if f != "timeout"]
        if errors:
            raise RuntimeError(f"token.get answered errors: {errors[:3]}")
    return [
        Figure.compare(
            "tokens.get_valid_p99_ms",
            percentile(ours_ms, 99),
            "ms",
            baseline_name=f"raw NATS request/reply echo p99, {RATE:,.0f}/s each",
            baseline_value=percentile(echo_ms, 99),
            at_most=3.0,
        ),
        Figure.compare(
            "tokens.get_valid_p50_ms",
            percentile(ours_ms, 50),
            "ms",
            baseline_name=f"raw NATS request/reply echo p50, {RATE:,.0f}/s each",
            baseline_value=percentile(echo_ms, 50),
        ),
        Figure.compare(
            "tokens.get_valid_p99_ms_at_400_rps",
            percentile(low_ours, 99),
            "ms",
            baseline_name=f"raw NATS request/reply echo p99, {LOW_RATE:,.0f}/s each",
            baseline_value=percentile(low_echo, 99),
        ),
        Figure.compare(
            "tokens.get_valid_capacity_rps",
            sum(ours_rps) / len(ours_rps),
            "req/s",
            baseline_name=f"no-op rpc.responder on ServiceRuntime, {IN_FLIGHT} in flight",
            baseline_value=sum(noop_rps) / len(noop_rps),
        ),
    ]


# -- 2. refresh overhead -------------------------------------------------------------------


async def _direct_refresh_token(http: aiohttp.ClientSession, sandbox_url: str) -> str:
    """A Google refresh token of another account, to call the token endpoint directly."""
    async with http.post(
        f"{sandbox_url}/_sandbox/google/accounts", json={"login_hint": "direct@example.com"}
    ) as resp:
        account = (await resp.json())["id"]
    async with http.post(
        f"{sandbox_url}/_sandbox/google/accounts/{account}/tokens", json={"scopes": list(SCOPES)}
    ) as resp:
        return str((await resp.json())["refresh_token"])


async def refresh_overhead() -> list[Figure]:
    # Tokens are expired in the table behind the service's back, which its in-memory
    # answers would hide for TOKEN_CACHE_SECONDS: this measures the refresh path only.
    async with (
        arranged(TOKEN_CACHE_SECONDS="0") as (nc, admin_dsn, sandbox_url),
        aiohttp.ClientSession() as http,
    ):
        await connect(nc, sandbox_url, "bench-expired")
        payload = token_request("bench-expired")
        refresh_token = await _direct_refresh_token(http, sandbox_url)
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": CREDS.google.client_id,
            "client_secret": CREDS.google.client_secret,
        }
        admin = await asyncpg.connect(admin_dsn)
        ours_ms: list[float] = []
        direct_ms: list[float] = []

        async def ours() -> None:
            await admin.execute(
                "UPDATE tokens.connections SET expires_at = $1 WHERE user_id = 'bench-expired'",
                datetime(2000, 1, 1, tzinfo=UTC),
            )
            started = time.perf_counter()
            msg = await nc.request(subjects.TOKEN_GET, payload, timeout=10)
            ours_ms.append((time.perf_counter() - started) * 1000)
            check_token_reply(msg.data)

        async def direct() -> None:
            started = time.perf_counter()
            async with http.post(f"{sandbox_url}/google/token", data=form) as resp:
                await resp.read()
                resp.raise_for_status()
            direct_ms.append((time.perf_counter() - started) * 1000)

        try:
            for _ in range(5):  # warm both paths
                await ours()
                await direct()
            ours_ms.clear()
            direct_ms.clear()
            for index in range(REFRESHES):
                turns = (ours, direct) if index % 2 == 0 else (direct, ours)
                for turn in turns:
                    await turn()
            refreshed = await admin.fetchval(
                "SELECT refresh_count FROM tokens.connections WHERE user_id = 'bench-expired'"
            )
        finally:
            await admin.close()
    if refreshed < REFRESHES:
        raise RuntimeError(f"only {refreshed} refreshes happened; the figure would lie")
    ours_p50, direct_p50 = percentile(ours_ms, 50), percentile(direct_ms, 50)
    overhead = ours_p50 - direct_p50
    return [
        Figure(
            name="tokens.refresh_overhead_p50_ms",
            value=round(overhead, 3),
            unit="ms",
            baseline_name="sandbox token endpoint p50, called directly",
            baseline_value=round(direct_p50, 3),
            ratio=round(ours_p50 / direct_p50, 3),
            target=f"<= {OVERHEAD_TARGET_MS:.0f} ms over the token endpoint",
            meets=overhead <= OVERHEAD_TARGET_MS,
        )
    ]


BENCHES: tuple[Bench, ...] = (
    Bench("tokens.get_latency", token_get_latency, timeout=120),
    Bench("tokens.refresh_overhead", refresh_overhead, timeout=120),
)
