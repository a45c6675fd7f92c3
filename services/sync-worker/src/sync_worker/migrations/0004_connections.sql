-- sync-worker: the connections it syncs, the scheduler's due list, and the sync log
-- (issue 6 tiers of freshness; ARCHITECTURE §4).
--
-- token-service owns connections; this is sync-worker's own view, fed by the
-- connection.* events, so scheduling never reads another service's schema.
SET LOCAL ROLE sync_worker;
SET LOCAL search_path = sync;

CREATE TABLE connections (
    user_id              text        NOT NULL,
    provider             text        NOT NULL
        CHECK (provider IN ('strava', 'google_fit', 'whoop', 'google_calendar')),
    provider_account_id  text,
    status               text        NOT NULL
        CHECK (status IN ('active', 'reauth_required', 'revoked')),
    -- When the scheduler should next consider this connection.
    next_sync_at         timestamptz NOT NULL,
    last_scheduled_at    timestamptz,
    -- The last session that completed (any kind): "synced recently" is read here.
    last_synced_at       timestamptz,
    status_reason        text,
    -- Of the connection.* event that set the status: an older event never undoes a newer.
    status_at            timestamptz NOT NULL,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    PRIMARY KEY (user_id, provider)
);

-- Webhooks name the provider account (Strava owner_id, WHOOP user_id), not our user.
CREATE INDEX connections_by_account ON connections (provider, provider_account_id);
-- The scheduler's claim: due active connections, oldest first. Partial, so revoked and
-- broken connections cost the claim nothing however many there are.
CREATE INDEX connections_due ON connections (next_sync_at) WHERE status = 'active';

-- Per (user, provider, data type): the last attempt and the last success, for status
-- reads and smart-read freshness.
CREATE TABLE sync_log (
    user_id              text        NOT NULL,
    provider             text        NOT NULL,
    data_type            text        NOT NULL,
    last_attempt_at      timestamptz NOT NULL,
    last_success_at      timestamptz,
    status               text        NOT NULL CHECK (status IN ('running', 'success', 'failed')),
    records_synced       integer     NOT NULL DEFAULT 0,
    error                text,
    session_id           uuid,
    PRIMARY KEY (user_id, provider, data_type)
);

RESET ROLE;
RESET search_path;
