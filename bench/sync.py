"""sync-worker figures (issue 6), each beside a baseline measured in the same run:

- ``sync.backfill``: N athletes x 200 activities connected at once (N = 1,000 unless
  ``BENCH_SYNC_ATHLETES`` says otherwise). Provider calls used / the minimum possible
  (one full page and the empty page that ends the list per athlete, plus refreshes), and
  stored rows per second beside a raw ``unnest`` upsert of the same rows.
- ``sync.webhook_latency``: webhook event on the bus → ``records.changed`` for its
  activity, p50 / p99 at 200 events/s with 20 ms of sandbox latency, beside a bare loop
  doing the same provider GET and one INSERT at the same pace.
- ``sync.scheduler_claim``: one claim batch (500) among 100,000 due connections, beside a
  plain index-ordered ``SELECT ... LIMIT 500`` of the same rows; the plan is printed.

Knobs for exploring (the recorded figures use the defaults): ``BENCH_SYNC_WEBHOOK_RATE``
(events/s, default 200) and ``BENCH_SYNC_WORKER_ENV`` (``NAME=value`` pairs passed to the
webhook run's sync-worker, e.g. ``RATE_BUDGET_ENABLED=false``).

Everything runs as in production, each service in its own process (the arrangement of
``bench.tokens``): embedded NATS and Postgres, the sandbox, token-service, sync-worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import sync_worker
from nats.aio.client import Client as NatsClient
from provider_sandbox.config import provider_urls
from sync_worker import sync_state
from syncplane_common import subjects
from syncplane_common.contracts import (
    SyncStatusGet,
    WebhookReceived,
)
from syncplane_common.migrations import migrate

from bench.bus import percentile
from bench.report import Bench, Figure
from bench.tokens import (
    CREDS,
    arranged,
    consent_and_exchange,
    embedded_postgres,
    process,
    wait_until,
)

MIGRATIONS = Path(sync_worker.__file__).parent / "migrations"
ATHLETES = int(os.environ.get("BENCH_SYNC_ATHLETES", "1000"))
PER_ATHLETE = 200
WEBHOOK_RATE = float(os.environ.get("BENCH_SYNC_WEBHOOK_RATE", "200"))
WEBHOOK_SECONDS = 8.0
LATENCY_MS = 20
DUE = 100_000
BATCH = 500
WEBHOOK_WORKER: dict[str, str] = dict(
    item.split("=", 1) for item in os.environ.get("BENCH_SYNC_WORKER_ENV", "").split() if item
)


def worker_env(nats_url: str, admin_dsn: str, sandbox_url: str, **extra: str) -> dict[str, str]:
    parts = urlsplit(admin_dsn)
    return {
        "NATS_URL": nats_url,
        "DATABASE_URL": f"postgresql://sync_worker:sync_worker@{parts.hostname}:{parts.port}"
        f"{parts.path}",
        "HTTP_PORT": "0",
        "LOG_LEVEL": "WARNING",
        "SCHEDULER_TICK_SECONDS": "3600",
        "GEOCODING_USER_AGENT": "syncplane-bench/1.0 (bench@syncplane.invalid)",
        **provider_urls(sandbox_url),
        **extra,
    }


@asynccontextmanager
async def sync_stack() -> AsyncIterator[tuple[NatsClient, str, str, Path]]:
    async with arranged() as (nc, admin_dsn, sandbox_url):
        await migrate(admin_dsn, "sync-worker", MIGRATIONS)
        logs = Path(tempfile.mkdtemp(prefix="syncplane-bench-sync-"))
        yield nc, admin_dsn, sandbox_url, logs


@asynccontextmanager
async def worker_running(
    nc: NatsClient, admin_dsn: str, sandbox_url: str, logs: Path, **extra: str
) -> AsyncIterator[None]:
    env = worker_env(nc.connected_url.geturl() if nc.connected_url else "", admin_dsn, sandbox_url)
    with process(["-m", "sync_worker"], {**env, **extra}, logs / "sync-worker.log"):
        await wait_until("sync-worker", lambda: _answering(nc), within=60)
        yield


async def _answering(nc: NatsClient) -> bool:
    msg = await nc.request(
        subjects.SYNC_STATUS_GET, SyncStatusGet(user_id="nobody").to_bytes(), timeout=1
    )
    return b"statuses" in msg.data


async def control(
    http: aiohttp.ClientSession, sandbox_url: str, method: str, path: str, body: Any = None
) -> Any:
    async with http.request(method, f"{sandbox_url}{path}", json=body) as resp:
        if resp.status >= 400:
            raise RuntimeError(f"{method} {path}: {resp.status} {await resp.text()}")
        return await resp.json()


async def connect_strava(
    nc: NatsClient, http: aiohttp.ClientSession, sandbox_url: str, user_id: str, hint: str
) -> None:
    await consent_and_exchange(
        nc,
        http,
        f"{sandbox_url}/strava/oauth/authorize",
        provider="strava",
        client_id=CREDS.strava.client_id,
        user_id=user_id,
        hint=hint,
        scopes=("read", "activity:read_all"),
        scope_separator=",",  # Strava's scope list is comma separated
    )


async def connect_all(
    nc: NatsClient, http: aiohttp.ClientSession, sandbox_url: str, hints: list[str]
) -> list[str]:
    users = [f"bench-user-{i}" for i in range(len(hints))]
    gate = asyncio.Semaphore(16)

    async def one(user: str, hint: str) -> None:
        async with gate:
            await connect_strava(nc, http, sandbox_url, user, hint)

    await asyncio.gather(*(one(u, h) for u, h in zip(users, hints, strict=True)))
    return users


# -- backfill ------------------------------------------------------------------------------


async def backfill() -> list[Figure]:
    async with sync_stack() as (nc, admin_dsn, sandbox_url, logs), aiohttp.ClientSession() as http:
        # The application's limits are not what is measured here: lift them.
        await control(
            http,
            sandbox_url,
            "POST",
            "/_sandbox/strava/config",
            {"rate_limit": [10**7, 10**8], "read_rate_limit": [10**7, 10**8]},
        )
        seeded = await control(
            http,
            sandbox_url,
            "POST",
            "/_sandbox/strava/seed",
            {"athletes": ATHLETES, "activities_per_athlete": PER_ATHLETE},
        )
        hints = [a["login_hint"] for a in seeded["athletes"]]
        # Connected while no worker runs: the connected events wait in the stream, so the
        # clock below starts with every backfill queued at once.
        users = await connect_all(nc, http, sandbox_url, hints)
        before = await control(http, sandbox_url, "GET", "/_sandbox/stats")
        pool = await asyncpg.create_pool(admin_dsn, min_size=1, max_size=4)
        try:
            started = time.perf_counter()
            async with worker_running(
                nc,
                admin_dsn,
                sandbox_url,
                logs,
                WEATHER_ENABLED="false",
                GEOCODING_ENABLED="false",
                SYNC_CONCURRENCY="8",
            ):

                async def done() -> bool:
                    n = await pool.fetchval(
                        "SELECT count(*) FROM sync.sessions WHERE kind = 'backfill' "
                        "AND state = 'completed'"
                    )
                    return bool(n == len(users))

                await wait_until("every backfill", done, within=1500)
                elapsed = time.perf_counter() - started
            after = await control(http, sandbox_url, "GET", "/_sandbox/stats")
            rows = await pool.fetchval("SELECT count(*) FROM sync.strava_activities")
            baseline_rate = await raw_unnest_rate(pool)
        finally:
            await pool.close()

    def calls(stats: dict[str, Any], key: str) -> int:
        return int(stats["calls"].get(key, 0))

    listed = calls(after, "strava GET /athlete/activities") - calls(
        before, "strava GET /athlete/activities"
    )
    refreshed = sum(after["refreshes"].values()) - sum(before["refreshes"].values())
    minimum = 2 * len(users) + refreshed  # one full page + one empty page each
    used = listed + refreshed
    rate = rows / elapsed
    print(
        f"backfill: {len(users)} athletes, {rows} rows in {elapsed:.1f}s, "
        f"{listed} list calls, {refreshed} refreshes",
        file=sys.stderr,
    )
    return [
        Figure(
            name="sync.backfill_provider_calls_ratio",
            value=round(used / minimum, 4),
            unit="calls / minimum",
            baseline_name="minimum possible (pages + refreshes)",
            baseline_value=float(minimum),
            ratio=round(used / minimum, 4),
            target="<= 1.05",
            meets=used / minimum <= 1.05,
        ),
        Figure.compare(
            "sync.backfill_rows_per_second",
            rate,
            "rows/s",
            baseline_name="raw unnest upsert, 200 rows a statement",
            baseline_value=baseline_rate,
        ),
    ]


async def raw_unnest_rate(pool: asyncpg.Pool) -> float:
    """The same rows, upserted 200 at a time with a bare ``unnest``: the floor of storing."""
    records = await pool.fetch(
        "SELECT user_id, strava_id, raw::text AS raw FROM sync.strava_activities"
    )
    await pool.execute(
        "CREATE TABLE IF NOT EXISTS public.bench_raw (user_id text, strava_id bigint, "
        "raw jsonb, PRIMARY KEY (user_id, strava_id))"
    )
    started = time.perf_counter()
    for i in range(0, len(records), PER_ATHLETE):
        chunk = records[i : i + PER_ATHLETE]
        await pool.execute(
            "INSERT INTO public.bench_raw SELECT * FROM unnest($1::text[], $2::bigint[], "
            "$3::text[]::jsonb[]) ON CONFLICT (user_id, strava_id) DO UPDATE SET raw = "
            "EXCLUDED.raw",
            [r["user_id"] for r in chunk],
            [r["strava_id"] for r in chunk],
            [r["raw"] for r in chunk],
        )
    return len(records) / (time.perf_counter() - started)


# -- webhook latency -----------------------------------------------------------------------


async def webhook_latency() -> list[Figure]:
    athletes = 20
    per = int(WEBHOOK_RATE * WEBHOOK_SECONDS) // athletes + 1
    async with sync_stack() as (nc, admin_dsn, sandbox_url, logs), aiohttp.ClientSession() as http:
        await control(
            http,
            sandbox_url,
            "POST",
            "/_sandbox/strava/config",
            {"rate_limit": [10**7, 10**8], "read_rate_limit": [10**7, 10**8]},
        )
        seeded = await control(
            http,
            sandbox_url,
            "POST",
            "/_sandbox/strava/seed",
            {"athletes": athletes, "activities_per_athlete": 0},
        )
        owners = [(a["id"], a["login_hint"]) for a in seeded["athletes"]]
        users = await connect_all(nc, http, sandbox_url, [h for _, h in owners])
        pool = await asyncpg.create_pool(admin_dsn, min_size=1, max_size=4)
        async with worker_running(nc, admin_dsn, sandbox_url, logs, **WEBHOOK_WORKER):

            async def backfilled() -> bool:
                n = await pool.fetchval(
                    "SELECT count(*) FROM sync.sessions WHERE kind = 'backfill' "
                    "AND state = 'completed'"
                )
                return bool(n == len(users))

            # The activities are made after the connect backfills finished, so only
            # the webhooks can store them (a backfill would make them "unchanged").
            await wait_until("connect backfills", backfilled, within=60)
            objects: list[tuple[int, int]] = []
            for athlete, _ in owners:
                made = await control(
                    http,
                    sandbox_url,
                    "POST",
                    f"/_sandbox/strava/athletes/{athlete}/activities",
                    {"generate": per},
                )
                objects += [(athlete, a["id"]) for a in made["activities"]]
            for endpoint in ("GET /activities/{id}", "GET /athlete/activities"):
                await control(
                    http,
                    sandbox_url,
                    "POST",
                    "/_sandbox/faults",
                    {"provider": "strava", "endpoint": endpoint, "latency_ms": LATENCY_MS},
                )
            ours = await _webhook_run(nc, objects)
        baseline = await _baseline_run(http, sandbox_url, pool, objects)
        await pool.close()
    p50, p99 = percentile(ours, 50), percentile(ours, 99)
    b50, b99 = percentile(baseline, 50), percentile(baseline, 99)
    print(
        f"webhook latency p50 {p50:.1f} ms p99 {p99:.1f} ms (bare {b50:.1f}/{b99:.1f})",
        file=sys.stderr,
    )
    return [
        Figure(
            name=f"sync.webhook_to_row_p99_ms_at_{WEBHOOK_RATE:.0f}_per_s",
            value=round(p99, 2),
            unit="ms",
            baseline_name=f"bare provider GET + INSERT at {WEBHOOK_RATE:.0f}/s",
            baseline_value=round(b99, 2),
            ratio=round(p99 / b99, 3),
            target="p99 <= 250 ms at 200/s" if WEBHOOK_RATE >= 200 else "report only",
            meets=p99 <= 250 or WEBHOOK_RATE < 200,
        ),
        Figure.compare(
            f"sync.webhook_to_row_p50_ms_at_{WEBHOOK_RATE:.0f}_per_s",
            p50,
            "ms",
            baseline_name=f"bare provider GET + INSERT at {WEBHOOK_RATE:.0f}/s",
            baseline_value=b50,
        ),
    ]


async def open_loop(
    items: list[tuple[int, int]], rate: float, send: Callable[[int, int], Coroutine[Any, Any, None]]
) -> None:
    """``send`` each item on a fixed schedule, ``rate`` per second, without waiting for
    the one before: a slow send shows in the tail instead of quietly lowering the rate."""
    tasks = []
    start = time.perf_counter()
    for index, (athlete, activity) in enumerate(items):
        delay = start + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(athlete, activity)))
    await asyncio.gather(*tasks)


async def _webhook_run(nc: NatsClient, objects: list[tuple[int, int]]) -> list[float]:
    count = min(len(objects), int(WEBHOOK_RATE * WEBHOOK_SECONDS))
    sent: dict[str, float] = {}
    arrived: dict[str, float] = {}
    everything = asyncio.Event()

    async def changed(msg: Any) -> None:
        now = time.perf_counter()
        for object_id in json.loads(msg.data)["added"]:
            arrived.setdefault(object_id, now)
        if len(arrived) >= count:
            everything.set()

    js = nc.jetstream()

    async def publish(athlete: int, activity: int) -> None:
        event = WebhookReceived(
            provider="strava",
            kind="activity",
            event_id=f"bench-{activity}",
            object_id=str(activity),
            owner_id=str(athlete),
            action="create",
            received_at=datetime.now(UTC),
        )
        sent[str(activity)] = time.perf_counter()
        await js.publish(
            event.subject,
            event.to_bytes(),
            stream="WEBHOOKS",
            headers={"Nats-Msg-Id": event.event_id},
        )

    sub = await nc.subscribe("records.changed.strava.activities", cb=changed)
    await open_loop(objects[:count], WEBHOOK_RATE, publish)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(everything.wait(), 60)
    await sub.unsubscribe()
    missing = count - len(arrived)
    if missing:
        raise RuntimeError(f"{missing} webhook events never reached a stored row")
    return [(arrived[k] - v) * 1000 for k, v in sent.items()]


async def _baseline_run(
    http: aiohttp.ClientSession,
    sandbox_url: str,
    pool: asyncpg.Pool,
    objects: list[tuple[int, int]],
) -> list[float]:
    """The least any pipeline must do per event: the same provider GET of the activity
    (with its athlete's token) and one INSERT of what came back."""
    tokens = {}
    for athlete in {a for a, _ in objects}:
        path = f"/_sandbox/strava/athletes/{athlete}/tokens"
        tokens[athlete] = (await control(http, sandbox_url, "POST", path, {}))["access_token"]
    await pool.execute(
        "CREATE TABLE IF NOT EXISTS public.bench_hook (id bigint PRIMARY KEY, raw jsonb)"
    )
    samples: list[float] = []

    async def one(athlete: int, activity: int) -> None:
        started = time.perf_counter()
        async with http.get(
            f"{sandbox_url}/strava/api/v3/activities/{activity}",
            headers={"Authorization": f"Bearer {tokens[athlete]}"},
        ) as resp:
            body = await resp.text()
        await pool.execute(
            "INSERT INTO public.bench_hook VALUES ($1, $2::text::jsonb) ON CONFLICT DO NOTHING",
            activity,
            body,
        )
        samples.append((time.perf_counter() - started) * 1000)

    await open_loop(objects[: int(WEBHOOK_RATE * WEBHOOK_SECONDS)], WEBHOOK_RATE, one)
    return samples


# -- scheduler claim -----------------------------------------------------------------------


async def scheduler_claim() -> list[Figure]:
    async with embedded_postgres() as admin_dsn:
        await migrate(admin_dsn, "sync-worker", MIGRATIONS)
        pool = await asyncpg.create_pool(
            admin_dsn, min_size=1, max_size=2, server_settings={"search_path": "sync"}
        )
        now = datetime.now(UTC)
        # 100,000 active connections, all due; as many revoked ones the index must skip.
        await pool.execute(
            """
            INSERT INTO connections (user_id, provider, status, next_sync_at, status_at,
                created_at, updated_at)
            SELECT 'u' || g, 'strava', CASE WHEN g <= $2 THEN 'active' ELSE 'revoked' END,
                $1::timestamptz - make_interval(secs => g), $1, $1, $1
            FROM generate_series(1, $2 * 2) g
            """,
            now,
            DUE,
        )
        await pool.execute("ANALYZE connections")
        plan = await pool.fetch("EXPLAIN " + sync_state.CLAIM, now, ["strava"], BATCH, [10800])
        print("claim plan:\n" + "\n".join(r[0] for r in plan), file=sys.stderr)
        claims: list[float] = []
        plain: list[float] = []
        for _ in range(20):
            async with pool.acquire() as conn:
                tx = conn.transaction()
                await tx.start()
                started = time.perf_counter()
                due, _ = await sync_state.claim_due(conn, now, {"strava": 10800}, BATCH)
                claims.append((time.perf_counter() - started) * 1000)
                await tx.rollback()
                assert len(due) == BATCH
                started = time.perf_counter()
                await conn.fetch(
                    "SELECT user_id, provider FROM connections WHERE status = 'active' "
                    "AND next_sync_at <= $1 ORDER BY next_sync_at LIMIT $2",
                    now,
                    BATCH,
                )
                plain.append((time.perf_counter() - started) * 1000)
        await pool.close()
    p50, worst = percentile(claims, 50), max(claims)
    return [
        Figure(
            name="sync.scheduler_claim_ms",
            value=round(worst, 2),
            unit="ms (slowest of 20 batches of 500)",
            baseline_name="index-ordered SELECT LIMIT 500, same rows",
            baseline_value=round(max(plain), 2),
            ratio=round(worst / max(plain), 3),
            target="<= 50 ms",
            meets=worst <= 50,
        ),
        Figure.compare(
            "sync.scheduler_claim_p50_ms",
            p50,
            "ms",
            baseline_name="index-ordered SELECT LIMIT 500",
            baseline_value=percentile(plain, 50),
        ),
    ]


BENCHES: tuple[Bench, ...] = (
    Bench("sync.scheduler_claim", scheduler_claim, timeout=300),
    Bench("sync.webhook_latency", webhook_latency, timeout=300),
    Bench("sync.backfill", backfill, timeout=1800),
)
