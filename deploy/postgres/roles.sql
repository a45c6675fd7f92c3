-- Login roles of the services, with their real passwords, before `syncplane migrate`.
--
-- The migrations create each role with a dev password only when it does not exist yet;
-- running this first (compose: the `db-roles` job; Kubernetes: the migrate Job's init
-- container) makes the roles exist with the passwords from the environment, and running
-- it again rotates them. Run as the admin role:
--
--   PG_PASSWORD_TOKEN_SERVICE=... PG_PASSWORD_SYNC_WORKER=... PG_PASSWORD_CALENDAR_SYNC=... \
--     psql -v ON_ERROR_STOP=1 -f deploy/postgres/roles.sql
--
-- Each role owns its schema (the migrations grant that) and nothing else: no CREATE on
-- the database or on `public`, no access to another service's schema. psql's \getenv
-- keeps the passwords out of the command line and out of this file.

\getenv token_service_password PG_PASSWORD_TOKEN_SERVICE
\if :{?token_service_password}
\else
DO $$ BEGIN RAISE EXCEPTION 'PG_PASSWORD_TOKEN_SERVICE is not set'; END $$;
\endif
\getenv sync_worker_password PG_PASSWORD_SYNC_WORKER
\if :{?sync_worker_password}
\else
DO $$ BEGIN RAISE EXCEPTION 'PG_PASSWORD_SYNC_WORKER is not set'; END $$;
\endif
\getenv calendar_sync_password PG_PASSWORD_CALENDAR_SYNC
\if :{?calendar_sync_password}
\else
DO $$ BEGIN RAISE EXCEPTION 'PG_PASSWORD_CALENDAR_SYNC is not set'; END $$;
\endif

SELECT 'CREATE ROLE ' || quote_ident(name) || ' LOGIN'
FROM unnest(ARRAY['token_service', 'sync_worker', 'calendar_sync']) AS name
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = name)
\gexec

ALTER ROLE token_service WITH LOGIN PASSWORD :'token_service_password';
ALTER ROLE sync_worker WITH LOGIN PASSWORD :'sync_worker_password';
ALTER ROLE calendar_sync WITH LOGIN PASSWORD :'calendar_sync_password';

-- Only the service roles (and the admin) may connect; nobody but the admin creates
-- schemas or objects outside the service schemas.
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database())
\gexec
SELECT format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO token_service, sync_worker, calendar_sync', current_database())
\gexec
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
