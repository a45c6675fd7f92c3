"""``syncplane demo``: the whole story on embedded servers and the provider sandbox.

Users connect Strava, Google Fit, WHOOP and Google Calendar through the real OAuth
redirect flow (gateway → sandbox consent → gateway callback); their backfills run with
progress drawn from the ``sync.*`` events; a sync-worker is killed in the middle of the
biggest backfill and the session still completes; new data arrives by webhook; the
scheduler runs; smart reads are answered from the cache and from the provider; calendar
edits go both ways, one of them a conflict; one athlete deauthorizes on Strava.

The demo is also an audit: at the end it compares what each provider holds with what
syncplane stored, and exits non-zero on any loss, any failed sync, any dead letter or any
step that did not happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import asyncpg
import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from prometheus_client.parser import text_string_to_metric_families

from syncplane_devstack.devjwt import mint_token
from syncplane_devstack.stack import Stack

PROVIDERS = ("strava", "google_fit", "whoop", "google_calendar")
RETURN_TO = "http://localhost/demo/connected"
# The athlete whose backfill is long enough to kill a worker in the middle of it.
BIG_HISTORY = 1000
SMALL_HISTORY = 30
WHOOP_DAYS = 20
FIT_DAYS = 30
FIT_SESSIONS = 6

# The stack's settings for the demo (the environment still wins): the sandbox's Strava
# app gets a generous limit so twenty backfills fit in a minute, short pages make the big
# backfill long enough to interrupt, and the scheduler comes round within the demo.
DEMO_ENV = {
    "SANDBOX_STRAVA_RATE_LIMIT": "1000,30000",
    "SANDBOX_STRAVA_READ_RATE_LIMIT": "1000,30000",
    "STRAVA_RATE_LIMIT": "1000,30000",
    "STRAVA_READ_RATE_LIMIT": "1000,30000",
    "STRAVA_PER_PAGE": "50",
    "SCHEDULE_INTERVALS": "strava=60,whoop=60,google_fit=60",
    "SCHEDULER_TICK_SECONDS": "2",
    # Nominatim's policy is one lookup a second for the whole app: places are left to
    # the enrichment pass instead of holding twenty backfills behind it.
    "GEOCODING_INLINE_PER_PAGE": "0",
}

# Tables the audit counts, per provider: what syncplane stored for a user.
STORED_SQL = {
    "strava": "SELECT count(*) FROM sync.strava_activities WHERE user_id = $1",
    "whoop": (
        "SELECT (SELECT count(*) FROM sync.whoop_cycles WHERE user_id = $1)"
        " + (SELECT count(*) FROM sync.whoop_recoveries WHERE user_id = $1)"
        " + (SELECT count(*) FROM sync.whoop_sleeps WHERE user_id = $1)"
        " + (SELECT count(*) FROM sync.whoop_workouts WHERE user_id = $1)"
    ),
    "google_fit": (
        "SELECT (SELECT count(*) FROM sync.google_fit_daily WHERE user_id = $1)"
        " + (SELECT count(*) FROM sync.google_fit_sessions WHERE user_id = $1)"
    ),
    "google_calendar": ("SELECT count(*) FROM calendar.events WHERE user_id = $1 AND NOT deleted"),
}


class DemoFailed(Exception):
    """A step of the story did not happen as it must."""


@dataclass
class User:
    id: str
    number: int
    strava_hint: str
    whoop_hint: str
    google_hint: str
    accounts: dict[str, str] = field(default_factory=dict)  # provider → account id
    expected: Counter[str] = field(default_factory=Counter)  # provider → records held


class Console:
    """What the demo prints: headings, lines, and progress bars redrawn in place on a
    terminal (a log gets one line per bar when it fills, instead)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self._drawn = 0
        self._printed: set[str] = set()
        self.started = time.monotonic()

    def step(self, title: str) -> None:
        self._drawn = 0
        clock = time.monotonic() - self.started
        print(f"\n== [{clock:5.1f}s] {title}", file=self.out, flush=True)

    def line(self, text: str) -> None:
        self._drawn = 0
        print(f"   {text}", file=self.out, flush=True)

    def bars(self, rows: list[tuple[str, int, int, str]]) -> None:
        if self.tty:
            if self._drawn:
                self.out.write(f"\x1b[{self._drawn}F")
            for label, done, total, extra in rows:
                self.out.write(f"\x1b[2K   {_bar(label, done, total)} {extra}\n")
            self._drawn = len(rows)
            self.out.flush()
            return
        for label, done, total, extra in rows:
            if total and done >= total and label not in self._printed:
                self._printed.add(label)
                self.line(f"{_bar(label, done, total)} {extra}")


def _bar(label: str, done: int, total: int, width: int = 28) -> str:
    filled = width if total == 0 else min(width, round(width * done / total))
    return f"{label:<16} [{'#' * filled}{'.' * (width - filled)}] {done:>3}/{total:<3}"


class Bus:
    """Every event the platform publishes during the demo, kept for the story's checks."""

    def __init__(self) -> None:
        self.nc: NatsClient | None = None
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self._changed = asyncio.Condition()

    async def start(self, url: str) -> None:
        self.nc = await nats.connect(url, max_reconnect_attempts=-1)
        for subject in ("sync.>", "connection.>", "calendar.>", "dlq.>", "records.changed.>"):
            await self.nc.subscribe(subject, cb=self._on)

    async def stop(self) -> None:
        if self.nc is not None:
            await self.nc.drain()

    async def _on(self, msg: Msg) -> None:
        try:
            body = json.loads(msg.data)
        except ValueError:
            body = {}
        self.seen.append((msg.subject, body if isinstance(body, dict) else {}))
        async with self._changed:
            self._changed.notify_all()

    def of(self, prefix: str, **match: Any) -> list[dict[str, Any]]:
        return [
            body
            for subject, body in self.seen
            if subject.startswith(prefix) and all(body.get(k) == v for k, v in match.items())
        ]

    async def wait(self, check: Callable[[], bool], within: float, what: str) -> None:
        try:
            async with asyncio.timeout(within), self._changed:
                await self._changed.wait_for(check)
        except TimeoutError:
            raise DemoFailed(f"{what}: not seen within {within:.0f}s") from None


@dataclass
class Demo:
    stack: Stack
    http: aiohttp.ClientSession
    db: asyncpg.Connection[asyncpg.Record]
    bus: Bus
    console: Console
    users: list[User]
    big: User
    problems: list[str] = field(default_factory=list)
    conflicts: int = 0
    revoked: set[tuple[str, str]] = field(default_factory=set)

    @property
    def gateway(self) -> str:
        return next(c.url for c in self.stack.children if c.name == "webhook-gateway")

    @property
    def sandbox(self) -> str:
        assert self.stack.sandbox is not None
        return self.stack.sandbox.url

    def token(self, user: str, *, admin: bool = False) -> str:
        return mint_token(self.stack.secrets["API_JWT_SECRET"], user, admin=admin, ttl=3600)

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(method, f"{self.sandbox}{path}", json=body) as resp:
            data = await resp.json()
            if resp.status >= 400:
                raise DemoFailed(f"sandbox {method} {path} → {resp.status}: {data}")
            return data

    async def api(self, method: str, path: str, user: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token(user)}"}
        async with self.http.request(
            method, f"{self.gateway}{path}", json=body, headers=headers
        ) as resp:
            return resp.status, await resp.json(content_type=None)

    # -- the story ---------------------------------------------------------------------

    async def seed(self) -> None:
        self.console.step(f"Seeding the provider sandbox for {len(self.users)} users")
        seeded = await self.control(
            "POST",
            "/_sandbox/strava/seed",
            {"athletes": len(self.users), "activities_per_athlete": SMALL_HISTORY},
        )
        for user, athlete in zip(self.users, seeded["athletes"], strict=True):
            user.strava_hint = athlete["login_hint"]
            user.accounts["strava"] = str(athlete["id"])
            user.expected["strava"] = SMALL_HISTORY
        extra = BIG_HISTORY - SMALL_HISTORY
        big_id = self.big.accounts["strava"]
        await self.control(
            "POST", f"/_sandbox/strava/athletes/{big_id}/activities", {"generate": extra}
        )
        self.big.expected["strava"] = BIG_HISTORY
        whoop = await self.control(
            "POST",
            "/_sandbox/whoop/seed",
            {"users": len(self.users), "days": WHOOP_DAYS, "login_hint_prefix": "demo-whoop-"},
        )
        for user, entry in zip(self.users, whoop["users"], strict=True):
            user.whoop_hint = entry["login_hint"]
            user.accounts["whoop"] = str(entry["user_id"])
            user.expected["whoop"] = sum(
                entry[k] for k in ("cycle", "recovery", "sleep", "workout") if k in entry
            )
        for user in self.users:
            account = await self.control(
                "POST", "/_sandbox/google/accounts", {"login_hint": user.google_hint}
            )
            gid = str(account["id"])
            user.accounts["google_fit"] = user.accounts["google_calendar"] = gid
            await self.control(
                "POST", f"/_sandbox/google_fit/users/{gid}/days", {"generate": FIT_DAYS}
            )
            await self.control(
                "POST", f"/_sandbox/google_fit/users/{gid}/sessions", {"generate": FIT_SESSIONS}
            )
            user.expected["google_fit"] = FIT_DAYS + FIT_SESSIONS
        self.console.line(
            f"Strava: {len(self.users)} athletes ({SMALL_HISTORY} activities each, "
            f"{BIG_HISTORY} for {self.big.id}); WHOOP: {WHOOP_DAYS} days each; "
            f"Google Fit: {FIT_DAYS} days and {FIT_SESSIONS} sessions each"
        )

    async def connect_all(self) -> None:
        self.console.step("Connecting every user through the real OAuth redirect flow")
        started = time.monotonic()
        gate = asyncio.Semaphore(8)

        async def one(user: User, provider: str) -> None:
            async with gate:
                await self.connect(user, provider)

        # The big athlete first, so its backfill has the most time to be interrupted.
        await one(self.big, "strava")
        await asyncio.gather(
            *(one(u, p) for u in self.users for p in PROVIDERS if (u, p) != (self.big, "strava"))
        )
        self.console.line(
            f"{len(self.users) * len(PROVIDERS)} connections in "
            f"{time.monotonic() - started:.1f}s (consent → callback → token-service)"
        )

    async def connect(self, user: User, provider: str) -> None:
        hint = {
            "strava": user.strava_hint,
            "whoop": user.whoop_hint,
            "google_fit": user.google_hint,
            "google_calendar": user.google_hint,
        }[provider]
        query = urlencode(
            {"access_token": self.token(user.id), "return_to": RETURN_TO, "login_hint": hint}
        )
        url = f"{self.gateway}/connect/{provider}/start?{query}"
        for _ in range(6):
            async with self.http.get(url, allow_redirects=False) as resp:
                location = resp.headers.get("Location")
                if resp.status != 302 or location is None:
                    body = await resp.text()
                    raise DemoFailed(f"{user.id} {provider}: {resp.status} at {url}: {body}")
            if location.startswith(RETURN_TO):
                outcome = parse_qs(urlsplit(location).query)
                if outcome.get("connect") != ["success"]:
                    raise DemoFailed(f"{user.id} {provider}: connect ended {outcome}")
                return
            url = location
        raise DemoFailed(f"{user.id} {provider}: too many redirects")

    async def backfills(self) -> None:
        self.console.step("Backfills (progress from sync.progress / sync.completed)")
        synced = ("strava", "whoop", "google_fit")
        killed = asyncio.get_running_loop().create_task(self.kill_mid_backfill())
        deadline = time.monotonic() + 150
        while True:
            rows = []
            for provider in synced:
                completed = self.bus.of(f"sync.completed.{provider}", kind="backfill")
                done = {b["user_id"] for b in completed}
                stored = sum(b.get("stored", 0) for b in completed)
                rows.append((provider, len(done), len(self.users), f"{stored:>5} records"))
                gave_up = {b["user_id"] for b in self.bus.of(f"sync.failed.{provider}")}
                if gave_up - done:
                    killed.cancel()
                    first = next(b for b in self.bus.of(f"sync.failed.{provider}"))
                    raise DemoFailed(
                        f"{len(gave_up - done)} {provider} backfills failed, e.g. "
                        f"{first['user_id']}: {first.get('error', {}).get('message')}"
                    )
            self.console.bars(rows)
            if all(done >= total for _, done, total, _ in rows) and killed.done():
                break
            if time.monotonic() > deadline:
                late = [label for label, done, total, _ in rows if done < total]
                killed.cancel()
                raise DemoFailed(f"backfills not finished in time: {', '.join(late)}")
            await asyncio.sleep(0.25)
        await killed

    async def kill_mid_backfill(self) -> None:
        """SIGKILL the sync-worker once the big backfill is under way; a new one takes
        the redelivered command and continues from the session's checkpoint."""
        user = self.big.id

        def underway() -> bool:
            return any(
                p.get("fetched", 0) >= 100
                for p in self.bus.of("sync.progress.strava", user_id=user)
            )

        await self.bus.wait(underway, 60, f"the backfill of {user}")
        progress = self.bus.of("sync.progress.strava", user_id=user)
        at = max(p.get("stored", 0) for p in progress)
        worker = next(c for c in self.stack.children if c.name == "sync-worker")
        worker.proc.send_signal(signal.SIGKILL)
        worker.proc.wait(10)
        self.console.line(
            f"killed sync-worker (pid {worker.proc.pid}) with {at}/{BIG_HISTORY} of "
            f"{user}'s activities stored; starting a new one"
        )
        await self.stack.respawn("sync-worker")
        await self.bus.wait(
            lambda: bool(self.bus.of("sync.completed.strava", user_id=user, kind="backfill")),
            120,
            f"{user}'s backfill after the kill",
        )
        session = self.bus.of("sync.completed.strava", user_id=user, kind="backfill")[0]
        self.console.line(
            f"{user}'s backfill completed in the same session {session['session_id'][:8]}… "
            f"after the restart"
        )

    async def webhooks(self) -> None:
        self.console.step("New data arrives by webhook")
        movers = self.users[1:6]
        before = len(self.bus.of("records.changed.strava"))
        for user in movers:
            await self.control(
                "POST",
                f"/_sandbox/strava/athletes/{user.accounts['strava']}/activities",
                {"generate": 2},
            )
            user.expected["strava"] += 2

        def strava_arrived() -> bool:
            return len(self.bus.of("records.changed.strava")) >= before + 2 * len(movers)

        await self.bus.wait(strava_arrived, 30, "Strava webhook activities")
        self.console.line(f"Strava: {2 * len(movers)} new activities pushed and stored")
        whoop_user = self.users[1]
        wid = whoop_user.accounts["whoop"]
        made = await self.control("POST", f"/_sandbox/whoop/users/{wid}/workout", {"generate": 1})
        whoop_user.expected["whoop"] += len(made.get("records", made.get("workout", [1])))

        def whoop_arrived() -> bool:
            return any(
                b.get("user_id") == whoop_user.id
                for b in self.bus.of("records.changed.whoop.workout")
            )

        await self.bus.wait(whoop_arrived, 30, "the WHOOP workout webhook")
        self.console.line("WHOOP: a new workout signed, verified, fetched and stored")

    async def scheduler(self) -> None:
        self.console.step("The scheduler comes round (every 60 s in the demo)")

        def ran() -> bool:
            return any(self.bus.of(f"sync.completed.{p}", kind="scheduled") for p in ("strava",))

        await self.bus.wait(ran, 90, "a scheduled sync")
        kinds = Counter(
            (subject.split(".")[2], body.get("kind"))
            for subject, body in self.bus.seen
            if subject.startswith("sync.completed.")
        )
        scheduled = {p: n for (p, k), n in kinds.items() if k == "scheduled"}
        self.console.line(f"scheduled syncs completed so far: {scheduled}")

    async def smart_reads(self) -> None:
        self.console.step("Smart reads: cache when fresh, the provider when asked")
        user = self.users[2]
        reads = [
            ("strava", "activities", ""),
            ("whoop", "recovery", ""),
            ("google_fit", "daily", ""),
            ("strava", "activities", "?force_refresh=true"),
        ]
        for provider, kind, extra in reads:
            await self._read(user, provider, kind, extra)

    async def expired_tokens(self) -> None:
        self.console.step("Every access token expires: refused, refreshed once, retried")
        # Seven hours on at the providers, every access token they issued has expired: the
        # next call is refused (401), token-service refreshes once, the call succeeds.
        await self.control("POST", "/_sandbox/clock/advance", {"seconds": 7 * 3600})
        self.console.line("provider clocks moved 7 h on")
        user = self.users[2]
        for provider, kind in (
            ("strava", "activities"),
            ("whoop", "sleep"),
            ("google_fit", "daily"),
        ):
            await self._read(user, provider, kind, "?force_refresh=true")

    async def _read(self, user: User, provider: str, kind: str, extra: str) -> None:
        path = f"/api/v1/users/{user.id}/data/{provider}/{kind}{extra}"
        status, body = await self.api("GET", path, user.id)
        if status != 200:
            raise DemoFailed(f"smart read {provider}/{kind}{extra} → {status}: {body}")
        meta = body["metadata"]
        self.console.line(
            f"{provider + '/' + kind + extra:<42} source={meta['source']:<12} "
            f"records={meta['record_count']:<4} threshold={meta['threshold_seconds']:.0f}s"
        )
        if meta["source"] == "stale_cache":
            self.console.line(f"  warning: {meta.get('warning')}; error: {meta.get('error')}")

    async def calendar(self) -> None:
        self.console.step("Calendar edits both ways, and a conflict")
        user = self.users[3]
        base = f"/api/v1/users/{user.id}/calendar/events"
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
        status, created = await self.api(
            "POST",
            base,
            user.id,
            {
                "title": "Pay the electricity bill",
                "start": start.isoformat(),
                "end": (start + timedelta(hours=1)).isoformat(),
                "metadata": {"amount": "84.20", "currency": "EUR"},
            },
        )
        if status not in (200, 201, 202):
            raise DemoFailed(f"creating a local event → {status}: {created}")
        event_id = str(created["id"])
        self.console.line(f"local event {event_id} created through the app API")
        gid = user.accounts["google_calendar"]
        google = await self._google_event(gid, event_id)
        self.console.line(f"…and written to Google Calendar as {google['id']}")
        # Remote edit → push → incremental list → calendar.remote.changed.
        await self.control(
            "PUT",
            f"/_sandbox/google_calendar/users/{gid}/calendars/primary/events/{google['id']}",
            {"summary": "Pay the electricity bill (due Friday)"},
        )
        await self.bus.wait(
            lambda: any(
                b.get("user_id") == user.id for b in self.bus.of("calendar.remote.changed")
            ),
            30,
            "the remote edit coming back as calendar.remote.changed",
        )
        self.console.line("edited in Google → pushed → calendar.remote.changed for the app")
        # A conflict: the same event edited on both sides before either side saw the other.
        await self.control(
            "POST",
            "/_sandbox/faults",
            {"provider": "google_calendar", "endpoint": "webhook", "drop": True, "count": 1},
        )
        await self.control(
            "PUT",
            f"/_sandbox/google_calendar/users/{gid}/calendars/primary/events/{google['id']}",
            {"location": "Online banking"},
        )
        status, body = await self.api(
            "PATCH", f"{base}/{event_id}", user.id, {"title": "Pay the electricity bill now"}
        )
        if status >= 400:
            raise DemoFailed(f"updating the local event → {status}: {body}")
        await self.bus.wait(
            lambda: any(
                b.get("user_id") == user.id for b in self.bus.of("calendar.conflict.detected")
            ),
            30,
            "calendar.conflict.detected",
        )
        conflict = self.bus.of("calendar.conflict.detected", user_id=user.id)[0]
        self.conflicts = len(self.bus.of("calendar.conflict.detected"))
        self.console.line(
            f"conflict detected and resolved by policy {conflict.get('policy', '?')}: "
            f"{conflict.get('resolution', conflict.get('winner', ''))}"
        )
        await self.control("DELETE", "/_sandbox/faults")

    async def _google_event(self, gid: str, event_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        path = f"/_sandbox/google_calendar/users/{gid}/calendars/primary/events"
        while time.monotonic() < deadline:
            listed = await self.control("GET", path)
            for item in listed.get("items", []):
                private = item.get("extendedProperties", {}).get("private", {})
                if event_id in private.values() or item.get("id") == event_id:
                    return dict(item)
            await asyncio.sleep(0.3)
        raise DemoFailed(f"local event {event_id} never reached Google Calendar")

    async def deauthorize(self) -> None:
        self.console.step("An athlete deauthorizes syncplane on Strava")
        user = self.users[-1]
        await self.control(
            "POST", f"/_sandbox/strava/athletes/{user.accounts['strava']}/deauthorize"
        )
        await self.bus.wait(
            lambda: bool(self.bus.of("connection.revoked.strava", user_id=user.id)),
            30,
            f"{user.id}'s Strava connection revoked",
        )
        self.revoked.add((user.id, "strava"))
        _, body = await self.api("GET", f"/api/v1/users/{user.id}/connections", user.id)
        states = {c["provider"]: c["status"] for c in body.get("connections", [])}
        self.console.line(f"{user.id}: Strava {states.get('strava')}; the rest untouched")

    # -- the audit -----------------------------------------------------------------------

    async def refreshes(self) -> dict[str, float]:
        """Refreshes token-service performed, per connection provider (the sandbox counts
        Google's per Google identity, Fit and Calendar together)."""
        url = next(c.url for c in self.stack.children if c.name == "token-service")
        async with self.http.get(f"{url}/metrics") as resp:
            text = await resp.text()
        counted: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if (
                    sample.name == "syncplane_token_refreshes_total"
                    and labels.get("outcome") == "refreshed"
                ):
                    counted[labels["provider"]] = sample.value
        return counted

    async def audit(self) -> list[list[str]]:
        stats = await self.control("GET", "/_sandbox/stats")
        calls: Counter[str] = Counter()
        limited: Counter[str] = Counter()
        for key, n in stats.get("calls", {}).items():
            calls[key.split(" ", 1)[0]] += n
        for key, n in stats.get("rate_limited", {}).items():
            limited[key.split(" ", 1)[0]] += n
        refreshes = await self.refreshes()
        rows = []
        for provider in PROVIDERS:
            stored = lost = 0
            short: list[str] = []
            for user in self.users:
                have = int(await self.db.fetchval(STORED_SQL[provider], user.id) or 0)
                stored += have
                want = user.expected.get(provider)
                if want is not None and have < want:
                    lost += want - have
                    short.append(f"{user.id} {have}/{want}")
            if short:
                more = f" and {len(short) - 3} more" if len(short) > 3 else ""
                self.problems.append(
                    f"{provider}: stored less than held: {', '.join(short[:3])}{more}"
                )
            sandbox_name = provider
            refreshed = int(refreshes.get(provider, 0))
            rows.append(
                [
                    provider,
                    str(len(self.users)),
                    str(stored),
                    str(calls[sandbox_name]),
                    str(limited[sandbox_name]),
                    str(refreshed),
                    str(self.conflicts if provider == "google_calendar" else 0),
                    str(lost),
                ]
            )
        failed = Counter(
            f"{subject.split('.')[2]}: {body.get('error', {}).get('message')}"
            for subject, body in self.bus.seen
            if subject.startswith("sync.failed.")
        )
        for what, n in failed.items():
            self.problems.append(f"{n} failed sync(s), {what}")
        letters = Counter(s for s, _ in self.bus.seen if s.startswith("dlq."))
        for subject, n in letters.items():
            self.problems.append(f"{n} dead letter(s) on {subject}")
        return rows


HEADER = ["provider", "users", "records", "calls", "429s", "refreshes", "conflicts", "losses"]


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join("   " + line for line in lines)


async def run(
    *, users: int = 20, out: TextIO = sys.stdout, environ: Mapping[str, str] | None = None
) -> int:
    env = {**DEMO_ENV, **(environ if environ is not None else os.environ)}
    for name in ("NATS_URL", "DATABASE_URL"):
        env.pop(name, None)  # the demo always runs on its own embedded servers
    console = Console(out)
    started = time.monotonic()
    stack = Stack.create(env, with_sandbox=True)
    bus = Bus()
    try:
        console.step("Starting NATS, Postgres, the provider sandbox and the four services")
        await stack.start(ready_timeout=60)
        console.line(
            f"ready in {time.monotonic() - started:.1f}s; gateway {stack.state()['gateway_url']}"
        )
        await bus.start(stack.nats_url)
        people = [
            User(
                id=f"demo-user-{i + 1:02d}",
                number=i,
                strava_hint="",
                whoop_hint="",
                google_hint=f"demo-user-{i + 1:02d}@example.com",
            )
            for i in range(users)
        ]
        db = await asyncpg.connect(stack.database_url)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            demo = Demo(stack, http, db, bus, console, people, big=people[0])
            steps: list[Callable[[], Awaitable[None]]] = [
                demo.seed,
                demo.connect_all,
                demo.backfills,
                demo.webhooks,
                demo.smart_reads,
                demo.calendar,
                demo.expired_tokens,
                demo.scheduler,
                demo.deauthorize,
            ]
            failed_step = None
            for step in steps:
                try:
                    await step()
                except DemoFailed as err:
                    failed_step = str(err)
                    console.line(f"FAILED: {err}")
                    break
            await asyncio.sleep(1)  # the last events land
            rows = await demo.audit()
            await db.close()
        console.step(f"Summary after {time.monotonic() - started:.0f}s")
        print(table(rows), file=out, flush=True)
        problems = ([failed_step] if failed_step else []) + demo.problems
        if problems:
            print("\n   Problems:", file=out)
            for problem in problems:
                print(f"   - {problem}", file=out)
            return 1
        print("\n   No losses, no failed syncs, no dead letters.", file=out, flush=True)
        return 0
    finally:
        with contextlib.suppress(Exception):
            await bus.stop()
        stack.stop()
