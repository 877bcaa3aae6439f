#!/usr/bin/env bash
# The broker of docker-compose.yml, in the apache/kafka image: the local stack's template
# (deploy/kafka/server.properties, mounted at /opt/misp/server.properties.in) with the container's
# data directory and the admin's password, clients on SASL_PLAINTEXT://kafka:9092 with
# SCRAM-SHA-512, the controller (PLAIN, admin only) on the loopback, KRaft's StandardAuthorizer
# with `admin` its only super user. The admin's SCRAM credential is written when the storage is
# formatted; the services' users and ACLs are kafka-init's (deploy/docker/kafka-init.sh).
set -euo pipefail

PASSWORD="${MISP_KAFKA_ADMIN_PASSWORD:?set MISP_KAFKA_ADMIN_PASSWORD}"
CLUSTER="${CLUSTER_ID:?set CLUSTER_ID}"
# The image's paths (variables for tests/deploy/test_trust_in_deployments.py, which runs this
# script with stand-ins for Kafka's tools).
KAFKA="${MISP_KAFKA_HOME:-/opt/kafka}"
TEMPLATE="${MISP_KAFKA_TEMPLATE:-/opt/misp/server.properties.in}"
DATA="${MISP_KAFKA_DATA:-/var/lib/kafka/data}"
CONF_DIR="${MISP_KAFKA_CONF_DIR:-/tmp/misp-kafka}"
# It goes into sed, JAAS and SCRAM texts unquoted: hex (openssl rand -hex 24) is safe.
[[ "$PASSWORD" =~ ^[A-Za-z0-9._-]+$ ]] \
  || { echo "kafka: MISP_KAFKA_ADMIN_PASSWORD may hold only letters, digits, '.', '_' and '-' (e.g. openssl rand -hex 24)" >&2; exit 1; }

umask 077
mkdir -p "$CONF_DIR"
{
  sed -e "s#@DATA_DIR@#$DATA#" -e "s#@PORT@#9092#g" -e "s#@CONTROLLER_PORT@#9093#g" \
    -e "s#@ADMIN_PASSWORD@#$PASSWORD#g" "$TEMPLATE"
  # The last value of a key wins: clients reach the broker on the compose network.
  echo "listeners=SASL_PLAINTEXT://:9092,CONTROLLER://127.0.0.1:9093"
  echo "advertised.listeners=SASL_PLAINTEXT://kafka:9092"
} > "$CONF_DIR/server.properties"
# For the healthcheck (and an operator's kafka-*.sh --command-config): the admin's client settings.
cat > "$CONF_DIR/admin.properties" <<PROPS
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$PASSWORD";
PROPS

mkdir -p "$DATA"
# A volume formatted before the broker required SCRAM holds no credential for the admin, and
# none can be added to it: say so rather than start a broker nobody may use.
MARK="$DATA/misp-scram.v1"
if [ -e "$DATA/meta.properties" ] && [ ! -e "$MARK" ]; then
  echo "kafka: $DATA was formatted before the broker required SASL/SCRAM and has no admin credential." >&2
  echo "kafka: remove the volume (docker compose down && docker volume rm <project>_kafkadata) and start again; see README.md, With Docker." >&2
  exit 1
fi
"$KAFKA/bin/kafka-storage.sh" format -t "$CLUSTER" -c "$CONF_DIR/server.properties" \
  --ignore-formatted --add-scram "SCRAM-SHA-512=[name=admin,password=$PASSWORD]"
touch "$MARK"
exec "$KAFKA/bin/kafka-server-start.sh" "$CONF_DIR/server.properties"
