# Shared helpers for the deploy/local scripts. Source it; do not run it.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="$ROOT/.local"
LOGS="$STATE/logs"
VENV_PY="$ROOT/.venv/bin/python"

# services and their API ports (the api role reads <SERVICE>_HTTP_PORT): deploy/services.tsv
SERVICES=()
declare -A SERVICE_PORT=()
while read -r _name _port _; do
  case "$_name" in '' | '#'*) continue ;; esac
  SERVICES+=("$_name")
  SERVICE_PORT[$_name]="$_port"
done < "$ROOT/deploy/services.tsv"
unset _name _port
ROLES=(api relay consume)
# The profile (MISP_PROFILE): `full`, a process per role and the replicas of
# deploy/replicas.tsv; `small`, one process per service (`python -m <service> all`), no replicas.
PROFILE="${MISP_PROFILE:-full}"
case "$PROFILE" in full | small) ;; *) echo "MISP_PROFILE is full or small, not '$PROFILE'" >&2; exit 2 ;; esac
REPLICAS_TSV="$ROOT/deploy/replicas.tsv"
[ "$PROFILE" = small ] && REPLICAS_TSV=/dev/null

PG_PORT=55432
PG_DATABASES=()
for _svc in "${SERVICES[@]}"; do PG_DATABASES+=("misp_$_svc"); done
unset _svc
KAFKA_PORT=9092
KAFKA_CONTROLLER_PORT=9093
GATEWAY_PORT=8080
# HTTPS, with a certificate of the local CA in $TLS_DIR (deploy/local/tls.py, made once)
GATEWAY_TLS_PORT=8443
TLS_DIR="$STATE/tls"

# tools that a non-login PATH may lack (runuser, nginx; a uv installed with pip --user)
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin:$HOME/.local/bin"

mkdir -p "$LOGS"

die() { echo "error: $*" >&2; exit 1; }
note() { [ -z "${VERBOSE:-}" ] || echo "$*"; }

# show the last lines of a log file on stderr (used when something fails)
tail_log() { [ -f "$1" ] && { echo "---- last lines of $1 ----" >&2; tail -n "${2:-40}" "$1" >&2; }; return 0; }

# pid_alive <pidfile>: the process named in the pid file exists
pid_alive() {
  local f="$1" pid
  [ -s "$f" ] || return 1
  pid="$(head -n 1 "$f" | tr -dc '0-9')"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# stop_pidfile <pidfile> <name> [timeout seconds]: TERM, wait, then KILL
stop_pidfile() {
  local f="$1" name="$2" timeout="${3:-30}" pid i
  pid_alive "$f" || { rm -f "$f"; return 0; }
  pid="$(head -n 1 "$f" | tr -dc '0-9')"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout * 5; i++)); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$f"; return 0; }
    sleep 0.2
  done
  echo "warning: $name (pid $pid) did not stop in ${timeout}s, sending KILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  rm -f "$f"
}

# port_in_use <port>: something listens on 127.0.0.1:<port>
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# pg_password <role>: the role's PostgreSQL password, generated once into .local/secrets/pg/
pg_password() {
  local f="$STATE/secrets/pg/$1"
  if [ ! -s "$f" ]; then
    (umask 077; mkdir -p "$STATE/secrets/pg"; od -An -tx1 -N24 /dev/urandom | tr -d ' \n' > "$f")
  fi
  cat "$f"
}

# kafka_password <principal>: the principal's Kafka (SCRAM) password, generated once into
# .local/secrets/kafka/ (admin: the broker's super user, for tests and tools; misp_<service>)
kafka_password() {
  local f="$STATE/secrets/kafka/$1"
  if [ ! -s "$f" ]; then
    (umask 077; mkdir -p "$STATE/secrets/kafka"; od -An -tx1 -N24 /dev/urandom | tr -d ' \n' > "$f")
  fi
  cat "$f"
}

# service_db_url <service>: the URL a service's processes use, as its own role on its database
service_db_url() {
  echo "postgresql+psycopg://misp_$1:$(pg_password "misp_$1")@127.0.0.1:$PG_PORT/misp_$1"
}

# The sourceable environment file (tests and tools: PostgreSQL's superuser, Kafka's admin; each
# service's processes get their own credentials instead, render_supervisor.py); rewritten when it
# differs, from the pepper and passwords generated once and kept.
ensure_env() {
  mkdir -p "$STATE"
  if [ ! -s "$STATE/pepper" ]; then
    (umask 077; od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$STATE/pepper")
  fi
  local tmp="$STATE/env.tmp.$$"
  (
    umask 077
    cat > "$tmp" <<ENV
# Written by deploy/local. Source it: set -a; . .local/env; set +a
export MISP_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT
export MISP_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT
export MISP_KAFKA_SASL_MECHANISM=SCRAM-SHA-512
export MISP_KAFKA_USERNAME=admin
export MISP_KAFKA_PASSWORD=$(kafka_password admin)
export MISP_PG_URL=postgresql+psycopg://postgres:$(pg_password postgres)@127.0.0.1:$PG_PORT
export MISP_PEPPER=$(cat "$STATE/pepper")
export MISP_GATEWAY_URL=http://127.0.0.1:$GATEWAY_PORT
export MISP_GATEWAY_TLS_URL=https://127.0.0.1:$GATEWAY_TLS_PORT
export MISP_GATEWAY_CA_FILE=$TLS_DIR/ca.pem
export MISP_STATE_DIR=$STATE
export MISP_LOG_FORMAT=json
# The abuse detector's cool-down is short here (300 s by default): a developer, and the suite,
# see a block end (audit/detector.py).
export AUDIT_ABUSE_BLOCK_S=15
ENV
  )
  if cmp -s "$tmp" "$STATE/env"; then rm -f "$tmp"; else mv "$tmp" "$STATE/env"; fi
}

load_env() {
  ensure_env
  set -a
  # shellcheck disable=SC1091
  . "$STATE/env"
  set +a
}

# grant_traverse <user> <dir>: let <user> reach <dir> (as root, where a parent directory such as
# a 0700 home would stop it: add o+x, the search bit only, to each parent that lacks it)
grant_traverse() {
  local user="$1" dir="$2" d
  [ "$(id -u)" -eq 0 ] || return 0
  runuser -u "$user" -- test -x "$dir" 2>/dev/null && return 0
  d="$dir"
  while [ "$d" != / ]; do
    d="$(dirname "$d")"
    if ! runuser -u "$user" -- test -x "$d" 2>/dev/null; then
      echo "note: chmod o+x $d (so that user $user can reach $dir)" >&2
      chmod o+x "$d"
    fi
  done
  runuser -u "$user" -- test -x "$dir" 2>/dev/null
}

require_venv() {
  [ -x "$VENV_PY" ] || die "no project venv at .venv (run: make install)"
}
