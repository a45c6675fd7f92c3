-- sync-worker: Strava activities (issue 6; PROVIDERS.md §3.3).
--
-- Keyed by (user, Strava id): one athlete belongs to one user, and a webhook, a backfill
-- and an incremental pass may all write the same activity, so every write is an upsert.
-- Ids are exact: strava_id fits in bigint, upload_id may not (Strava's own example is
-- past int64), so it lives only in the raw payload, which jsonb keeps as a numeric.
SET LOCAL ROLE sync_worker;
SET LOCAL search_path = sync;

CREATE TABLE strava_activities (
    user_id              text        NOT NULL,
    strava_id            bigint      NOT NULL,
    athlete_id           bigint,
    name                 text        NOT NULL,
    sport_type           text        NOT NULL,
    distance_m           double precision NOT NULL,
    moving_time_s        integer     NOT NULL,
    elapsed_time_s       integer     NOT NULL,
    elevation_gain_m     double precision,
    start_date           timestamptz NOT NULL,
    -- Wall-clock time where the activity happened (Strava's misleading "Z" dropped).
    start_date_local     timestamp   NOT NULL,
    timezone             text,
    start_lat            double precision,
    start_lng            double precision,
    end_lat              double precision,
    end_lng              double precision,
    average_speed        double precision,
    max_speed            double precision,
    average_heartrate    double precision,
    max_heartrate        double precision,
    private              boolean     NOT NULL DEFAULT false,
    trainer              boolean     NOT NULL DEFAULT false,
    commute              boolean     NOT NULL DEFAULT false,
    manual               boolean     NOT NULL DEFAULT false,
    raw                  jsonb       NOT NULL,
    -- sha256 of the raw payload: an upsert that would write the same content is skipped.
    content_hash         text        NOT NULL,
    weather              jsonb,
    city                 text,
    state                text,
    country              text,
    -- {"weather": bool, "geocoding": bool}; false = to be filled by a later pass.
    enrichment_status    jsonb       NOT NULL DEFAULT '{}',
    fetched_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    PRIMARY KEY (user_id, strava_id)
);

-- Smart reads and the incremental cursor: newest first per user.
CREATE INDEX strava_activities_by_start ON strava_activities (user_id, start_date DESC);
-- The enrichment pass: activities still missing weather or a place.
CREATE INDEX strava_activities_unenriched ON strava_activities (fetched_at)
    WHERE NOT (enrichment_status @> '{"weather": true, "geocoding": true}');

RESET ROLE;
RESET search_path;
