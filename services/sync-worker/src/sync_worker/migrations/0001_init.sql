-- sync-worker: its own schema and login role; tables come in later files.
--
-- The dev password is the role name. Production sets the real one out of band
-- (ALTER ROLE sync_worker PASSWORD '...'); since an existing role is left untouched below,
-- re-running this file never resets it.
DO $$
BEGIN
    CREATE ROLE sync_worker LOGIN PASSWORD 'sync_worker';
EXCEPTION
    -- Roles are cluster-wide: another database, or a runner in one, may have made it
    -- first; a concurrent CREATE ROLE surfaces as unique_violation, not duplicate_object.
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

CREATE SCHEMA IF NOT EXISTS sync AUTHORIZATION sync_worker;

GRANT USAGE, CREATE ON SCHEMA sync TO sync_worker;

ALTER ROLE sync_worker SET search_path = sync;
