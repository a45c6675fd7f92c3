-- sync-worker: Google Fit daily aggregates and sessions (PROVIDERS.md §6.2, §6.3;
-- sync_worker.store_google_fit is their SQL).
--
-- A day is a local calendar day in the user's zone (time_zone, with the instants it
-- spans: 23 or 25 hours on a DST change); a value is null where Fit had no data. `raw`
-- is the dataset:aggregate bucket as Google sent it; content_hash covers the values only
-- (Google re-derives points without the numbers moving), so the last days re-synced on
-- every run rewrite a row only when a number changed. Sessions keep `raw` as listed and
-- hash it whole. fetched_at: first stored; updated_at: content last changed.
SET LOCAL ROLE sync_worker;
SET LOCAL search_path = sync;

CREATE TABLE google_fit_daily (
    user_id         text             NOT NULL,
    day             date             NOT NULL,
    time_zone       text             NOT NULL,
    day_start       timestamptz      NOT NULL,
    day_end         timestamptz      NOT NULL,
    steps           bigint,
    calories_kcal   double precision,
    distance_m      double precision,
    heart_rate_avg  double precision,
    heart_rate_min  double precision,
    heart_rate_max  double precision,
    active_minutes  integer,
    raw             jsonb            NOT NULL,
    content_hash    text             NOT NULL,
    fetched_at      timestamptz      NOT NULL,
    updated_at      timestamptz      NOT NULL,
    PRIMARY KEY (user_id, day),
    CHECK (day_end > day_start)
);
-- Newest-first reads walk the primary key backwards: no extra index.

CREATE TABLE google_fit_sessions (
    user_id         text             NOT NULL,
    session_id      text             NOT NULL,
    name            text             NOT NULL,
    description     text             NOT NULL,
    activity_type   integer          NOT NULL,
    start_at        timestamptz      NOT NULL,
    end_at          timestamptz      NOT NULL,
    active_time_ms  bigint,
    modified_at     timestamptz,
    package_name    text,
    raw             jsonb            NOT NULL,
    content_hash    text             NOT NULL,
    fetched_at      timestamptz      NOT NULL,
    updated_at      timestamptz      NOT NULL,
    PRIMARY KEY (user_id, session_id)
);
CREATE INDEX google_fit_sessions_recent ON google_fit_sessions (user_id, start_at DESC);

RESET ROLE;
RESET search_path;
