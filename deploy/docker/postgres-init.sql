-- Run once by the postgres image on an empty volume (/docker-entrypoint-initdb.d/).
-- The same databases as deploy/local/postgres.sh: one per service, each with pg_trgm;
-- template1 gets pg_trgm too so that databases created later (tests) have it.
\connect template1
CREATE EXTENSION IF NOT EXISTS pg_trgm;
\connect postgres
CREATE DATABASE misp_identity;
CREATE DATABASE misp_orgs;
CREATE DATABASE misp_audit;
CREATE DATABASE misp_jobs;
CREATE DATABASE misp_mailer;
CREATE DATABASE misp_settings;
\connect misp_identity
CREATE EXTENSION IF NOT EXISTS pg_trgm;
\connect misp_orgs
CREATE EXTENSION IF NOT EXISTS pg_trgm;
\connect misp_audit
CREATE EXTENSION IF NOT EXISTS pg_trgm;
\connect misp_jobs
CREATE EXTENSION IF NOT EXISTS pg_trgm;
\connect misp_mailer
CREATE EXTENSION IF NOT EXISTS pg_trgm;
\connect misp_settings
CREATE EXTENSION IF NOT EXISTS pg_trgm;
