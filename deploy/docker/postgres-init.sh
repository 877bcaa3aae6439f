#!/usr/bin/env bash
# postgres-init of docker-compose.yml: run at every `up` by the postgres image, as the superuser
# against the postgres service (PGHOST, PGUSER, PGPASSWORD), what deploy/local/postgres.sh does
# for the local cluster. Each service of MISP_SERVICES gets its role misp_<service>, logging in
# with the SCRAM password of MISP_PG_<SERVICE>_PASSWORD (set again at each run: a new value
# rotates it), owning its database misp_<service> and what an older layout made there as the
# superuser; PUBLIC loses CONNECT, so no role but the owner (and the superuser) gets in.
# template1 and every database get pg_trgm.
set -euo pipefail

: "${MISP_SERVICES:?set MISP_SERVICES to the services, space-separated}"

psql_q() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 "$@"; }

# Objects of an older layout (made by the superuser) pass to the database's owner.
HAND_OVER_SQL="${HAND_OVER_SQL:-$(dirname "$0")/hand-over-to-owner.sql}"

# Every password first: a missing one stops the run before anything changes.
for svc in $MISP_SERVICES; do
  var="MISP_PG_${svc^^}_PASSWORD"
  [ -n "${!var:-}" ] || { echo "postgres-init: set $var (e.g. openssl rand -hex 24)" >&2; exit 1; }
done

psql_q -d template1 -c "CREATE EXTENSION IF NOT EXISTS pg_trgm"
for svc in $MISP_SERVICES; do
  var="MISP_PG_${svc^^}_PASSWORD"
  # psql quotes the values (:'x' a literal, :"x" an identifier); the password comes from the
  # environment (\getenv), never from a command line.
  MISP_PG_PASSWORD="${!var}" psql_q -d postgres -v role="misp_$svc" <<'SQL'
\getenv password MISP_PG_PASSWORD
SET password_encryption = 'scram-sha-256';
SELECT format('CREATE ROLE %I LOGIN', :'role')
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
ALTER ROLE :"role" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'password';
SELECT format('CREATE DATABASE %I OWNER %I', :'role', :'role')
  WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'role') \gexec
ALTER DATABASE :"role" OWNER TO :"role";
REVOKE ALL ON DATABASE :"role" FROM PUBLIC;
SQL
  psql_q -d "misp_$svc" -c "CREATE EXTENSION IF NOT EXISTS pg_trgm"
  psql_q -d "misp_$svc" -f "$HAND_OVER_SQL"
done
echo "postgres-init: roles and databases of $MISP_SERVICES are ready"
