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

# Objects of an older layout (made by the superuser) pass to the database's owner, the role
# named as the database.
REOWN_SQL="DO \$\$ DECLARE r record; BEGIN
  FOR r IN SELECT format('ALTER %s %s OWNER TO %I', CASE c.relkind WHEN 'S' THEN 'SEQUENCE'
             WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END,
             c.oid::regclass, current_database()) AS stmt
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
             AND pg_get_userbyid(c.relowner) = current_user
             AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid
                             AND d.deptype IN ('a', 'i', 'e'))
  UNION ALL SELECT format('ALTER FUNCTION %s OWNER TO %I', p.oid::regprocedure,
             current_database())
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) = current_user
             AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
  LOOP EXECUTE r.stmt; END LOOP; END \$\$"

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
  psql_q -d "misp_$svc" -c "$REOWN_SQL"
done
echo "postgres-init: roles and databases of $MISP_SERVICES are ready"
