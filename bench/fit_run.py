"""The unified Google Fit run (issue 7), beside the least it could do, measured in the
same run:

- ``fit_run.provider_calls_per_user``: Google Fit calls one scheduled run makes per user
  over N users x 7 days (N = 1,000 unless ``BENCH_FIT_USERS`` says otherwise), beside
  the minimum possible: one ``dataset:aggregate`` for the 7 days and one
  ``sessions.list`` per user, plus the token refreshes the run needed (none here: the
  tokens are fresh from the connect, so token-service answers from its store).
- ``fit_run.duration_s``: the run's own duration (its row: claim to last user), beside a
  bare loop making the same 2 calls per user with pre-minted tokens at the same
  concurrency (no token.get, no database, no events).

Everything runs as in production, each service in its own process (``bench.sync``'s
arrangement): embedded NATS and Postgres, the sandbox, token-service, sync-worker. The
run's pacing pause between batches is set to 0: it is a deliberate wait (1 s by default,
9 s over 1,000 users in batches of 100), not work.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
from nats.aio.client import Client as NatsClient
from sync_worker.providers._google_fit_model import aggregate_request
from syncplane_common import subjects
from syncplane_common.contracts import TokenExchange, TokenExchangeReply

from bench.report import Bench, Figure
from bench.sync import control, sync_stack, worker_running
from bench.tokens import CREDS, REDIRECT_URI, wait_until

USERS = int(os.environ.get("BENCH_FIT_USERS", "1000"))
DAYS = 7
CONCURRENCY = 10
SCOPES = tuple(
    f"https://www.googleapis.com/auth/fitness.{kind}.read"
    for kind in ("activity", "body", "heart_rate", "location", "sleep")
)
AGGREGATE = "google_fit POST /users/me/dataset:aggregate"
SESSIONS = "google_fit GET /users/me/sessions"


async def connect_google_fit(
    nc: NatsClient, http: aiohttp.ClientSession, sandbox_url: str, user_id: str, hint: str
) -> None:
    query = {
        "client_id": CREDS.google.client_id,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": " ".join(SCOPES),
        "state": uuid.uuid4().hex,
        "login_hint": hint,
        "access_type": "offline",
        "prompt": "consent",
    }
    async with http.get(
        f"{sandbox_url}/google/o/oauth2/v2/auth", params=query, allow_redirects=False
    ) as resp:
        code = parse_qs(urlsplit(resp.headers["Location"]).query)["code"][0]
    ask = TokenExchange(
        user_id=user_id,
        provider="google_fit",
        code=code,
        redirect_uri=REDIRECT_URI,
        requested_scopes=SCOPES,
        state_nonce=uuid.uuid4().hex,
    )
    msg = await nc.request(subjects.TOKEN_EXCHANGE, ask.to_bytes(), timeout=30)
    reply = TokenExchangeReply.model_validate_json(msg.data)
    if reply.error is not None:
        raise RuntimeError(f"exchange failed: {reply.error.message}")


async def run_figures() -> list[Figure]:
    async with sync_stack() as (nc, admin_dsn, sandbox_url, logs), aiohttp.ClientSession() as http:
        gate = asyncio.Semaphore(16)
        hints = [f"fit-bench-{i}@example.com" for i in range(USERS)]

        async def prepare(i: int) -> None:
            async with gate:
                await connect_google_fit(nc, http, sandbox_url, f"fit-bench-{i}", hints[i])

        await asyncio.gather(*(prepare(i) for i in range(USERS)))
        accounts = {
            a["login_hint"]: str(a["id"])
            for a in (await control(http, sandbox_url, "GET", "/_sandbox/google_fit/accounts"))[
                "accounts"
            ]
        }

        async def seed(hint: str) -> None:
            base = f"/_sandbox/google_fit/users/{accounts[hint]}"
            async with gate:
                await control(http, sandbox_url, "POST", f"{base}/days", {"generate": DAYS})
                await control(http, sandbox_url, "POST", f"{base}/sessions", {"generate": 3})

        await asyncio.gather(*(seed(h) for h in hints))
        pool = await asyncpg.create_pool(admin_dsn, min_size=1, max_size=4)
        try:
            async with worker_running(
                nc,
                admin_dsn,
                sandbox_url,
                logs,
                SCHEDULER_TICK_SECONDS="1",
                GOOGLE_FIT_BACKFILL_DAYS=str(DAYS),
                GOOGLE_FIT_RUN_PAUSE_SECONDS="0",
                GOOGLE_FIT_RUN_CONCURRENCY=str(CONCURRENCY),
                SYNC_CONCURRENCY="8",
            ):

                async def backfilled() -> bool:
                    n = await pool.fetchval(
                        "SELECT count(*) FROM sync.sessions WHERE kind = 'backfill' "
                        "AND state = 'completed'"
                    )
                    return bool(n == USERS)

                await wait_until("every connect backfill", backfilled, within=600)
                before = await control(http, sandbox_url, "GET", "/_sandbox/stats")
                marker = datetime.now(UTC)
                await pool.execute(
                    "UPDATE sync.connections SET next_sync_at = $1 WHERE provider = 'google_fit'",
                    marker - timedelta(seconds=1),
                )

                async def ran() -> bool:
                    n = await pool.fetchval(
                        "SELECT coalesce(sum(users_processed), 0) FROM sync.google_fit_runs "
                        "WHERE started_at >= $1",
                        marker - timedelta(seconds=5),
                    )
                    return bool(n >= USERS)

                await wait_until("the Fit run", ran, within=600)
                runs = await pool.fetch(
                    "SELECT * FROM sync.google_fit_runs WHERE started_at >= $1",
                    marker - timedelta(seconds=5),
                )
                after = await control(http, sandbox_url, "GET", "/_sandbox/stats")
            baseline = await bare_calls(http, sandbox_url, list(accounts.values()))
        finally:
            await pool.close()

    def delta(key: str) -> int:
        return int(after["calls"].get(key, 0)) - int(before["calls"].get(key, 0))

    calls = delta(AGGREGATE) + delta(SESSIONS)
    refreshed = sum(after["refreshes"].values()) - sum(before["refreshes"].values())
    processed = sum(r["users_processed"] for r in runs)
    failed = sum(r["failed"] for r in runs)
    if processed != USERS or failed:
        raise RuntimeError(f"the run processed {processed} users, {failed} failed")
    duration = sum(r["duration_ms"] for r in runs) / 1000
    minimum = (2 * USERS + refreshed) / USERS
    per_user = (calls + refreshed) / USERS
    print(
        f"fit run: {processed} users in {len(runs)} run(s), {duration:.2f}s, {calls} calls, "
        f"{refreshed} refreshes, {sum(r['days_synced'] for r in runs)} days; "
        f"bare calls {baseline:.2f}s",
        file=sys.stderr,
    )
    return [
        Figure(
            name="fit_run.provider_calls_per_user",
            value=round(per_user, 4),
            unit="calls / user",
            baseline_name="minimum possible (1 aggregate + 1 sessions.list + refreshes)",
            baseline_value=round(minimum, 4),
            ratio=round(per_user / minimum, 4),
            target="<= 1.05x minimum",
            meets=per_user / minimum <= 1.05,
        ),
        Figure.compare(
            f"fit_run.duration_s_{USERS}_users_x_{DAYS}_days",
            duration,
            "s",
            baseline_name=f"bare aggregate + sessions.list per user, {CONCURRENCY} at a time",
            baseline_value=baseline,
        ),
    ]


async def bare_calls(http: aiohttp.ClientSession, sandbox_url: str, accounts: list[str]) -> float:
    """The same two calls per user with tokens minted beforehand, CONCURRENCY at a time."""
    tokens = {}
    for account in accounts:
        minted = await control(
            http,
            sandbox_url,
            "POST",
            f"/_sandbox/google/accounts/{account}/tokens",
            {"scopes": list(SCOPES)},
        )
        tokens[account] = minted["access_token"]
    zone = ZoneInfo("UTC")
    today = datetime.now(UTC).date()
    body = aggregate_request(today - timedelta(days=DAYS - 1), today, zone)
    end = datetime.now(UTC)
    params = {
        "startTime": (end - timedelta(days=DAYS)).isoformat().replace("+00:00", "Z"),
        "endTime": end.isoformat().replace("+00:00", "Z"),
    }
    base = f"{sandbox_url}/google/fitness/v1/users/me"
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(account: str) -> None:
        headers = {"Authorization": f"Bearer {tokens[account]}"}
        async with gate:
            async with http.post(f"{base}/dataset:aggregate", json=body, headers=headers) as r:
                await r.read()
                _ok(r.status)
            async with http.get(f"{base}/sessions", params=params, headers=headers) as r:
                await r.read()
                _ok(r.status)

    started = time.perf_counter()
    await asyncio.gather(*(one(a) for a in accounts))
    return time.perf_counter() - started


def _ok(status: int) -> None:
    if status != 200:
        raise RuntimeError(f"bare call answered {status}")


BENCHES: tuple[Bench, ...] = (Bench("fit_run.run", run_figures, timeout=1500),)
