-- token-service: its own schema and login role; tables come in later files.
--
-- The dev password is the role name. Production sets the real one out of band
-- (ALTER ROLE token_service PASSWORD '...'); since an existing role is left untouched below,
-- re-running this file never resets it.
DO $$
BEGIN
    CREATE ROLE token_service LOGIN PASSWORD 'token_service';
EXCEPTION
    -- Roles are cluster-wide: another database, or a runner in one, may have made it
    -- first; a concurrent CREATE ROLE surfaces as unique_violation, not duplicate_object.
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

CREATE SCHEMA IF NOT EXISTS tokens AUTHORIZATION token_service;

GRANT USAGE, CREATE ON SCHEMA tokens TO token_service;

ALTER ROLE token_service SET search_path = tokens;
