#!/usr/bin/env bash
# The Python services (api, relay, consume for each) under supervisord, config and socket in
# .local/supervisor, one log per program in .local/logs/<service>-<role>.log.
# start: runs `python -m <service> migrate` for each service first.
# usage: services.sh start|stop|status|restart
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SVDIR="$STATE/supervisor"
SVCONF="$SVDIR/supervisord.conf"
SVPID="$SVDIR/supervisord.pid"
SUPERVISORD="$ROOT/.venv/bin/supervisord"
SUPERVISORCTL="$ROOT/.venv/bin/supervisorctl"

ctl() { "$SUPERVISORCTL" -c "$SVCONF" "$@"; }

check_runnable() {
  local svc missing=()
  for svc in "${SERVICES[@]}"; do
    "$VENV_PY" -c "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('$svc.__main__') else 1)" \
      2>/dev/null || missing+=("$svc")
  done
  [ ${#missing[@]} -eq 0 ] \
    || die "not runnable yet (no '<service>/__main__.py' for python -m): ${missing[*]}"
}

migrate() {
  local svc log
  for svc in "${SERVICES[@]}"; do
    log="$LOGS/$svc-migrate.log"
    echo "---- $(date -Is) migrate" >>"$log"
    # as the service's own role, so that it owns what its migrations create
    if ! env -u MISP_PG_URL -u MISP_KAFKA_PASSWORD "${svc^^}_DATABASE_URL=$(service_db_url "$svc")" \
        timeout 300 "$VENV_PY" -m "$svc" migrate </dev/null >>"$log" 2>&1; then
      tail_log "$log"
      die "python -m $svc migrate failed (log: .local/logs/$svc-migrate.log)"
    fi
  done
}

render() {
  mkdir -p "$SVDIR"
  "$VENV_PY" "$ROOT/deploy/local/render_supervisor.py" --state-dir "$STATE" --python "$VENV_PY" \
    --pg-port "$PG_PORT" --profile "$PROFILE" --replicas "$REPLICAS_TSV"
}

start() {
  require_venv
  [ -x "$SUPERVISORD" ] || die "supervisord missing from .venv (run: make install)"
  load_env
  check_runnable
  migrate
  render
  if pid_alive "$SVPID"; then
    ctl reread >/dev/null
    ctl update >/dev/null
    ctl start all >/dev/null || true
  else
    rm -f "$SVDIR/supervisor.sock"
    # the programs inherit supervisord's environment: no superuser URL in it
    setsid env -u MISP_PG_URL -u MISP_KAFKA_PASSWORD "$SUPERVISORD" -c "$SVCONF" </dev/null >>"$LOGS/supervisord.log" 2>&1 \
      || { tail_log "$LOGS/supervisord.log"; die "supervisord did not start"; }
    local i
    for ((i = 0; i < 100; i++)); do
      pid_alive "$SVPID" && [ -S "$SVDIR/supervisor.sock" ] && break
      sleep 0.1
    done
    pid_alive "$SVPID" || { tail_log "$LOGS/supervisord.log"; die "supervisord did not start"; }
  fi
  note "services: started under supervisord (.venv/bin/supervisorctl -c .local/supervisor/supervisord.conf status)"
}

stop() {
  if pid_alive "$SVPID"; then
    local pid i
    pid="$(head -n 1 "$SVPID" | tr -dc '0-9')"
    # shutdown stops every program (TERM, then KILL after stopwaitsecs) and then supervisord
    ctl shutdown >/dev/null 2>&1 || true
    for ((i = 0; i < 300; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$pid" > "$SVPID"
      stop_pidfile "$SVPID" supervisord 20
    fi
  fi
  rm -f "$SVPID" "$SVDIR/supervisor.sock"
  note "services: stopped"
}

status() {
  if pid_alive "$SVPID"; then
    ctl status
  else
    echo "services: supervisord not running"
    return 3
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status|restart" >&2; exit 2 ;;
esac
