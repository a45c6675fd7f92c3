"""calendar-sync figures (issue 8), each beside a baseline or ideal from the same run:

- ``calendar.outbound``: 1,000 local changes (``calendar.local.changed``, 10 users x 100)
  → Google writes counted by the sandbox (exactly 1,000), echoes (``calendar.remote.changed``
  for our own writes, after a listing of every calendar: 0), and the time until the last
  write landed beside a bare loop doing the same 1,000 inserts straight at the sandbox
  paced at the same per-user rate (the bound: 100 writes per user at 10/s is 10 s).
- ``calendar.inbound``: 1,000 Google changes in bursts (10 bursts x 10 users x 10 changes,
  one push notification per change on ``webhook.received.gcal.events``) → ``events.list``
  calls used beside one per notification, and p50 / p99 from a push on the bus to its
  ``calendar.remote.changed``, beside a bare incremental listing plus one bus round trip.

Each service in its own process, as in production (``bench.tokens``' arrangement: embedded
NATS and Postgres, the sandbox, token-service) plus calendar-sync; users connect through
token.exchange, which publishes the ``connection.connected`` calendar-sync acts on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import asyncpg
import calendar_sync
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from provider_sandbox.config import provider_urls
from syncplane_common import subjects
from syncplane_common.contracts import (
    CalendarEventBody,
    CalendarEventsList,
    CalendarLocalChanged,
    TokenExchange,
    TokenExchangeReply,
    WebhookReceived,
)
from syncplane_common.migrations import migrate

from bench.bus import percentile
from bench.report import Bench, Figure
from bench.tokens import CREDS, REDIRECT_URI, arranged, process, wait_until

MIGRATIONS = Path(calendar_sync.__file__).parent / "migrations"
USERS = 10
PER_USER = 100
RATE = 10.0  # calendar-sync's default google_rate_per_user
BURSTS = 10
PER_BURST = 10  # changes per user per burst
SCOPES = ("https://www.googleapis.com/auth/calendar", "openid")
LIST = "google_calendar GET /calendars/{calendarId}/events"


def calendar_env(nats_url: str, admin_dsn: str, sandbox_url: str) -> dict[str, str]:
    parts = urlsplit(admin_dsn)
    return {
        "NATS_URL": nats_url,
        "DATABASE_URL": f"postgresql://calendar_sync:calendar_sync@{parts.hostname}:{parts.port}"
        f"{parts.path}",
        "HTTP_PORT": "0",
        "LOG_LEVEL": "WARNING",
        "GOOGLE_RATE_PER_USER": str(RATE),
        # Channels and polling off: the bench sends the pushes itself.
        "GCAL_WEBHOOK_URL": "",
        "MAINTENANCE_INTERVAL_SECONDS": "3600",
        **provider_urls(sandbox_url),
    }


@asynccontextmanager
async def calendar_stack() -> AsyncIterator[tuple[NatsClient, asyncpg.Pool, str]]:
    async with arranged() as (nc, admin_dsn, sandbox_url):
        await migrate(admin_dsn, "calendar-sync", MIGRATIONS)
        logs = Path(tempfile.mkdtemp(prefix="syncplane-bench-calendar-"))
        env = calendar_env(
            nc.connected_url.geturl() if nc.connected_url else "", admin_dsn, sandbox_url
        )
        pool = await asyncpg.create_pool(admin_dsn, min_size=1, max_size=2)
        try:
            with process(["-m", "calendar_sync"], env, logs / "calendar-sync.log"):
                await wait_until("calendar-sync", lambda: _answering(nc), within=60)
                yield nc, pool, sandbox_url
        finally:
            await pool.close()


async def _answering(nc: NatsClient) -> bool:
    ask = CalendarEventsList(user_id="nobody").to_bytes()
    msg = await nc.request(subjects.CALENDAR_EVENTS_LIST, ask, timeout=1)
    return b"events" in msg.data


async def control(
    http: aiohttp.ClientSession, url: str, method: str, path: str, body: Any = None
) -> Any:
    async with http.request(method, f"{url}{path}", json=body) as resp:
        if resp.status >= 400:
            raise RuntimeError(f"{method} {path}: {resp.status} {await resp.text()}")
        return await resp.json()


async def connect(nc: NatsClient, http: aiohttp.ClientSession, sandbox_url: str, user: str) -> str:
    """Consent and token.exchange as the gateway's connect flow would; the account id."""
    hint = f"{user}@example.com"
    query = {
        "client_id": CREDS.google.client_id,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": " ".join(SCOPES),
        "access_type": "offline",
        "prompt": "consent",
        "state": uuid.uuid4().hex,
        "login_hint": hint,
    }
    url = f"{sandbox_url}/google/o/oauth2/v2/auth"
    async with http.get(url, params=query, allow_redirects=False) as resp:
        code = parse_qs(urlsplit(resp.headers["Location"]).query)["code"][0]
    ask = TokenExchange(
        user_id=user,
        provider="google_calendar",
        code=code,
        redirect_uri=REDIRECT_URI,
        requested_scopes=SCOPES,
        state_nonce=uuid.uuid4().hex,
    )
    msg = await nc.request(subjects.TOKEN_EXCHANGE, ask.to_bytes(), timeout=10)
    reply = TokenExchangeReply.model_validate_json(msg.data)
    if reply.error is not None:
        raise RuntimeError(f"exchange failed: {reply.error.message}")
    made = await control(
        http, sandbox_url, "POST", "/_sandbox/google/accounts", {"login_hint": hint}
    )
    return str(made["id"])


async def connect_all(
    nc: NatsClient,
    pool: asyncpg.Pool,
    http: aiohttp.ClientSession,
    sandbox_url: str,
    users: list[str],
) -> dict[str, str]:
    accounts = {u: await connect(nc, http, sandbox_url, u) for u in users}

    async def synced() -> bool:
        n = await pool.fetchval(
            "SELECT count(*) FROM calendar.calendars WHERE sync_token IS NOT NULL"
        )
        return bool(n == len(users))

    await wait_until("first syncs", synced, within=60)
    return accounts


async def calls(http: aiohttp.ClientSession, sandbox_url: str) -> dict[str, int]:
    stats = await control(http, sandbox_url, "GET", "/_sandbox/stats")
    return dict(stats["calls"])


def writes(counts: dict[str, int]) -> int:
    return sum(
        n
        for key, n in counts.items()
        if key.startswith("google_calendar ")
        and key.split(" ", 1)[1].split(" ", 1)[0] in ("POST", "PATCH", "PUT", "DELETE")
        and "/events" in key
        and not key.endswith("/watch")
    )


class Recorder:
    """Arrival times of ``calendar.remote.changed`` by Google event id."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}

    async def on_message(self, msg: Msg) -> None:
        body = json.loads(msg.data)
        self.arrived.setdefault(body["google_event_id"], time.monotonic())


def push(user: str, number: int) -> WebhookReceived:
    return WebhookReceived(
        provider="gcal",
        kind="events",
        event_id=f"gcal:bench-{user}:{number}",
        object_id="primary",
        action="exists",
        received_at=datetime.now(UTC),
        attributes={"channel_id": f"bench-{user}", "user_id": user, "calendar_id": "primary"},
    )


async def publish(nc: NatsClient, subject: str, body: bytes, msg_id: str) -> None:
    await nc.jetstream().publish(subject, body, headers={"Nats-Msg-Id": msg_id})


# -- outbound --------------------------------------------------------------------------------


def event_body(n: int, start: datetime) -> CalendarEventBody:
    at = start + timedelta(hours=n)
    return CalendarEventBody(
        id=uuid.uuid4().hex,
        calendar_id="primary",
        title=f"Local {n}",
        start=at.isoformat(),
        end=(at + timedelta(minutes=30)).isoformat(),
    )


async def outbound() -> list[Figure]:
    users = [f"out-{i}" for i in range(USERS)]
    async with calendar_stack() as (nc, pool, sandbox_url), aiohttp.ClientSession() as http:
        recorder = Recorder()
        await connect_all(nc, pool, http, sandbox_url, users)
        sub = await nc.subscribe(subjects.CALENDAR_REMOTE_CHANGED, cb=recorder.on_message)
        before = await calls(http, sandbox_url)
        start = datetime.now(UTC) + timedelta(days=1)
        changes = [
            CalendarLocalChanged(
                change_id=f"c-{u}-{n}", user_id=u, event=event_body(n, start), at=datetime.now(UTC)
            )
            for n in range(PER_USER)
            for u in users
        ]
        began = time.monotonic()
        for change in changes:
            await publish(nc, subjects.CALENDAR_LOCAL_CHANGED, change.to_bytes(), change.change_id)

        async def all_written() -> bool:
            done = await pool.fetchval("SELECT count(*) FROM calendar.outbox WHERE status = 'done'")
            return bool(done == len(changes))

        await wait_until("1,000 pushes", all_written, within=240)
        took = time.monotonic() - began
        # A listing of every calendar sees our 1,000 writes: each must be an echo, skipped.
        asked = datetime.now(UTC)
        for u in users:
            echo = push(u, 1).to_bytes()
            await publish(nc, subjects.webhook_received("gcal", "events"), echo, f"echo-{u}")

        async def listed() -> bool:
            synced = await pool.fetchval(
                "SELECT count(*) FROM calendar.calendars WHERE last_synced_at > $1", asked
            )
            return bool(synced == len(users))

        await wait_until("echo listings", listed, within=60)
        # The publisher flushes after each sync: a remote.changed (there should be none)
        # would be on its way within its one-second tick.
        await asyncio.sleep(1.5)
        await sub.unsubscribe()
        after = await calls(http, sandbox_url)
        google_writes = writes(after) - writes(before)
        echoes = len(recorder.arrived)
        baseline = await bare_paced_inserts(http, sandbox_url, users)
    return [
        Figure.compare(
            "calendar.outbound_google_writes",
            google_writes,
            "writes",
            baseline_name="local changes published",
            baseline_value=len(changes),
            at_most=1.0,
        ),
        Figure.compare(
            "calendar.outbound_echoes",
            echoes,
            "remote.changed",
            baseline_name="Google writes",
            baseline_value=max(google_writes, 1),
            at_most=0.0,
        ),
        Figure.compare(
            "calendar.outbound_seconds",
            took,
            "s",
            baseline_name=f"bare inserts paced at {RATE:g}/s per user",
            baseline_value=baseline,
            at_most=1.5,
        ),
    ]


async def bare_paced_inserts(
    http: aiohttp.ClientSession, sandbox_url: str, users: list[str]
) -> float:
    """The same number of inserts straight at the sandbox, each user paced at RATE: the
    bound calendar-sync's time is compared with, on the same machine in the same run."""
    base = provider_urls(sandbox_url)["GOOGLE_CALENDAR_API_BASE"]
    tokens: dict[str, str] = {}
    for u in users:
        made = await control(
            http,
            sandbox_url,
            "POST",
            "/_sandbox/google/accounts",
            {"login_hint": f"bare-{u}@example.com"},
        )
        minted = await control(
            http,
            sandbox_url,
            "POST",
            f"/_sandbox/google/accounts/{made['id']}/tokens",
            {"scopes": [SCOPES[0]]},
        )
        tokens[u] = str(minted["access_token"])
    start = datetime.now(UTC) + timedelta(days=1)

    async def one_user(u: str) -> None:
        t0 = time.monotonic()
        for n in range(PER_USER):
            delay = t0 + n / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            body = event_body(n, start)
            google = {
                "summary": body.title,
                "start": {"dateTime": body.start},
                "end": {"dateTime": body.end},
            }
            async with http.post(
                f"{base}/calendars/primary/events",
                json=google,
                headers={"Authorization": f"Bearer {tokens[u]}"},
            ) as resp:
                if resp.status >= 300:
                    raise RuntimeError(f"bare insert: {resp.status} {await resp.text()}")

    began = time.monotonic()
    await asyncio.gather(*(one_user(u) for u in users))
    return time.monotonic() - began


# -- inbound ---------------------------------------------------------------------------------


async def inbound() -> list[Figure]:
    users = [f"in-{i}" for i in range(USERS)]
    async with calendar_stack() as (nc, pool, sandbox_url), aiohttp.ClientSession() as http:
        accounts = await connect_all(nc, pool, http, sandbox_url, users)
        recorder = Recorder()
        sub = await nc.subscribe(subjects.CALENDAR_REMOTE_CHANGED, cb=recorder.on_message)
        before = await calls(http, sandbox_url)
        pushed_at: dict[str, float] = {}
        number = 0
        start = datetime.now(UTC) + timedelta(days=2)
        for burst in range(BURSTS):
            made: list[tuple[str, list[str]]] = []
            for u in users:
                events = [
                    {
                        "summary": f"Remote {burst}-{k}",
                        "start": {
                            "dateTime": (start + timedelta(hours=burst * 20 + k)).isoformat()
                        },
                        "end": {
                            "dateTime": (
                                start + timedelta(hours=burst * 20 + k, minutes=30)
                            ).isoformat()
                        },
                    }
                    for k in range(PER_BURST)
                ]
                path = f"/_sandbox/google_calendar/users/{accounts[u]}/calendars/primary/events"
                added = await control(http, sandbox_url, "POST", path, {"events": events})
                made.append((u, [item["id"] for item in added["items"]]))
            # One notification per change, as Google sends them, right behind each other.
            for u, ids in made:
                for google_id in ids:
                    number += 1
                    pushed_at[google_id] = time.monotonic()
                    await publish(
                        nc,
                        subjects.webhook_received("gcal", "events"),
                        push(u, number).to_bytes(),
                        f"gcal:bench-{u}:{number}",
                    )
            expected = {google_id for _, ids in made for google_id in ids}

            async def burst_done(expected: set[str] = expected) -> bool:
                return expected <= recorder.arrived.keys()

            await wait_until(f"burst {burst}", burst_done, within=60)
        await sub.unsubscribe()
        after = await calls(http, sandbox_url)
        list_calls = after.get(LIST, 0) - before.get(LIST, 0)
        latencies = [(recorder.arrived[g] - t) * 1000 for g, t in pushed_at.items()]
        bare = await bare_listing_round_trips(nc, http, sandbox_url)
    notifications = len(pushed_at)
    return [
        Figure.compare(
            "calendar.inbound_list_calls",
            list_calls,
            "calls",
            baseline_name="one listing per notification",
            baseline_value=notifications,
            at_most=0.25,
        ),
        Figure.compare(
            "calendar.inbound_latency_p50_ms",
            percentile(latencies, 50),
            "ms",
            baseline_name="bare incremental events.list + bus round trip, p50",
            baseline_value=percentile(bare, 50),
        ),
        Figure.compare(
            "calendar.inbound_latency_p99_ms",
            percentile(latencies, 99),
            "ms",
            baseline_name="bare incremental events.list + bus round trip, p99",
            baseline_value=percentile(bare, 99),
        ),
    ]


async def bare_listing_round_trips(
    nc: NatsClient, http: aiohttp.ClientSession, sandbox_url: str, samples: int = 200
) -> list[float]:
    """What a push to remote.changed cannot beat: one change made, one incremental listing
    that returns it, one JetStream publish seen by a subscriber."""
    base = provider_urls(sandbox_url)["GOOGLE_CALENDAR_API_BASE"]
    made = await control(
        http,
        sandbox_url,
        "POST",
        "/_sandbox/google/accounts",
        {"login_hint": "bare-in@example.com"},
    )
    account = made["id"]
    minted = await control(
        http,
        sandbox_url,
        "POST",
        f"/_sandbox/google/accounts/{account}/tokens",
        {"scopes": [SCOPES[0]]},
    )
    auth = {"Authorization": f"Bearer {minted['access_token']}"}
    async with http.get(f"{base}/calendars/primary/events", headers=auth) as resp:
        sync_token = (await resp.json())["nextSyncToken"]
    seen: asyncio.Queue[float] = asyncio.Queue()

    async def arrived(_msg: Msg) -> None:
        seen.put_nowait(time.monotonic())

    subject = "calendar.remote.changed"
    sub = await nc.subscribe(subject, cb=arrived)
    path = f"/_sandbox/google_calendar/users/{account}/calendars/primary/events"
    start = datetime.now(UTC) + timedelta(days=3)
    out: list[float] = []
    try:
        for n in range(samples):
            at = start + timedelta(hours=n)
            body = {
                "summary": f"bare {n}",
                "start": {"dateTime": at.isoformat()},
                "end": {"dateTime": (at + timedelta(minutes=30)).isoformat()},
            }
            await control(http, sandbox_url, "POST", path, {"events": [body]})
            began = time.monotonic()
            async with http.get(
                f"{base}/calendars/primary/events", params={"syncToken": sync_token}, headers=auth
            ) as resp:
                page = await resp.json()
            sync_token = page["nextSyncToken"]
            await publish(
                nc, subject, json.dumps(page["items"][0]).encode(), f"bare-{uuid.uuid4().hex}"
            )
            with contextlib.suppress(TimeoutError):
                out.append((await asyncio.wait_for(seen.get(), 5) - began) * 1000)
    finally:
        await sub.unsubscribe()
    return out


BENCHES: tuple[Bench, ...] = (
    Bench("calendar.outbound", outbound, timeout=420),
    Bench("calendar.inbound", inbound, timeout=420),
)
