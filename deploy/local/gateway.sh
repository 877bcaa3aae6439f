#!/usr/bin/env bash
# The gateway: nginx with a config rendered from deploy/gateway/routes.tsv into .local/nginx,
# listening on http://127.0.0.1:8080 and https://127.0.0.1:8443; logs in .local/logs/gateway-*.log.
# HTTPS uses a server certificate of a local CA in .local/tls (deploy/local/tls.py: made once,
# the server certificate made again at a start or reload when it is close to expiry); clients
# trust .local/tls/ca.pem (curl --cacert, PyMISP ssl=).
# MISP_GATEWAY_HTTP_FROM_LOOPBACK: plain HTTP from 127.0.0.1 and ::1 is `allow`ed (the default:
# the tests and tools use http://127.0.0.1:8080) or `redirect`ed to HTTPS like everyone else's.
# Per-address rate limits (429): MISP_GATEWAY_LIMIT_LOGIN, _FORGOT, _REGISTER, _ANONYMOUS, with
# MISP_TRUSTED_PROXIES and MISP_ABUSE_EXEMPT_NETWORKS, read by render.py (docs/gateway.md).
# usage: gateway.sh start|stop|reload|status
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NDIR="$STATE/nginx"
NCONF="$NDIR/nginx.conf"
NPID="$NDIR/nginx.pid"
NERR="$LOGS/gateway-error.log"
HTTP_FROM_LOOPBACK="${MISP_GATEWAY_HTTP_FROM_LOOPBACK:-allow}"
case "$HTTP_FROM_LOOPBACK" in
  allow | redirect) ;;
  *) die "MISP_GATEWAY_HTTP_FROM_LOOPBACK is allow or redirect, not '$HTTP_FROM_LOOPBACK'" ;;
esac

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
  py "$ROOT/deploy/local/tls.py" --dir "$TLS_DIR" \
    || die "could not make the gateway's certificates in $TLS_DIR (make install?)"
  py "$ROOT/deploy/gateway/render.py" --mode local --state-dir "$STATE" \
    --listen "127.0.0.1:$GATEWAY_PORT" --tls-listen "127.0.0.1:$GATEWAY_TLS_PORT" \
    --tls-cert "$TLS_DIR/server.pem" --tls-key "$TLS_DIR/server.key" \
    --http-from-loopback "$HTTP_FROM_LOOPBACK" --replicas "$REPLICAS_TSV" "${user_args[@]}" \
    --out "$NCONF.new"
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
  local port
  for port in "$GATEWAY_PORT" "$GATEWAY_TLS_PORT"; do
    ! port_in_use "$port" || die "port $port is already taken by another process"
  done
  # nginx daemonizes itself (its master detaches and writes the pid file); keep our stdio out of it
  setsid "$NGINX" -e "$NERR" -p "$NDIR" -c "$NCONF" </dev/null >>"$NERR" 2>&1 \
    || { tail_log "$NERR" 20; die "nginx did not start"; }
  local i
  for ((i = 0; i < 50; i++)); do
    if running && port_in_use "$GATEWAY_PORT" && port_in_use "$GATEWAY_TLS_PORT"; then
      note "gateway: http://127.0.0.1:$GATEWAY_PORT https://127.0.0.1:$GATEWAY_TLS_PORT"
      return 0
    fi
    sleep 0.1
  done
  tail_log "$NERR" 20
  die "nginx did not come up on ports $GATEWAY_PORT and $GATEWAY_TLS_PORT"
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
    echo "gateway: running on http://127.0.0.1:$GATEWAY_PORT and https://127.0.0.1:$GATEWAY_TLS_PORT (pid $(cat "$NPID"))"
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
