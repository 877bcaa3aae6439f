#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft) from the Maven Central jars of deploy/kafka/pom.xml.
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

ready() { "$VENV_PY" "$ROOT/deploy/local/kafka_ready.py" --bootstrap "$BOOTSTRAP" "$@"; }

start() {
  require_venv
  ensure_jars
  local java pid
  java="$(find_java)"
  mkdir -p "$KSTATE/data"
  if pid_alive "$KPID"; then
    ready --timeout 120 --pid "$(cat "$KPID")" || { tail_log "$KLOG"; die "Kafka runs but does not answer"; }
    note "kafka: ready on $BOOTSTRAP"
    return 0
  fi
  rm -f "$KPID"
  for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    ! port_in_use "$p" || die "port $p is already taken by another process"
  done
  sed "s#@DATA_DIR@#$KSTATE/data#" "$KDIR/server.properties" > "$KSTATE/server.properties"
  ensure_cluster_id "$KSTATE/cluster.id"
  # shellcheck disable=SC2046
  "$java" $(jvm_opts) -cp "$LIBS/*" kafka.tools.StorageTool format \
    -t "$(cat "$KSTATE/cluster.id")" -c "$KSTATE/server.properties" --ignore-formatted \
    >>"$KLOG" 2>&1 </dev/null || { tail_log "$KLOG"; die "kafka storage format failed"; }
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
  note "kafka: ready on $BOOTSTRAP"
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
