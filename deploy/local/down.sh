#!/usr/bin/env bash
# Stop the services, the gateway, Kafka and PostgreSQL; leave no process of ours running.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
. "$HERE/lib.sh"

rc=0
bash "$HERE/mailcatcher.sh" stop || rc=1
bash "$HERE/services.sh" stop || rc=1
bash "$HERE/gateway.sh" stop || rc=1
bash "$HERE/kafka.sh" stop || rc=1
bash "$HERE/postgres.sh" stop || rc=1

# last resort: anything still named in our pid files
for f in "$STATE/supervisor/supervisord.pid" "$STATE/nginx/nginx.pid" "$STATE/kafka/kafka.pid" \
         "$STATE/pg/data/postmaster.pid"; do
  if [ -s "$f" ]; then
    pid="$(head -1 "$f" | tr -dc '0-9')"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      echo "warning: pid $pid ($f) still running; killing it" >&2
      stop_pidfile "$f" "pid $pid" 10
      rc=1
    fi
  fi
done
exit "$rc"
