#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft) from the Maven Central jars of deploy/kafka/pom.xml, with
# SASL/SCRAM and ACLs: tests and tools connect as admin, each service as misp_<service>, the
# web console as misp_console (read-only: its live feeds).
# State in .local/kafka (data, server.properties, pid), log in .local/logs/kafka.log.
# usage: kafka.sh start|stop|status|jars|cluster-id FILE
#   (jars: only fetch the broker's jars with Maven; cluster-id: make or keep the id in FILE, print it)
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KDIR="$ROOT/deploy/kafka"
LIBS="$KDIR/target/kafka-libs"
KSTATE="$STATE/kafka"
KPID="$KSTATE/kafka.pid"
KLOG="$LOGS/kafka.log"
BOOTSTRAP="127.0.0.1:$KAFKA_PORT"

find_java() {
  local j
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then j="$JAVA_HOME/bin/java"; else j="$(command -v java || true)"; fi
  [ -n "$j" ] || die "java not found (Kafka 4.x needs Java 17+)"
  echo "$j"
}

ensure_jars() {
  if [ ! -f "$LIBS/.complete" ] || [ "$KDIR/pom.xml" -nt "$LIBS/.complete" ]; then
    command -v mvn >/dev/null || die "mvn not found (run: make install)"
    rm -rf "$LIBS"
    mvn -B -q -f "$KDIR/pom.xml" package >"$LOGS/kafka-maven.log" 2>&1 \
      || { tail_log "$LOGS/kafka-maven.log"; die "maven could not fetch the Kafka jars"; }
    ls "$LIBS"/kafka_2.13-*.jar >/dev/null 2>&1 || die "no kafka_2.13 jar in $LIBS"
    touch "$LIBS/.complete"
  fi
}

jvm_opts() {
  echo "-Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35"
  echo "-XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true"
  echo "-Dlog4j2.configurationFile=$KDIR/log4j2.properties"
}

# ensure_cluster_id <file>: a random base64url cluster id in <file>, kept across restarts. Kafka's
# own ids never begin with '-' (its argument parser takes such a value for an option: 1 in 64 of
# random ids); a stored one that does was never formatted, so a new one replaces it.
ensure_cluster_id() {
  while [ ! -s "$1" ] || [ "$(head -c 1 "$1")" = "-" ]; do
    head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' > "$1"
  done
}

# as the broker's admin (SCRAM): nobody else may list what it holds
as_admin() {
  MISP_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT MISP_KAFKA_SASL_MECHANISM=SCRAM-SHA-512 \
    MISP_KAFKA_USERNAME=admin MISP_KAFKA_PASSWORD="$(kafka_password admin)" "$@"
}

# A fresh log starts at offset 0: the positions the services recorded in the old one would make
# every read-your-writes wait end at once (consumer_position only moves forward), so they go.
forget_positions() {
  load_env
  local db
  for db in "${PG_DATABASES[@]}"; do
    "$VENV_PY" - "$MISP_PG_URL/$db" <<'PY' >>"$KLOG" 2>&1 || true
import sys

import psycopg

url = sys.argv[1].replace("postgresql+psycopg://", "postgresql://", 1)
with psycopg.connect(url) as conn:
    if conn.execute("SELECT to_regclass('consumer_position')").fetchone()[0]:
        conn.execute("DELETE FROM consumer_position")
PY
  done
}

ready() { as_admin "$VENV_PY" "$ROOT/deploy/local/kafka_ready.py" --bootstrap "$BOOTSTRAP" "$@"; }

# The service principals' SCRAM users and ACLs (deploy/local/kafka_security.py computes them from
# the topic catalogue; deploy/kafka/KafkaSecurity.java applies them in one JVM).
apply_security() {
  local svc java plan="$KSTATE/security.plan"
  java="$(find_java)"
  for svc in "${SERVICES[@]}"; do kafka_password "misp_$svc" >/dev/null; done
  kafka_password misp_console >/dev/null  # the web console's read-only principal
  as_admin "$VENV_PY" "$ROOT/deploy/local/kafka_security.py" --secrets "$STATE/secrets/kafka" \
    --out "$plan" >>"$KLOG" 2>&1 || { tail_log "$KLOG"; die "kafka security plan failed"; }
  # shellcheck disable=SC2046
  "$java" $(jvm_opts) -cp "$LIBS/*" "$KDIR/KafkaSecurity.java" "$BOOTSTRAP" \
    "$STATE/secrets/kafka/admin" "$plan" >>"$KLOG" 2>&1 </dev/null \
    || { tail_log "$KLOG"; die "kafka users and ACLs could not be applied"; }
}

start() {
  require_venv
  ensure_jars
  local java pid
  java="$(find_java)"
  mkdir -p "$KSTATE/data"
  if pid_alive "$KPID"; then
    ready --timeout 120 --pid "$(cat "$KPID")" || { tail_log "$KLOG"; die "Kafka runs but does not answer"; }
    apply_security
    note "kafka: ready on $BOOTSTRAP"
    return 0
  fi
  rm -f "$KPID"
  for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    ! port_in_use "$p" || die "port $p is already taken by another process"
  done
  local admin_pw
  admin_pw="$(kafka_password admin)"
  (umask 077; sed -e "s#@DATA_DIR@#$KSTATE/data#" -e "s#@PORT@#$KAFKA_PORT#g" \
    -e "s#@CONTROLLER_PORT@#$KAFKA_CONTROLLER_PORT#g" -e "s#@ADMIN_PASSWORD@#$admin_pw#g" \
    "$KDIR/server.properties" > "$KSTATE/server.properties")
  # The admin's SCRAM credential is written when the storage is formatted: data formatted
  # before the broker required authentication has none, and is local scratch: start afresh.
  if [ ! -e "$KSTATE/scram.v1" ] && [ -e "$KSTATE/data/meta.properties" ]; then
    note "kafka: the local data predates authentication: formatting it afresh"
    rm -rf "$KSTATE/data" "$KSTATE/cluster.id"
    mkdir -p "$KSTATE/data"
    forget_positions
  fi
  ensure_cluster_id "$KSTATE/cluster.id"
  # shellcheck disable=SC2046
  "$java" $(jvm_opts) -cp "$LIBS/*" kafka.tools.StorageTool format \
    -t "$(cat "$KSTATE/cluster.id")" -c "$KSTATE/server.properties" --ignore-formatted \
    --add-scram "SCRAM-SHA-512=[name=admin,password=$admin_pw]" \
    >>"$KLOG" 2>&1 </dev/null || { tail_log "$KLOG"; die "kafka storage format failed"; }
  touch "$KSTATE/scram.v1"
  # detached: own session, output to the log, the pid written by the process itself
  # shellcheck disable=SC2046
  setsid nohup bash -c 'echo $$ > "$0"; exec "$@"' "$KPID" \
    "$java" $(jvm_opts) -cp "$LIBS/*" kafka.Kafka "$KSTATE/server.properties" \
    >>"$KLOG" 2>&1 </dev/null &
  local i
  for ((i = 0; i < 50; i++)); do [ -s "$KPID" ] && break; sleep 0.1; done
  pid="$(cat "$KPID" 2>/dev/null || true)"
  [ -n "$pid" ] || die "kafka did not start"
  ready --timeout 120 --pid "$pid" || { tail_log "$KLOG"; die "Kafka did not become ready"; }
  apply_security
  note "kafka: ready on $BOOTSTRAP (SASL/SCRAM, ACLs per service)"
}

stop() {
  stop_pidfile "$KPID" kafka 60
  note "kafka: stopped"
}

status() {
  if pid_alive "$KPID" && ready --timeout 5 2>/dev/null; then
    echo "kafka: running on $BOOTSTRAP (pid $(cat "$KPID"))"
  else
    echo "kafka: stopped"
    return 3
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  jars) ensure_jars ;;
  cluster-id) ensure_cluster_id "${2:?usage: $0 cluster-id FILE}"; cat "$2" ;;
  *) echo "usage: $0 start|stop|status|jars|cluster-id FILE" >&2; exit 2 ;;
esac
