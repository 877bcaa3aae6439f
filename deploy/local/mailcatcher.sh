#!/usr/bin/env bash
# The local mail catcher (mailcatcher.py beside this script): an aiosmtpd sink on 127.0.0.1:1025
# (the mailer's default SMTP server) writing every message it receives to .local/mail/*.eml; log
# in .local/logs/mailcatcher.log.
# usage: mailcatcher.sh start|stop|status
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MAIL_PORT="${MAILER_SMTP_PORT:-1025}"
MAIL_DIR="$STATE/mail"
PIDFILE="$STATE/mailcatcher.pid"
LOG="$LOGS/mailcatcher.log"

start() {
  if pid_alive "$PIDFILE"; then
    echo "mail catcher: already running, mail in $MAIL_DIR"
    return 0
  fi
  port_in_use "$MAIL_PORT" && die "port $MAIL_PORT is taken: cannot start the mail catcher"
  mkdir -p "$MAIL_DIR" "$LOGS"
  nohup "$VENV_PY" "$ROOT/deploy/local/mailcatcher.py" --dir "$MAIL_DIR" --port "$MAIL_PORT" \
      >>"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 50); do
    port_in_use "$MAIL_PORT" && { echo "mail catcher: 127.0.0.1:$MAIL_PORT, mail in $MAIL_DIR"; return 0; }
    pid_alive "$PIDFILE" || break
    sleep 0.1
  done
  tail_log "$LOG" 20
  die "the mail catcher did not start"
}

case "${1:-}" in
  start) start ;;
  stop) stop_pidfile "$PIDFILE" "mail catcher" 10 ;;
  status) if pid_alive "$PIDFILE"; then echo "mail catcher: running, mail in $MAIL_DIR"; else echo "mail catcher: stopped"; exit 1; fi ;;
  *) die "usage: $0 start|stop|status" ;;
esac
