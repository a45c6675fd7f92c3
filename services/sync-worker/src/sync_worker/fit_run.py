"""The unified Google Fit run (issue 7; the users' consolidation proposal, seeds/000): one
scheduled pass instead of a token-refresh cron and a data cron.

Every replica's periodic loop calls :meth:`FitRun.run_once`. It claims due Fit
connections a batch at a time (``FOR UPDATE SKIP LOCKED``, :mod:`sync_worker.fit_store`:
two replicas never get the same user, and a claimed user is due again only at the next
run slot), and for each user, ``concurrency`` at a time and ``pause`` between batches:

    token.get (just in time: token-service refreshes only a token about to expire, and
    says so) → the last ``days_back`` local days in ONE dataset:aggregate call → store
    (a row rewritten, and reported in records.changed, only when a value moved) → the
    sessions that ended in the same span in ONE sessions.list call → store.

Failures stay as small as they are:

* the window call fails → the days are fetched one by one, so one bad day costs only
  itself; a failed day is recorded and read again next run (the window always covers
  it). Two failures in a row mean the provider is down, not that a day is odd: the
  remaining days wait for the next run instead of costing a call each.
* token.get answers reauth_required / revoked / not_connected → the user is failed with
  that reason in the run row and nothing is called. token-service has already marked the
  connection and published ``connection.reauth_required``; the lifecycle consumer turns
  it into the connection's status here, so later runs no longer claim the user.
* a user is successful when at least one day was synced.

Every provider call first takes the shared Google Fit rate budget at interactive
priority: for Fit this run is the freshness tier (there is no push), so backfills
(background priority, held to their share of each window) can never starve it.

One :class:`~syncplane_common.contracts.FitRunSummary` row per run that claimed anyone,
and the same figures as ``syncplane_fit_run_*`` metrics.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg
from prometheus_client import Counter, Histogram
from syncplane_common import subjects
from syncplane_common.clock import Clock
from syncplane_common.contracts import FitRunSummary, FitUserError, RecordsChanged
from syncplane_common.errors import (
    NotConnectedError,
    ReauthRequiredError,
    RevokedError,
    SyncplaneError,
)
from syncplane_common.tokens import TokenLease, TokenSource

from sync_worker import fit_store
from sync_worker.budget import Priority, RateBudget
from sync_worker.engine import FetchedPage, Publisher, Source, Stored
from sync_worker.fit_source import GoogleFitDaily, GoogleFitSessions
from sync_worker.providers.google_fit import ProviderDiscontinuedError

log = logging.getLogger(__name__)

PROVIDER = "google_fit"

RUNS = Counter("syncplane_fit_runs_total", "Google Fit runs that claimed at least one user.")
USERS = Counter(
    "syncplane_fit_run_users_total",
    "Users processed by Google Fit runs, by outcome (successful, failed).",
    ["outcome"],
)
TOKENS_REFRESHED = Counter(
    "syncplane_fit_run_tokens_refreshed_total",
    "Users whose token token-service refreshed for a Google Fit run.",
)
DAYS = Counter(
    "syncplane_fit_run_days_total",
    "Local days read by Google Fit runs, by outcome (synced, failed).",
    ["outcome"],
)
SESSIONS = Counter(
    "syncplane_fit_run_sessions_synced_total", "Sessions listed and stored by Google Fit runs."
)
CALLS = Counter("syncplane_fit_run_provider_calls_total", "Google Fit calls made by runs.")
DURATION = Histogram(
    "syncplane_fit_run_duration_seconds",
    "Duration of one Google Fit run (claim to last user).",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)

# token.get's definitive answers, and a provider that is gone: nothing more to try now.
_STOP = (ReauthRequiredError, RevokedError, NotConnectedError, ProviderDiscontinuedError)
# Consecutive failed days after which the rest of the window waits for the next run.
_DOWN_AFTER = 2


@dataclass
class UserOutcome:
    user_id: str
    refreshed: bool = False
    days_synced: int = 0
    failed_days: list[str] = field(default_factory=list)
    invalid_days: int = 0
    sessions_synced: int = 0
    calls: int = 0
    error: SyncplaneError | Exception | None = None

    @property
    def successful(self) -> bool:
        return self.days_synced > 0

    def report(self) -> FitUserError | None:
        """The run row's entry for this user; None when everything went through."""
        if self.error is None and not self.failed_days and not self.invalid_days:
            return None
        err = self.error
        code = err.code if isinstance(err, SyncplaneError) else "internal"
        message = str(err) if err is not None else "days did not match the wire model"
        return FitUserError(
            user_id=self.user_id,
            code=code,
            message=message[:500],
            failed_days=tuple(self.failed_days),
            user_failed=not self.successful,
        )


@dataclass
class FitRun:
    pool: asyncpg.Pool[asyncpg.Record]
    tokens: TokenSource
    daily: GoogleFitDaily
    sessions: GoogleFitSessions
    publish: Publisher
    clock: Clock
    interval: timedelta
    budget: RateBudget | None = None
    days_back: int = 7
    batch_size: int = 100
    concurrency: int = 10
    pause_seconds: float = 1.0
    worker: str = "sync-worker"

    async def run_once(self) -> FitRunSummary | None:
        """Claim and sync every due user; the run's row, or None when nobody was due."""
        started, t0 = self.clock.now(), self.clock.monotonic()
        run_id = uuid.uuid4()
        slot = fit_store.next_slot(started, self.interval)
        outcomes: list[UserOutcome] = []
        while True:
            async with self.pool.acquire() as conn, conn.transaction():
                users = await fit_store.claim(conn, self.clock.now(), self.batch_size, slot)
            if not users:
                break
            if outcomes and self.pause_seconds > 0:
                # Pacing between batches, as the proposal's runs had: the budget guards
                # the provider's limits, this spreads the load of one run.
                await self.clock.sleep(self.pause_seconds)
            outcomes += await self._batch(run_id, users)
            if len(users) < self.batch_size:
                break
        if not outcomes:
            return None
        summary = _summary(
            run_id, self.worker, started, self.clock.now(), self.clock.monotonic() - t0, outcomes
        )
        await fit_store.record_run(self.pool, summary)
        _count(summary, outcomes)
        log.info(
            "google fit run done",
            extra={
                "run_id": summary.run_id,
                "users": summary.users_processed,
                "failed": summary.failed,
                "duration_ms": summary.duration_ms,
            },
        )
        return summary

    async def _batch(self, run_id: uuid.UUID, users: Sequence[str]) -> list[UserOutcome]:
        slots = asyncio.Semaphore(self.concurrency)

        async def one(user_id: str) -> UserOutcome:
            async with slots:
                return await self.sync_user(run_id, user_id)

        return list(await asyncio.gather(*(one(u) for u in users)))

    async def sync_user(self, run_id: uuid.UUID, user_id: str) -> UserOutcome:
        """One user's token, days and sessions; never raises (the outcome says)."""
        out = UserOutcome(user_id)
        lease = TokenLease(self.tokens, user_id, PROVIDER)
        try:
            await lease.current()
            now = self.clock.now()
            await self._days(out, lease, run_id, now)
            await self._sessions(out, lease, run_id, now)
        except _STOP as err:
            out.error = err
            log.info(
                "google fit user skipped",
                extra={"user_id": user_id, "reason": err.code, "error": err.message},
            )
        except Exception as err:
            out.error = err
            log.warning("google fit user failed", extra={"user_id": user_id, "error": str(err)})
        out.refreshed = lease.refreshed
        return out

    async def _call(self, out: UserOutcome, fetch: Callable[[], Awaitable[FetchedPage]]) -> Any:
        await self._wait_for_budget()
        out.calls += 1
        return await fetch()

    async def _wait_for_budget(self) -> None:
        if self.budget is None:
            return
        while True:
            wait = await self.budget.acquire(PROVIDER, Priority.INTERACTIVE)
            if wait <= 0:
                return
            await self.clock.sleep(wait)

    async def _days(
        self, out: UserOutcome, lease: TokenLease, run_id: uuid.UUID, now: datetime
    ) -> None:
        window = await self.daily.window(out.user_id, now, self.days_back)
        pages: list[FetchedPage] = []
        try:
            pages.append(await self._call(out, functools.partial(self.daily.fetch, lease, window)))
        except _STOP:
            raise
        except Exception as err:
            log.info("window failed; day by day", extra={"user_id": out.user_id, "e": str(err)})
            pages = await self._day_by_day(out, lease, window)
        days = [d for page in pages for d in page.items]
        out.invalid_days = sum(page.invalid for page in pages)
        if days:
            await self._store(self.daily, out.user_id, days, run_id, now, connection=True)
            out.days_synced = len({d.day for d in days})
        elif out.error is not None:
            async with self.pool.acquire() as conn:
                await fit_store.log_failure(conn, out.user_id, "daily", now, str(out.error))

    async def _day_by_day(
        self, out: UserOutcome, lease: TokenLease, window: dict[str, Any]
    ) -> list[FetchedPage]:
        pages: list[FetchedPage] = []
        first = date.fromisoformat(window["next_day"])
        last = date.fromisoformat(window["last_day"])
        in_a_row = 0
        for offset in range((last - first).days + 1):
            day = (first + timedelta(days=offset)).isoformat()
            if in_a_row >= _DOWN_AFTER:
                out.failed_days.append(day)
                continue
            one = {**window, "next_day": day, "last_day": day}
            try:
                pages.append(await self._call(out, functools.partial(self.daily.fetch, lease, one)))
                in_a_row = 0
            except _STOP:
                raise
            except Exception as err:
                out.failed_days.append(day)
                out.error = err
                in_a_row += 1
        return pages

    async def _sessions(
        self, out: UserOutcome, lease: TokenLease, run_id: uuid.UUID, now: datetime
    ) -> None:
        window = self.sessions.window(now, self.days_back)
        try:
            page = await self._call(out, functools.partial(self.sessions.fetch, lease, window))
        except _STOP:
            raise
        except Exception as err:
            # Sessions failing does not undo the days: recorded, read again next run.
            out.error = out.error or err
            async with self.pool.acquire() as conn:
                await fit_store.log_failure(conn, out.user_id, "sessions", now, str(err))
            return
        await self._store(self.sessions, out.user_id, list(page.items), run_id, now)
        out.sessions_synced = len(page.items)

    async def _store(
        self,
        source: Source,
        user_id: str,
        items: list[Any],
        run_id: uuid.UUID,
        now: datetime,
        *,
        connection: bool = False,
    ) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            stored = await source.store(conn, user_id, items, now) if items else Stored()
            await fit_store.log_success(
                conn, user_id, source.data_type, now, stored.written, connection=connection
            )
            # Inside the transaction: a failed publish leaves the rows as they were, so
            # the next run finds them changed again and reports them then.
            await self._changed(source, user_id, stored, run_id, now)

    async def _changed(
        self, source: Source, user_id: str, stored: Stored, run_id: uuid.UUID, now: datetime
    ) -> None:
        if not (stored.added or stored.updated or stored.deleted):
            return
        await self.publish(
            subjects.records_changed(PROVIDER, source.data_type),
            RecordsChanged(
                user_id=user_id,
                provider=PROVIDER,
                data_type=source.data_type,
                added=stored.added,
                updated=stored.updated,
                deleted=stored.deleted,
                at=now,
            ),
            f"changed:fit-run:{run_id}:{user_id}:{source.data_type}",
        )


def _summary(
    run_id: uuid.UUID,
    worker: str,
    started: datetime,
    finished: datetime,
    seconds: float,
    outcomes: Sequence[UserOutcome],
) -> FitRunSummary:
    reports = [r for r in (o.report() for o in outcomes) if r is not None]
    successful = sum(o.successful for o in outcomes)
    return FitRunSummary(
        run_id=str(run_id),
        worker=worker,
        started_at=started,
        finished_at=finished,
        duration_ms=max(round(seconds * 1000), 0),
        users_processed=len(outcomes),
        successful=successful,
        failed=len(outcomes) - successful,
        tokens_refreshed=sum(o.refreshed for o in outcomes),
        days_synced=sum(o.days_synced for o in outcomes),
        days_failed=sum(len(o.failed_days) + o.invalid_days for o in outcomes),
        sessions_synced=sum(o.sessions_synced for o in outcomes),
        provider_calls=sum(o.calls for o in outcomes),
        errors=tuple(reports),
    )


def _count(summary: FitRunSummary, outcomes: Sequence[UserOutcome]) -> None:
    RUNS.inc()
    USERS.labels("successful").inc(summary.successful)
    USERS.labels("failed").inc(summary.failed)
    TOKENS_REFRESHED.inc(summary.tokens_refreshed)
    DAYS.labels("synced").inc(summary.days_synced)
    DAYS.labels("failed").inc(summary.days_failed)
    SESSIONS.inc(summary.sessions_synced)
    CALLS.inc(summary.provider_calls)
    DURATION.observe(summary.duration_ms / 1000)
