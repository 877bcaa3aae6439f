#!/usr/bin/env bash
# The gateway: nginx with a config rendered from deploy/gateway/routes.tsv into .local/nginx,
# listening on 127.0.0.1:8080; logs in .local/logs/gateway-*.log.
# usage: gateway.sh start|stop|reload|status
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NDIR="$STATE/nginx"
NCONF="$NDIR/nginx.conf"
NPID="$NDIR/nginx.pid"
NERR="$LOGS/gateway-error.log"

NGINX="$(command -v nginx || true)"
[ -n "$NGINX" ] || { [ -x /usr/sbin/nginx ] && NGINX=/usr/sbin/nginx; } || die "nginx not installed (run: make install)"

py() { if [ -x "$VENV_PY" ]; then "$VENV_PY" "$@"; else python3 "$@"; fi; }

render() {
  local user_args=() d
  mkdir -p "$NDIR/tmp"
  for d in client_body proxy fastcgi uwsgi scgi; do mkdir -p "$NDIR/tmp/$d"; done
  if [ "$(id -u)" -eq 0 ]; then
    # workers must not run as root; they only need the temp directories
    local wuser=www-data
    id "$wuser" >/dev/null 2>&1 || wuser=nobody
    chown -R "$wuser" "$NDIR/tmp"
    grant_traverse "$wuser" "$NDIR/tmp" || echo "warning: $wuser cannot reach $NDIR/tmp" >&2
    user_args=(--user "$wuser")
  fi
  py "$ROOT/deploy/gateway/render.py" --mode local --state-dir "$STATE" \
    --listen "127.0.0.1:$GATEWAY_PORT" "${user_args[@]}" --out "$NCONF.new"
  if ! "$NGINX" -t -q -e "$NERR" -p "$NDIR" -c "$NCONF.new" >>"$NERR" 2>&1; then
    tail_log "$NERR" 20
    die "the rendered nginx config is invalid (see $NCONF.new)"
  fi
  mv "$NCONF.new" "$NCONF"
}

running() { pid_alive "$NPID"; }

start() {
  render
  if running; then
    kill -HUP "$(cat "$NPID")"
    return 0
  fi
  ! port_in_use "$GATEWAY_PORT" || die "port $GATEWAY_PORT is already taken by another process"
  # nginx daemonizes itself (its master detaches and writes the pid file); keep our stdio out of it
  setsid "$NGINX" -e "$NERR" -p "$NDIR" -c "$NCONF" </dev/null >>"$NERR" 2>&1 \
    || { tail_log "$NERR" 20; die "nginx did not start"; }
  local i
  for ((i = 0; i < 50; i++)); do
    running && port_in_use "$GATEWAY_PORT" && { note "gateway: http://127.0.0.1:$GATEWAY_PORT"; return 0; }
    sleep 0.1
  done
  tail_log "$NERR" 20
  die "nginx did not come up on port $GATEWAY_PORT"
}

stop() {
  stop_pidfile "$NPID" nginx 20
  note "gateway: stopped"
}

reload() {
  if running; then
    render
    kill -HUP "$(cat "$NPID")"
  else
    start
  fi
}

status() {
  if running; then
    echo "gateway: running on http://127.0.0.1:$GATEWAY_PORT (pid $(cat "$NPID"))"
  else
    echo "gateway: stopped"
    return 3
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  reload) reload ;;
  status) status ;;
  *) echo "usage: $0 start|stop|reload|status" >&2; exit 2 ;;
esac
