"""The SQL of Strava activities (table ``sync.strava_activities``, migration 0003).

Writes are batched upserts over ``unnest`` arrays keyed by (user, Strava id). A row whose
payload hash did not change is not rewritten, so a re-read page costs no writes and
produces no change event. Every function takes the connection it runs on, so the engine
can put a page's rows and its session checkpoint in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from sync_worker import sync_state

# The one hash every provider table compares (re-exported for strava_source).
from sync_worker.providers._records import content_hash as content_hash
from sync_worker.providers.strava import Activity

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Db: TypeAlias = (
        asyncpg.Pool[asyncpg.Record]
        | PoolConnectionProxy[asyncpg.Record]
        | asyncpg.Connection[asyncpg.Record]
    )


@dataclass(frozen=True, slots=True)
class StoredActivity:
    """An activity as it is written: the provider's fields plus what enrichment found."""

    activity: Activity
    weather: dict[str, Any] | None = None
    city: str | None = None
    state: str | None = None
    country: str | None = None
    enrichment: dict[str, bool] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        # Of the provider's payload only: enrichment is ours and never makes a row "changed".
        return content_hash(self.activity.raw)


@dataclass(frozen=True, slots=True)
class Written:
    added: tuple[int, ...] = ()
    updated: tuple[int, ...] = ()
    unchanged: int = 0


def _arrays(user_id: str, rows: Sequence[StoredActivity], now: datetime) -> list[Any]:
    a = [r.activity for r in rows]

    def point(p: tuple[float, float] | None, i: int) -> float | None:
        return None if p is None else p[i]

    return [
        user_id,
        [x.id for x in a],
        [x.athlete_id for x in a],
        [x.name for x in a],
        [x.sport_type for x in a],
        [x.distance for x in a],
        [x.moving_time for x in a],
        [x.elapsed_time for x in a],
        [x.total_elevation_gain for x in a],
        [x.start_date for x in a],
        [x.start_date_local for x in a],
        [x.timezone for x in a],
        [point(x.start_latlng, 0) for x in a],
        [point(x.start_latlng, 1) for x in a],
        [point(x.end_latlng, 0) for x in a],
        [point(x.end_latlng, 1) for x in a],
        [x.average_speed for x in a],
        [x.max_speed for x in a],
        [x.average_heartrate for x in a],
        [x.max_heartrate for x in a],
        [x.private for x in a],
        [x.trainer for x in a],
        [x.commute for x in a],
        [x.manual for x in a],
        # As text, cast in SQL: jsonb keeps numbers exact (upload_id past int64).
        [json.dumps(x.raw) for x in a],
        [r.hash for r in rows],
        [None if r.weather is None else json.dumps(r.weather) for r in rows],
        [r.city for r in rows],
        [r.state for r in rows],
        [r.country for r in rows],
        [json.dumps(r.enrichment) for r in rows],
        now,
    ]


_UPSERT = """
INSERT INTO strava_activities AS t (
    user_id, strava_id, athlete_id, name, sport_type, distance_m, moving_time_s,
    elapsed_time_s, elevation_gain_m, start_date, start_date_local, timezone, start_lat,
    start_lng, end_lat, end_lng, average_speed, max_speed, average_heartrate, max_heartrate,
    private, trainer, commute, manual, raw, content_hash, weather, city, state, country,
    enrichment_status, fetched_at, updated_at
)
SELECT $1, u.strava_id, u.athlete_id, u.name, u.sport_type, u.distance_m, u.moving_time_s,
    u.elapsed_time_s, u.elevation_gain_m, u.start_date, u.start_date_local, u.timezone,
    u.start_lat, u.start_lng, u.end_lat, u.end_lng, u.average_speed, u.max_speed,
    u.average_heartrate, u.max_heartrate, u.private, u.trainer, u.commute, u.manual,
    u.raw::jsonb, u.content_hash, u.weather::jsonb, u.city, u.state, u.country,
    u.enrichment_status::jsonb, $32, $32
FROM unnest(
    $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::float8[], $7::int[], $8::int[],
    $9::float8[], $10::timestamptz[], $11::timestamp[], $12::text[], $13::float8[],
    $14::float8[], $15::float8[], $16::float8[], $17::float8[], $18::float8[],
    $19::float8[], $20::float8[], $21::bool[], $22::bool[], $23::bool[], $24::bool[],
    $25::text[], $26::text[], $27::text[], $28::text[], $29::text[], $30::text[], $31::text[]
) AS u(
    strava_id, athlete_id, name, sport_type, distance_m, moving_time_s, elapsed_time_s,
    elevation_gain_m, start_date, start_date_local, timezone, start_lat, start_lng, end_lat,
    end_lng, average_speed, max_speed, average_heartrate, max_heartrate, private, trainer,
    commute, manual, raw, content_hash, weather, city, state, country, enrichment_status
)
ON CONFLICT (user_id, strava_id) DO UPDATE SET
    athlete_id = EXCLUDED.athlete_id, name = EXCLUDED.name, sport_type = EXCLUDED.sport_type,
    distance_m = EXCLUDED.distance_m, moving_time_s = EXCLUDED.moving_time_s,
    elapsed_time_s = EXCLUDED.elapsed_time_s, elevation_gain_m = EXCLUDED.elevation_gain_m,
    start_date = EXCLUDED.start_date, start_date_local = EXCLUDED.start_date_local,
    timezone = EXCLUDED.timezone, start_lat = EXCLUDED.start_lat,
    start_lng = EXCLUDED.start_lng, end_lat = EXCLUDED.end_lat, end_lng = EXCLUDED.end_lng,
    average_speed = EXCLUDED.average_speed, max_speed = EXCLUDED.max_speed,
    average_heartrate = EXCLUDED.average_heartrate, max_heartrate = EXCLUDED.max_heartrate,
    private = EXCLUDED.private, trainer = EXCLUDED.trainer, commute = EXCLUDED.commute,
    manual = EXCLUDED.manual, raw = EXCLUDED.raw, content_hash = EXCLUDED.content_hash,
    -- A failed enrichment of a changed activity keeps what an earlier pass found; its
    -- status says "to be filled" and the enrichment pass overwrites it.
    weather = COALESCE(EXCLUDED.weather, t.weather),
    city = COALESCE(EXCLUDED.city, t.city), state = COALESCE(EXCLUDED.state, t.state),
    country = COALESCE(EXCLUDED.country, t.country),
    enrichment_status = EXCLUDED.enrichment_status,
    fetched_at = EXCLUDED.fetched_at, updated_at = EXCLUDED.updated_at
WHERE t.content_hash IS DISTINCT FROM EXCLUDED.content_hash
RETURNING t.strava_id, (t.xmax = 0) AS inserted
"""


async def upsert(conn: Db, user_id: str, rows: Sequence[StoredActivity], now: datetime) -> Written:
    """Writes the rows that are new or changed; the rest are counted as unchanged."""
    if not rows:
        return Written()
    # One row per id: a page never repeats one, but a batch joined from two might, and
    # ON CONFLICT cannot touch the same row twice in one statement.
    unique = list({r.activity.id: r for r in rows}.values())
    records = await conn.fetch(_UPSERT, *_arrays(user_id, unique, now))
    added = tuple(r["strava_id"] for r in records if r["inserted"])
    updated = tuple(r["strava_id"] for r in records if not r["inserted"])
    return Written(added, updated, len(rows) - len(records))


async def stored_hashes(conn: Db, user_id: str, ids: Iterable[int]) -> dict[int, str]:
    """What is stored for these ids: an activity whose hash matches needs no enrichment."""
    records = await conn.fetch(
        "SELECT strava_id, content_hash FROM strava_activities "
        "WHERE user_id = $1 AND strava_id = ANY($2::bigint[])",
        user_id,
        list(ids),
    )
    return {r["strava_id"]: r["content_hash"] for r in records}


async def delete(conn: Db, user_id: str, ids: Iterable[int]) -> tuple[int, ...]:
    records = await conn.fetch(
        "DELETE FROM strava_activities WHERE user_id = $1 AND strava_id = ANY($2::bigint[]) "
        "RETURNING strava_id",
        user_id,
        list(ids),
    )
    return tuple(r["strava_id"] for r in records)


async def delete_user(conn: Db, user_id: str) -> int:
    result = await conn.execute("DELETE FROM strava_activities WHERE user_id = $1", user_id)
    return int(result.split()[-1])


async def newest_start(conn: Db, user_id: str) -> datetime | None:
    value: datetime | None = await conn.fetchval(
        "SELECT max(start_date) FROM strava_activities WHERE user_id = $1", user_id
    )
    return value


async def count(conn: Db, user_id: str) -> int:
    value: int = await conn.fetchval(
        "SELECT count(*) FROM strava_activities WHERE user_id = $1", user_id
    )
    return value


async def read_synced(
    conn: Db,
    user_id: str,
    log: tuple[str, str] | None,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 100,
) -> tuple[list[dict[str, Any]], tuple[str, ...], datetime | None]:
    """Newest first, what a smart read answers (each row carries ``strava_id``), with
    the rows' versions (:func:`versions`) and, with ``log``
    (provider, data type), the sync log's last success of that type from the same
    statement (None when no row came back)."""
    synced = "" if log is None else ", " + sync_state.last_success_column(1, 5, 6)
    records = await conn.fetch(
        f"""
        SELECT strava_id, name, sport_type, distance_m, moving_time_s, elapsed_time_s,
            elevation_gain_m, start_date, start_date_local, timezone, start_lat, start_lng,
            end_lat, end_lng, average_speed, max_speed, average_heartrate, max_heartrate,
            private, trainer, commute, manual, weather::text AS weather, city, state,
            country, enrichment_status::text AS enrichment_status, updated_at,
            {_VERSION} AS version{synced}
        {_WINDOW}
        """,
        user_id,
        start,
        end,
        limit,
        *(log or ()),
    )
    rows = []
    for r in records:
        row = dict(r)
        row.pop("version")
        row.pop("last_success_at", None)
        row["weather"] = None if r["weather"] is None else json.loads(r["weather"])
        row["enrichment_status"] = json.loads(r["enrichment_status"])
        for key in ("start_date", "updated_at"):
            row[key] = r[key].isoformat()
        row["start_date_local"] = r["start_date_local"].isoformat()
        rows.append(row)
    last: datetime | None = records[0]["last_success_at"] if records and log else None
    return rows, tuple(r["version"] for r in records), last


# See store_records: key and the writing transaction, new with every UPDATE (enrichment's
# included, which leaves updated_at alone).
_VERSION = "strava_id::text || '@' || xmin::text"
_WINDOW = """
        FROM strava_activities
        WHERE user_id = $1
          AND ($2::timestamptz IS NULL OR start_date >= $2)
          AND ($3::timestamptz IS NULL OR start_date < $3)
        ORDER BY start_date DESC, strava_id DESC
        LIMIT $4"""


async def versions(
    conn: Db,
    user_id: str,
    log: tuple[str, str],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 100,
) -> tuple[tuple[str, ...], datetime | None]:
    """The versions of the rows :func:`read_synced` would return, in its order, and the sync
    log's last success of ``log`` (None when no row came back)."""
    records = await conn.fetch(
        f"SELECT {_VERSION} AS version, {sync_state.last_success_column(1, 5, 6)} {_WINDOW}",
        user_id,
        start,
        end,
        limit,
        *log,
    )
    last: datetime | None = records[0]["last_success_at"] if records else None
    return tuple(r["version"] for r in records), last


@dataclass(frozen=True, slots=True)
class Unenriched:
    user_id: str
    strava_id: int
    start_date: datetime
    start_lat: float | None
    start_lng: float | None
    status: dict[str, bool]


async def unenriched(conn: Db, limit: int) -> list[Unenriched]:
    """Activities a past enrichment could not complete, oldest first, for the later pass;
    locked so two replicas' passes do not fill the same rows."""
    records = await conn.fetch(
        """
        SELECT user_id, strava_id, start_date, start_lat, start_lng,
            enrichment_status::text AS status
        FROM strava_activities
        WHERE NOT (enrichment_status @> '{"weather": true, "geocoding": true}')
        ORDER BY fetched_at
        LIMIT $1
        FOR UPDATE SKIP LOCKED
        """,
        limit,
    )
    return [
        Unenriched(
            r["user_id"],
            r["strava_id"],
            r["start_date"],
            r["start_lat"],
            r["start_lng"],
            json.loads(r["status"]),
        )
        for r in records
    ]


async def set_enrichment(
    conn: Db,
    item: Unenriched,
    *,
    weather: dict[str, Any] | None,
    city: str | None,
    state: str | None,
    country: str | None,
    status: dict[str, bool],
) -> None:
    await conn.execute(
        """
        UPDATE strava_activities SET
            weather = COALESCE($3::text::jsonb, weather), city = COALESCE($4, city),
            state = COALESCE($5, state), country = COALESCE($6, country),
            enrichment_status = $7::text::jsonb
        WHERE user_id = $1 AND strava_id = $2
        """,
        item.user_id,
        item.strava_id,
        None if weather is None else json.dumps(weather),
        city,
        state,
        country,
        json.dumps(status),
    )
