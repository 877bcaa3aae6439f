#!/usr/bin/env bash
# Wait until every service answers 200 on /ready, directly and through the gateway over HTTPS
# (/_svc/<service>/ready, checking the certificate with the local CA), then print the gateway's
# plain HTTP URL. Gives up after WAIT_READY_TIMEOUT (300) s: the ~30 processes of the full
# profile import their modules at once on this 2-core machine (about 2.5 min once under load).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TIMEOUT="${WAIT_READY_TIMEOUT:-300}"
GATEWAY="http://127.0.0.1:$GATEWAY_PORT"
GATEWAY_TLS="https://127.0.0.1:$GATEWAY_TLS_PORT"

urls=()
for svc in "${SERVICES[@]}"; do
  urls+=("http://127.0.0.1:${SERVICE_PORT[$svc]}/ready" "$GATEWAY_TLS/_svc/$svc/ready")
done
# The API replicas beyond each service's first: deploy/gateway/render.py reads replicas.tsv.
py() { if [ -x "$VENV_PY" ]; then "$VENV_PY" "$@"; else python3 "$@"; fi; }
replica_ports="$(py "$ROOT/deploy/gateway/render.py" --replicas "$REPLICAS_TSV" --api-replica-ports)" \
  || die "deploy/gateway/render.py could not read $REPLICAS_TSV"
for port in $replica_ports; do urls+=("http://127.0.0.1:$port/ready"); done

code() { curl -s -o /dev/null -m 5 --cacert "$TLS_DIR/ca.pem" -w '%{http_code}' "$1" 2>/dev/null || true; }

deadline=$((SECONDS + TIMEOUT))
pending=("${urls[@]}")
while :; do
  left=()
  for u in "${pending[@]}"; do
    [ "$(code "$u")" = 200 ] || left+=("$u")
  done
  [ ${#left[@]} -eq 0 ] && break
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "error: not ready after ${TIMEOUT}s:" >&2
    for u in "${left[@]}"; do echo "  $u -> $(code "$u")" >&2; done
    echo "logs: .local/logs/<service>-<role>.log; .venv/bin/supervisorctl -c .local/supervisor/supervisord.conf status" >&2
    exit 1
  fi
  pending=("${left[@]}")
  sleep 1
done
echo "$GATEWAY"
