#!/usr/bin/env bash
# Everything, from a fresh machine: install what is missing, start PostgreSQL, Kafka, the
# gateway and the services, wait until all are ready, print the gateway's URLs and the CA that
# HTTPS clients trust.
# usage: up.sh [infra]   (infra: stop after PostgreSQL, Kafka and the gateway)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
. "$HERE/lib.sh"

bash "$HERE/install.sh"
bash "$HERE/postgres.sh" start
bash "$HERE/kafka.sh" start
bash "$HERE/gateway.sh" start
[ "${1:-}" = infra ] && exit 0
bash "$HERE/services.sh" start
bash "$HERE/mailcatcher.sh" start
url="$(bash "$HERE/wait-ready.sh")"
echo "gateway: $url"
echo "gateway (HTTPS): https://127.0.0.1:$GATEWAY_TLS_PORT, CA: $TLS_DIR/ca.pem"
echo "  PyMISP(\"https://127.0.0.1:$GATEWAY_TLS_PORT\", key, ssl=\"$TLS_DIR/ca.pem\"); curl --cacert $TLS_DIR/ca.pem"
# identity writes the key once organisation 1 is known (its first run): give it a moment.
for _ in $(seq 1 100); do [ -s "$STATE/admin.authkey" ] && break; sleep 0.2; done
if [ -s "$STATE/admin.authkey" ]; then
  echo "site admin authkey: $(cat "$STATE/admin.authkey") (kept in .local/admin.authkey; rotate: make admin-key)"
fi
# The site admin's first password (a temporary one, to be changed at the first login in the
# console); set once, while the admin has none.
if [ -s "$STATE/admin.authkey" ]; then
  (load_env; "$VENV_PY" -m identity admin-password --first) >/dev/null 2>>"$LOGS/identity-admin-password.log" || true
fi
if [ -s "$STATE/admin.password" ]; then
  echo "console: $url/ (site admin admin@admin.test, first password: $(cat "$STATE/admin.password"), to be changed at the first login; kept in .local/admin.password; a new one: make admin-password)"
fi
