-- calendar-sync tables (issue 8). Loop prevention lives in `mappings`: the etag and the
-- content hash of what Google holds as we last wrote or read it, never a time window.
--
-- Created as the service's own role so it owns its tables (it owns the schema, 0001).
SET LOCAL ROLE calendar_sync;
SET LOCAL search_path = calendar;

-- The local mirror: the app's events. `version` grows with every local write, so a
-- mapping that recorded an older version knows the event has an unpushed change.
CREATE TABLE IF NOT EXISTS events (
    id           text PRIMARY KEY,
    user_id      text NOT NULL,
    calendar_id  text NOT NULL,
    title        text NOT NULL DEFAULT '',
    description  text NOT NULL DEFAULT '',
    location     text NOT NULL DEFAULT '',
    all_day      boolean NOT NULL DEFAULT false,
    -- RFC 3339 date-time with offset, or a date when all_day; starts_at / ends_at are the
    -- same moments as instants (midnight UTC for dates), for range queries.
    start_value  text NOT NULL,
    end_value    text NOT NULL,
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL,
    time_zone    text,
    metadata     jsonb NOT NULL DEFAULT '{}'::jsonb,
    version      integer NOT NULL DEFAULT 1,
    updated_at   timestamptz NOT NULL,
    deleted      boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS events_user_time ON events (user_id, calendar_id, starts_at);

-- Local event <-> Google event. hash_google is the content hash of what Google holds as
-- far as we know (written by us or read from it); base is that content, the common
-- ancestor for a field-level merge.
CREATE TABLE IF NOT EXISTS mappings (
    event_id         text PRIMARY KEY REFERENCES events (id) ON DELETE CASCADE,
    user_id          text NOT NULL,
    calendar_id      text NOT NULL,
    google_event_id  text NOT NULL,
    etag             text,
    hash_written     text,
    hash_read        text,
    hash_google      text,
    base             jsonb,
    google_updated   timestamptz,
    last_modified_at timestamptz NOT NULL,
    sync_source      text NOT NULL CHECK (sync_source IN ('local', 'google')),
    version          integer NOT NULL,
    google_deleted   boolean NOT NULL DEFAULT false,
    UNIQUE (user_id, calendar_id, google_event_id)
);

-- Per calendar: the sync cursor and the push channel.
CREATE TABLE IF NOT EXISTS calendars (
    user_id            text NOT NULL,
    calendar_id        text NOT NULL,
    sync_token         text,
    channel_id         text,
    resource_id        text,
    channel_token      text,
    channel_expires_at timestamptz,
    push_enabled       boolean NOT NULL DEFAULT true,
    sync_enabled       boolean NOT NULL DEFAULT true,
    renew_failures     integer NOT NULL DEFAULT 0,
    last_synced_at     timestamptz,
    conflict_policy    text,
    PRIMARY KEY (user_id, calendar_id)
);
CREATE INDEX IF NOT EXISTS calendars_expiry ON calendars (channel_expires_at);

-- Changes to push to Google: at most one pending row per event (later edits fold into it).
CREATE TABLE IF NOT EXISTS outbox (
    id              bigserial PRIMARY KEY,
    user_id         text NOT NULL,
    calendar_id     text NOT NULL,
    event_id        text NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'done', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_error      text,
    created_at      timestamptz NOT NULL,
    done_at         timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS outbox_one_pending ON outbox (event_id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS outbox_done ON outbox (done_at) WHERE status <> 'pending';

-- Messages for the bus, written in the transaction that decided them.
CREATE TABLE IF NOT EXISTS messages (
    id           bigserial PRIMARY KEY,
    subject      text NOT NULL,
    msg_id       text NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL,
    published_at timestamptz
);
CREATE INDEX IF NOT EXISTS messages_pending ON messages (id) WHERE published_at IS NULL;

CREATE TABLE IF NOT EXISTS audit (
    id              bigserial PRIMARY KEY,
    user_id         text NOT NULL,
    calendar_id     text,
    event_id        text,
    google_event_id text,
    action          text NOT NULL,
    direction       text NOT NULL CHECK (direction IN ('outbound', 'inbound', 'channel')),
    outcome         text NOT NULL,
    details         jsonb NOT NULL DEFAULT '{}'::jsonb,
    at              timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_user ON audit (user_id, at);

RESET ROLE;
