-- sync-worker: sync sessions (ARCHITECTURE.md §4 "Sync session"; sync_worker.sessions is
-- the state machine these rows hold).
--
-- Created as the service's own role so it owns its tables, as it owns the schema (0001).
-- The runner records this file in public.schema_migrations inside the same transaction,
-- as itself: the role goes back at the end of the file.
SET LOCAL ROLE sync_worker;
SET LOCAL search_path = sync;

CREATE TABLE sessions (
    id              uuid        PRIMARY KEY,
    user_id         text        NOT NULL,
    provider        text        NOT NULL
        CHECK (provider IN ('strava', 'google_fit', 'whoop', 'google_calendar')),
    kind            text        NOT NULL
        CHECK (kind IN ('backfill', 'incremental', 'webhook', 'scheduled', 'on_demand')),
    state           text        NOT NULL
        CHECK (state IN ('initiated', 'fetching', 'enriching', 'storing', 'completed',
                         'failed', 'retrying', 'cancelled')),
    phase           text        CHECK (phase IN ('fetching', 'enriching', 'storing')),
    failed_phase    text        CHECK (failed_phase IN ('fetching', 'enriching', 'storing')),
    -- The provider's cursor, opaque here: written with the page it follows, in one
    -- transaction, so a redelivered session resumes after the last page that landed.
    checkpoint      jsonb       NOT NULL DEFAULT '{}',
    pages_done      integer     NOT NULL DEFAULT 0 CHECK (pages_done >= 0),
    pages_expected  integer     CHECK (pages_expected >= 0),
    fetched         integer     NOT NULL DEFAULT 0 CHECK (fetched >= 0),
    enriched        integer     NOT NULL DEFAULT 0 CHECK (enriched >= 0),
    stored          integer     NOT NULL DEFAULT 0 CHECK (stored >= 0),
    failed          integer     NOT NULL DEFAULT 0 CHECK (failed >= 0),
    -- Duplicates and filtered items: seen, deliberately not stored.
    skipped         integer     NOT NULL DEFAULT 0 CHECK (skipped >= 0),
    -- {"type": ..., "message": ..., "retryable": bool}; never a token (errors carry none).
    error           jsonb,
    retry_count     integer     NOT NULL DEFAULT 0 CHECK (retry_count >= 0),
    -- Bumped by every save: two workers that loaded the same revision cannot both write.
    version         bigint      NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL,
    started_at      timestamptz,
    updated_at      timestamptz NOT NULL,
    -- Set exactly when the session can no longer move (completed, cancelled, failed for
    -- good): "running" is finished_at IS NULL, which the partial index below relies on.
    finished_at     timestamptz,
    CHECK ((state IN ('completed', 'cancelled')) <= (finished_at IS NOT NULL)),
    CHECK ((state IN ('failed', 'retrying')) <= (failed_phase IS NOT NULL))
);

-- Running sessions of a connection: a revoke cancels them, a new sync checks for one.
CREATE INDEX sessions_running ON sessions (user_id, provider) WHERE finished_at IS NULL;
-- Latest session per (user, provider, kind): "when did this last sync", status reads.
CREATE INDEX sessions_latest ON sessions (user_id, provider, kind, created_at DESC);

RESET ROLE;
RESET search_path;
