-- token-service: connections with their encrypted tokens, the lifecycle audit, the event
-- outbox, and the used OAuth state nonces.
--
-- Created as the service's own role so it owns its tables, as it owns the schema (0001).
-- The runner records this file in public.schema_migrations inside the same transaction,
-- as itself: the role goes back at the end of the file.
SET LOCAL ROLE token_service;
SET LOCAL search_path = tokens;

CREATE TABLE connections (
    id                    uuid        PRIMARY KEY,
    user_id               text        NOT NULL,
    provider              text        NOT NULL
        CHECK (provider IN ('strava', 'google_fit', 'whoop', 'google_calendar')),
    -- Strava athlete id, WHOOP user id, Google subject.
    provider_account_id   text,
    scopes                text[]      NOT NULL DEFAULT '{}',
    status                text        NOT NULL
        CHECK (status IN ('active', 'reauth_required', 'revoked')),
    status_reason         text,
    -- AES-256-GCM: 12-byte nonce || ciphertext || tag, bound to (id, provider, key_id, field).
    access_token_ct       bytea,
    refresh_token_ct      bytea,
    key_id                text,
    expires_at            timestamptz,
    last_refreshed_at     timestamptz,
    last_used_at          timestamptz,
    refresh_count         integer     NOT NULL DEFAULT 0,
    -- Transient refresh failures (network, 5xx, 429): counted, never a status change.
    consecutive_failures  integer     NOT NULL DEFAULT 0,
    total_failures        integer     NOT NULL DEFAULT 0,
    last_failure_at       timestamptz,
    last_failure_reason   text,
    connected_at          timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    revoked_at            timestamptz,
    UNIQUE (user_id, provider),
    -- An active connection always has a token to serve and the key that sealed it;
    -- a wiped one keeps no ciphertext and no key id.
    CHECK (status <> 'active' OR (access_token_ct IS NOT NULL AND key_id IS NOT NULL)),
    CHECK (access_token_ct IS NOT NULL OR refresh_token_ct IS NULL),
    CHECK ((access_token_ct IS NULL) = (key_id IS NULL))
);

-- Strava deauthorization webhooks name the athlete, not our user.
CREATE INDEX connections_account ON connections (provider, provider_account_id);
-- Key rotation walks the rows still sealed under an older key.
CREATE INDEX connections_key ON connections (key_id) WHERE key_id IS NOT NULL;

CREATE TABLE connection_audit (
    id             bigserial   PRIMARY KEY,
    connection_id  uuid        NOT NULL REFERENCES connections (id),
    user_id        text        NOT NULL,
    provider       text        NOT NULL,
    -- connected | reconnected | reauth_required | revoked | deauthorized
    action         text        NOT NULL,
    status_before  text,
    status_after   text        NOT NULL,
    reason         text,
    at             timestamptz NOT NULL
);

CREATE INDEX connection_audit_connection ON connection_audit (connection_id, id);

-- Lifecycle events are written in the transaction that changes the connection and
-- published after it commits, so a status change never goes unannounced.
CREATE TABLE event_outbox (
    id            bigserial   PRIMARY KEY,
    msg_id        text        NOT NULL UNIQUE,
    subject       text        NOT NULL,
    payload       jsonb       NOT NULL,
    created_at    timestamptz NOT NULL,
    published_at  timestamptz
);

CREATE INDEX event_outbox_pending ON event_outbox (id) WHERE published_at IS NULL;

-- OAuth state is single use: the gateway is stateless, so replays are caught here.
CREATE TABLE used_state_nonces (
    nonce_sha256  text        PRIMARY KEY,
    user_id       text        NOT NULL,
    provider      text        NOT NULL,
    used_at       timestamptz NOT NULL
);

CREATE INDEX used_state_nonces_used_at ON used_state_nonces (used_at);

RESET ROLE;
RESET search_path;
