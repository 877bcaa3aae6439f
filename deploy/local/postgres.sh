#!/usr/bin/env bash
# PostgreSQL cluster of the project under .local/pg (port 55432 on 127.0.0.1, durable settings).
# Over TCP every connection needs a password (SCRAM): the superuser's is for tests and tools only;
# each service logs in as its own role (misp_<service>, password in .local/secrets/pg/), which owns
# its database and may connect to no other. The unix socket (in the 0700 .local/pg) stays trust.
# usage: postgres.sh start|stop|status
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PGROOT="$STATE/pg"
PGDATA="$PGROOT/data"
PGLOG="$LOGS/postgres.log"

find_pgbin() {
  local v
  v="$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -1)"
  [ -n "$v" ] && [ -x "/usr/lib/postgresql/$v/bin/initdb" ] \
    || die "PostgreSQL is not installed (run: make install)"
  echo "/usr/lib/postgresql/$v/bin"
}
PGBIN="$(find_pgbin)"

# run a command as the cluster owner: user postgres when we are root, else ourselves
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

psql_q() { PGOPTIONS="-c client_min_messages=warning" "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGROOT" -p "$PG_PORT" -U postgres "$@"; }

running() { as_owner "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; }

init_cluster() {
  mkdir -p "$PGROOT"
  touch "$PGLOG"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres:postgres "$PGROOT" "$PGLOG"
    grant_traverse postgres "$PGROOT" || true
    runuser -u postgres -- test -w "$PGROOT" -a -w "$PGLOG" \
      || die "user postgres cannot write $PGROOT or $PGLOG"
  fi
  chmod 0700 "$PGROOT"
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    rm -rf "$PGDATA"
    as_owner "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
      >>"$PGLOG" 2>&1 || { tail_log "$PGLOG"; die "initdb failed"; }
    echo "include_if_exists = 'misp-local.conf'" >> "$PGDATA/postgresql.conf"
  fi
  # settings are rewritten on every start (cheap, and follows the checkout if it moves)
  as_owner tee "$PGDATA/misp-local.conf" >/dev/null <<CONF
# written by deploy/local/postgres.sh on each start
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PGROOT'
max_connections = 200
fsync = on
synchronous_commit = on
full_page_writes = on
shared_buffers = 256MB
logging_collector = off
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
password_encryption = 'scram-sha-256'
CONF
  as_owner tee "$PGDATA/pg_hba.conf" >/dev/null <<HBA
# written by deploy/local/postgres.sh: trust on the socket (in a 0700 directory) only; every TCP
# connection authenticates with SCRAM (no trust)
local   all   all                  trust
host    all   all   127.0.0.1/32   scram-sha-256
host    all   all   ::1/128        scram-sha-256
HBA
}


create_databases() {
  psql_q -d postgres -c "ALTER ROLE postgres PASSWORD '$(pg_password postgres)'" >/dev/null
  psql_q -d template1 -c "CREATE EXTENSION IF NOT EXISTS pg_trgm" >/dev/null
  local db
  for db in "${PG_DATABASES[@]}"; do
    # the role is named as its database: misp_<service>
    if [ -z "$(psql_q -d postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$db'")" ]; then
      psql_q -d postgres -c "CREATE ROLE $db LOGIN" >/dev/null
    fi
    psql_q -d postgres -c "ALTER ROLE $db LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '$(pg_password "$db")'" >/dev/null
    if [ -z "$(psql_q -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
      psql_q -d postgres -c "CREATE DATABASE $db OWNER $db" >/dev/null
    fi
    psql_q -d postgres -c "ALTER DATABASE $db OWNER TO $db" >/dev/null
    psql_q -d postgres -c "REVOKE ALL ON DATABASE $db FROM PUBLIC" >/dev/null
    psql_q -d "$db" -c "CREATE EXTENSION IF NOT EXISTS pg_trgm" >/dev/null
    psql_q -d "$db" -f "$ROOT/deploy/postgres/hand-over-to-owner.sql" >/dev/null
  done
}

start() {
  init_cluster
  if ! running; then
    if port_in_use "$PG_PORT"; then
      die "port $PG_PORT is already taken by another process"
    fi
    # pg_ctl detaches the postmaster (setsid) and sends its output to the log file
    as_owner "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGLOG" -w -t 60 start </dev/null >>"$PGLOG" 2>&1 \
      || { tail_log "$PGLOG"; die "PostgreSQL did not start"; }
  fi
  local i
  for ((i = 0; i < 60; i++)); do
    "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && break
    sleep 0.5
  done
  "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" || { tail_log "$PGLOG"; die "PostgreSQL not ready"; }
  create_databases
  note "postgres: ready on 127.0.0.1:$PG_PORT"
}

stop() {
  [ -s "$PGDATA/PG_VERSION" ] || return 0
  if running; then
    as_owner "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w -t 60 stop >>"$PGLOG" 2>&1 \
      || { as_owner "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate -w -t 30 stop >>"$PGLOG" 2>&1 || true; }
  fi
  ! running || die "PostgreSQL did not stop"
  note "postgres: stopped"
}

status() {
  if running && "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
    echo "postgres: running on 127.0.0.1:$PG_PORT"
  else
    echo "postgres: stopped"
    return 3
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
