-- calendar-sync: its own schema and login role; tables come in later files.
--
-- The dev password is the role name. Production sets the real one out of band
-- (ALTER ROLE calendar_sync PASSWORD '...'); since an existing role is left untouched below,
-- re-running this file never resets it.
DO $$
BEGIN
    CREATE ROLE calendar_sync LOGIN PASSWORD 'calendar_sync';
EXCEPTION
    -- Roles are cluster-wide: another database, or a runner in one, may have made it
    -- first; a concurrent CREATE ROLE surfaces as unique_violation, not duplicate_object.
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

CREATE SCHEMA IF NOT EXISTS calendar AUTHORIZATION calendar_sync;

GRANT USAGE, CREATE ON SCHEMA calendar TO calendar_sync;

ALTER ROLE calendar_sync SET search_path = calendar;
