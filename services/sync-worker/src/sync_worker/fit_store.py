"""The SQL of the Google Fit run (migration 0009): the users' time zones, the claim of
due Fit connections, the run rows, and the sync log entries a run leaves.

The claim is the scheduler's (``FOR UPDATE SKIP LOCKED`` over the partial index
``connections_due``) for one provider, moving each claimed connection to the next run
slot in the same statement: two replicas running the run at once never get the same
user, and once committed the user is not due again before that slot.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from syncplane_common.contracts import FitRunSummary, FitUserError

if TYPE_CHECKING:
    from sync_worker.store_records import Db

__all__ = [
    "MemoryTimeZones",
    "PgTimeZones",
    "TimeZones",
    "claim",
    "latest_runs",
    "log_success",
    "next_slot",
    "record_run",
    "set_time_zone",
]

PROVIDER = "google_fit"


class TimeZones(Protocol):
    async def get(self, user_id: str) -> str:
        """The IANA zone ``user_id``'s days are counted in."""
        ...


@dataclass
class PgTimeZones:
    db: Db
    default: str

    async def get(self, user_id: str) -> str:
        zone: str | None = await self.db.fetchval(
            "SELECT time_zone FROM time_zones WHERE user_id = $1", user_id
        )
        return zone or self.default


@dataclass
class MemoryTimeZones:
    zones: dict[str, str]
    default: str = "UTC"

    async def get(self, user_id: str) -> str:
        return self.zones.get(user_id, self.default)


async def set_time_zone(db: Db, user_id: str, time_zone: str, now: datetime) -> None:
    await db.execute(
        """
        INSERT INTO time_zones (user_id, time_zone, updated_at) VALUES ($1, $2, $3)
        ON CONFLICT (user_id) DO UPDATE SET time_zone = EXCLUDED.time_zone,
            updated_at = EXCLUDED.updated_at
        """,
        user_id,
        time_zone,
        now,
    )


def next_slot(now: datetime, every: timedelta) -> datetime:
    """The next run slot at least half an interval away: slots are aligned to the epoch,
    so every user claimed in one run is due again together (one run, one row, per
    interval), and a user claimed just before a boundary is not synced twice in a row."""
    seconds = every.total_seconds()
    at = now.timestamp() + seconds / 2
    return datetime.fromtimestamp(math.ceil(at / seconds) * seconds, UTC)


CLAIM = """
WITH due AS (
    SELECT user_id FROM connections
    WHERE status = 'active' AND next_sync_at <= $1 AND provider = $2
    ORDER BY next_sync_at, user_id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE connections c SET next_sync_at = $4, last_scheduled_at = $1, updated_at = $1
FROM due WHERE c.user_id = due.user_id AND c.provider = $2
RETURNING c.user_id
"""


async def claim(db: Db, now: datetime, limit: int, slot: datetime) -> list[str]:
    """Up to ``limit`` due active Fit connections, moved to ``slot``; their user ids."""
    records = await db.fetch(CLAIM, now, PROVIDER, limit, slot)
    return sorted(r["user_id"] for r in records)


async def log_success(
    db: Db, user_id: str, data_type: str, now: datetime, records: int, *, connection: bool
) -> None:
    """The sync log entry of one data type a run synced; ``connection``: the user's run
    is done, so the connection counts as synced."""
    await db.execute(
        """
        INSERT INTO sync_log (user_id, provider, data_type, last_attempt_at, last_success_at,
            status, records_synced)
        VALUES ($1, $2, $3, $4, $4, 'success', $5)
        ON CONFLICT (user_id, provider, data_type) DO UPDATE SET
            last_attempt_at = EXCLUDED.last_attempt_at,
            last_success_at = EXCLUDED.last_success_at, status = 'success',
            records_synced = EXCLUDED.records_synced, error = NULL, session_id = NULL
        """,
        user_id,
        PROVIDER,
        data_type,
        now,
        records,
    )
    if connection:
        await db.execute(
            "UPDATE connections SET last_synced_at = $3 WHERE user_id = $1 AND provider = $2 "
            "AND (last_synced_at IS NULL OR last_synced_at < $3)",
            user_id,
            PROVIDER,
            now,
        )


async def log_failure(db: Db, user_id: str, data_type: str, now: datetime, error: str) -> None:
    await db.execute(
        """
        INSERT INTO sync_log (user_id, provider, data_type, last_attempt_at, status, error)
        VALUES ($1, $2, $3, $4, 'failed', $5)
        ON CONFLICT (user_id, provider, data_type) DO UPDATE SET
            last_attempt_at = EXCLUDED.last_attempt_at, status = 'failed',
            error = EXCLUDED.error, session_id = NULL
        """,
        user_id,
        PROVIDER,
        data_type,
        now,
        error,
    )


async def record_run(db: Db, run: FitRunSummary) -> None:
    errors = [e.model_dump(exclude={"schema_version"}) for e in run.errors]
    await db.execute(
        """
        INSERT INTO google_fit_runs (run_id, worker, started_at, finished_at, duration_ms,
            users_processed, successful, failed, tokens_refreshed, days_synced, days_failed,
            sessions_synced, provider_calls, errors)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14::text::jsonb)
        """,
        uuid.UUID(run.run_id),
        run.worker,
        run.started_at,
        run.finished_at,
        run.duration_ms,
        run.users_processed,
        run.successful,
        run.failed,
        run.tokens_refreshed,
        run.days_synced,
        run.days_failed,
        run.sessions_synced,
        run.provider_calls,
        json.dumps(errors),
    )


async def latest_runs(db: Db, limit: int) -> list[FitRunSummary]:
    records = await db.fetch(
        """
        SELECT run_id::text AS run_id, worker, started_at, finished_at, duration_ms,
            users_processed, successful, failed, tokens_refreshed, days_synced, days_failed,
            sessions_synced, provider_calls, errors::text AS errors
        FROM google_fit_runs ORDER BY started_at DESC, run_id LIMIT $1
        """,
        limit,
    )
    return [_summary(dict(r)) for r in records]


def _summary(row: dict[str, Any]) -> FitRunSummary:
    errors: Sequence[dict[str, Any]] = json.loads(row.pop("errors"))
    return FitRunSummary(**row, errors=tuple(FitUserError(**e) for e in errors))
