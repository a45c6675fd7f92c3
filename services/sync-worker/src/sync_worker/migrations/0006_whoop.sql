-- sync-worker: WHOOP v2 records (PROVIDERS.md §7.3; sync_worker.store_whoop is their SQL).
--
-- One table per collection, keyed by (our user, WHOOP's id): a cycle's int64, a sleep's
-- or a workout's UUID, and for a recovery its sleep's UUID (a recovery has no id of its
-- own; its webhooks name the sleep). Typed columns for what reads filter and show, `raw`
-- for the record exactly as WHOOP sent it.
--
-- content_hash is sha256 of the canonical JSON of `raw`: an upsert whose hash matches the
-- stored one leaves the row alone (no new tuple, no change event). fetched_at: when the
-- record was first stored; updated_at: when its content last changed. whoop_created_at /
-- whoop_updated_at are WHOOP's own timestamps.
SET LOCAL ROLE sync_worker;
SET LOCAL search_path = sync;

CREATE TABLE whoop_cycles (
    user_id             text             NOT NULL,
    cycle_id            bigint           NOT NULL,
    whoop_user_id       bigint           NOT NULL,
    start_at            timestamptz      NOT NULL,
    -- Null while the cycle is still in progress.
    end_at              timestamptz,
    timezone_offset     text,
    score_state         text             NOT NULL,
    strain              double precision,
    kilojoule           double precision,
    average_heart_rate  integer,
    max_heart_rate      integer,
    whoop_created_at    timestamptz      NOT NULL,
    whoop_updated_at    timestamptz      NOT NULL,
    raw                 jsonb            NOT NULL,
    content_hash        text             NOT NULL,
    fetched_at          timestamptz      NOT NULL,
    updated_at          timestamptz      NOT NULL,
    PRIMARY KEY (user_id, cycle_id)
);
CREATE INDEX whoop_cycles_recent ON whoop_cycles (user_id, start_at DESC);

CREATE TABLE whoop_recoveries (
    user_id             text             NOT NULL,
    sleep_id            uuid             NOT NULL,
    cycle_id            bigint           NOT NULL,
    whoop_user_id       bigint           NOT NULL,
    score_state         text             NOT NULL,
    user_calibrating    boolean,
    recovery_score      double precision,
    resting_heart_rate  double precision,
    hrv_rmssd_milli     double precision,
    spo2_percentage     double precision,
    skin_temp_celsius   double precision,
    whoop_created_at    timestamptz      NOT NULL,
    whoop_updated_at    timestamptz      NOT NULL,
    raw                 jsonb            NOT NULL,
    content_hash        text             NOT NULL,
    fetched_at          timestamptz      NOT NULL,
    updated_at          timestamptz      NOT NULL,
    PRIMARY KEY (user_id, sleep_id)
);
-- A recovery carries no time of its own but its creation, right after its sleep ends.
CREATE INDEX whoop_recoveries_recent ON whoop_recoveries (user_id, whoop_created_at DESC);

CREATE TABLE whoop_sleeps (
    user_id                         text             NOT NULL,
    sleep_id                        uuid             NOT NULL,
    cycle_id                        bigint,
    -- Deprecated by WHOOP: kept for mapping old references, never a key.
    v1_id                           bigint,
    whoop_user_id                   bigint           NOT NULL,
    start_at                        timestamptz      NOT NULL,
    end_at                          timestamptz      NOT NULL,
    timezone_offset                 text,
    nap                             boolean          NOT NULL,
    score_state                     text             NOT NULL,
    respiratory_rate                double precision,
    sleep_performance_percentage    double precision,
    sleep_consistency_percentage    double precision,
    sleep_efficiency_percentage     double precision,
    total_in_bed_time_milli         bigint,
    total_awake_time_milli          bigint,
    total_light_sleep_time_milli    bigint,
    total_slow_wave_sleep_time_milli bigint,
    total_rem_sleep_time_milli      bigint,
    whoop_created_at                timestamptz      NOT NULL,
    whoop_updated_at                timestamptz      NOT NULL,
    raw                             jsonb            NOT NULL,
    content_hash                    text             NOT NULL,
    fetched_at                      timestamptz      NOT NULL,
    updated_at                      timestamptz      NOT NULL,
    PRIMARY KEY (user_id, sleep_id)
);
CREATE INDEX whoop_sleeps_recent ON whoop_sleeps (user_id, start_at DESC);

CREATE TABLE whoop_workouts (
    user_id             text             NOT NULL,
    workout_id          uuid             NOT NULL,
    v1_id               bigint,
    whoop_user_id       bigint           NOT NULL,
    start_at            timestamptz      NOT NULL,
    end_at              timestamptz      NOT NULL,
    timezone_offset     text,
    sport_name          text,
    sport_id            integer,
    score_state         text             NOT NULL,
    strain              double precision,
    average_heart_rate  integer,
    max_heart_rate      integer,
    kilojoule           double precision,
    percent_recorded    double precision,
    distance_meter      double precision,
    altitude_gain_meter double precision,
    whoop_created_at    timestamptz      NOT NULL,
    whoop_updated_at    timestamptz      NOT NULL,
    raw                 jsonb            NOT NULL,
    content_hash        text             NOT NULL,
    fetched_at          timestamptz      NOT NULL,
    updated_at          timestamptz      NOT NULL,
    PRIMARY KEY (user_id, workout_id)
);
CREATE INDEX whoop_workouts_recent ON whoop_workouts (user_id, start_at DESC);

RESET ROLE;
RESET search_path;
