#!/usr/bin/env bash
# kafka-init of docker-compose.yml (the image of deploy/docker/Dockerfile.kafka-init): the
# services' SCRAM users and ACLs, applied as the broker's admin in one JVM by
# deploy/kafka/KafkaSecurity.java, as the local stack applies them. The plan,
# deploy/docker/kafka-security.plan, is the local stack's (deploy/local/kafka_security.py, written
# by deploy/generate.py); its user lines name the variable that holds each password, which is
# put in here. The plan is authoritative for the principals it names: their other ACLs go.
# env: MISP_KAFKA_ADMIN_PASSWORD, MISP_KAFKA_<SERVICE>_PASSWORD for each user of the plan,
#      MISP_KAFKA_BOOTSTRAP_SERVERS (default kafka:9092), MISP_KAFKA_PLAN (default: the image's)
set -euo pipefail

PLAN="${MISP_KAFKA_PLAN:-/opt/misp/kafka-security.plan}"
BOOTSTRAP="${MISP_KAFKA_BOOTSTRAP_SERVERS:-kafka:9092}"
# Passwords become words of the plan and of a JAAS text, unquoted: hex (openssl rand -hex 24) is
# safe, and anything else is refused.
SAFE='^[A-Za-z0-9._-]+$'

umask 077
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

check() {  # check VARIABLE: set, and one word of safe characters
  local value="${!1:-}"
  [ -n "$value" ] || { echo "kafka-init: set $1" >&2; exit 1; }
  [[ "$value" =~ $SAFE ]] \
    || { echo "kafka-init: $1 may hold only letters, digits, '.', '_' and '-' (e.g. openssl rand -hex 24)" >&2; exit 1; }
}

check MISP_KAFKA_ADMIN_PASSWORD
printf '%s\n' "$MISP_KAFKA_ADMIN_PASSWORD" > "$WORK/admin"
while read -r kind name rest; do
  if [ "$kind" = user ]; then
    check "$rest"
    printf 'user %s %s\n' "$name" "${!rest}"
  elif [ -n "$kind" ] && [ "${kind:0:1}" != "#" ]; then
    printf '%s %s %s\n' "$kind" "$name" "$rest"
  fi
done < "$PLAN" > "$WORK/plan"

java -Xms64m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
  -Dlog4j2.configurationFile=/opt/kafka/config/tools-log4j2.yaml \
  -cp "/opt/kafka/libs/*:/opt/misp/classes" KafkaSecurity "$BOOTSTRAP" "$WORK/admin" "$WORK/plan"
