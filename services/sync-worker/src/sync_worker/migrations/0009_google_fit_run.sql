-- sync-worker: the unified Google Fit run (issue 7; seeds/000) and the users' time zones
-- (sync_worker.fit_store is their SQL).
--
-- One google_fit_runs row per run of one replica: what it claimed and how it went, with
-- the per-user errors (reauth, failed days, provider down) as a jsonb array. The admin
-- console reads the newest rows through sync.fit_runs.get.
--
-- time_zones: the IANA zone a user's days are counted in (Google Fit daily buckets are
-- local calendar days). Set through sync.time_zone.set; a user without a row gets the
-- DEFAULT_TIME_ZONE setting.
SET LOCAL ROLE sync_worker;
SET LOCAL search_path = sync;

CREATE TABLE google_fit_runs (
    run_id            uuid        PRIMARY KEY,
    worker            text        NOT NULL,
    started_at        timestamptz NOT NULL,
    finished_at       timestamptz NOT NULL,
    duration_ms       integer     NOT NULL CHECK (duration_ms >= 0),
    users_processed   integer     NOT NULL,
    successful        integer     NOT NULL,
    failed            integer     NOT NULL,
    tokens_refreshed  integer     NOT NULL,
    days_synced       integer     NOT NULL,
    days_failed       integer     NOT NULL,
    sessions_synced   integer     NOT NULL,
    provider_calls    integer     NOT NULL,
    errors            jsonb       NOT NULL DEFAULT '[]'::jsonb,
    CHECK (successful + failed = users_processed)
);
CREATE INDEX google_fit_runs_recent ON google_fit_runs (started_at DESC);

CREATE TABLE time_zones (
    user_id     text        PRIMARY KEY,
    time_zone   text        NOT NULL,
    updated_at  timestamptz NOT NULL
);

RESET ROLE;
RESET search_path;
