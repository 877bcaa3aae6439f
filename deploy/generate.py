#!/usr/bin/env python3
"""Generate the container descriptions of the topology from deploy/services.tsv (stdlib only).

Writes (all committed; `--check` fails when one is out of date, a test runs it):
  docker-compose.yml                    PostgreSQL, Kafka, the gateway, every service role and
                                        the workers and schedulers of deploy/programs.tsv
  deploy/gateway/nginx.container.conf   the gateway for containers (render.py --mode container)
  deploy/k8s/services.yaml              a Deployment per service role and per program of
                                        deploy/programs.tsv, a Service per api; the web
                                        console's Deployment and Service
  deploy/k8s/gateway.yaml               the gateway: ConfigMap, Deployment, Service
  deploy/docker/kafka-security.plan     the services' Kafka users and ACLs for compose's
                                        kafka-init: the local stack's plan
                                        (deploy/local/kafka_security.py), each user's password
                                        named by the variable that holds it

The plan needs the project's packages (the topic catalogue, each service's consumers): without
them the script runs itself again with .venv/bin/python.

usage: deploy/generate.py [--check]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ROLES = ("api", "relay", "consume")
IMAGE = "misp-admin-plane:local"
# What compose says when a secret is missing (its `${VAR:?message}`: it refuses to start).
PEPPER_HINT = "set MISP_PEPPER to 64 random hex characters, e.g. openssl rand -hex 32"
PG_HINT = "set POSTGRES_PASSWORD, e.g. openssl rand -hex 24"
KAFKA_ADMIN_VAR = "MISP_KAFKA_ADMIN_PASSWORD"
KAFKA_ADMIN_HINT = f"set {KAFKA_ADMIN_VAR} (the broker's admin), e.g. openssl rand -hex 24"
KAFKA_PLAN = HERE / "docker" / "kafka-security.plan"
K8S_NAMESPACE = "misp"
K8S_IMAGE = "misp-admin-plane:latest"


def pg_password_var(svc: str) -> str:
    """The host variable holding the password of the service's PostgreSQL role (compose)."""
    return f"MISP_PG_{svc.upper()}_PASSWORD"


def kafka_password_var(svc: str) -> str:
    """The host variable holding the password of the service's Kafka principal (compose)."""
    return f"MISP_KAFKA_{svc.upper()}_PASSWORD"


def k8s_credentials(svc: str) -> str:
    """The Kubernetes Secret of the service's own credentials: <SERVICE>_DATABASE_URL (its role
    on its database), MISP_KAFKA_USERNAME and MISP_KAFKA_PASSWORD (its principal)."""
    return f"misp-{svc}-credentials"


@dataclass(frozen=True)
class KeyFile:
    """A key the processes of some roles of a service read from a file: mounted read-only from a
    compose secret (a host file) or a Kubernetes Secret, its path in the setting `variable`."""

    service: str
    roles: tuple[str, ...]  # the first argument of `python -m <service>` of the readers
    variable: str
    secret: str  # the Kubernetes Secret, and the compose secret (misp- dropped, `_` for `-`)
    key: str  # the file's name in the Kubernetes Secret
    hint: str

    @property
    def compose_secret(self) -> str:
        return self.secret.removeprefix("misp-").replace("-", "_")

    @property
    def host_variable(self) -> str:
        """The host variable naming the file compose mounts."""
        return f"MISP_{self.compose_secret.upper()}_FILE"

    @property
    def compose_path(self) -> str:
        return f"/run/secrets/{self.compose_secret}"

    @property
    def k8s_dir(self) -> str:
        return f"/etc/misp/{self.secret.removeprefix('misp-')}"

    @property
    def k8s_path(self) -> str:
        return f"{self.k8s_dir}/{self.key}"


# The audit signs with one key in every process that signs, and its API verifies with the
# published public half; every mailer process that renders mails or serves /gpg.asc signs with
# the instance's OpenPGP key. Production refuses to start without them (the services' settings).
KEY_FILES = (
    KeyFile("audit", ("consume", "worker"), "AUDIT_SIGNING_KEY_PATH", "misp-audit-signing-key",
            "signing.key", "the audit's Ed25519 signing key (PEM), e.g. openssl genpkey "
            "-algorithm ed25519"),
    KeyFile("audit", ("api",), "AUDIT_VERIFY_KEY_PATH", "misp-audit-verify-key", "verify.pem",
            "the audit's public key (PEM), e.g. openssl pkey -pubout"),
    KeyFile("mailer", ("api", "consume", "worker"), "MAILER_GNUPG_INSTANCE_KEY_FILE",
            "misp-mailer-instance-key", "instance-key.asc",
            "the mailer's OpenPGP secret key, e.g. gpg --armor --export-secret-keys"),
)


def key_files(svc: str, role: str) -> list[KeyFile]:
    return [k for k in KEY_FILES if k.service == svc and role in k.roles]


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


render = _load("gateway_render", HERE / "gateway" / "render.py")


# The gateway's certificate and key (PEM), provided: compose mounts the host files named by these
# variables as secrets, Kubernetes the TLS Secret GATEWAY_TLS_SECRET (tls.crt, tls.key), both
# where the container config reads them (render.CONTAINER_TLS_CERT and _KEY).
GATEWAY_TLS_FILES = (
    ("gateway_tls_cert", "MISP_GATEWAY_TLS_CERT_FILE", render.CONTAINER_TLS_CERT,
     "the gateway's certificate chain (PEM) for the name clients use"),
    ("gateway_tls_key", "MISP_GATEWAY_TLS_KEY_FILE", render.CONTAINER_TLS_KEY,
     "that certificate's private key (PEM)"),
)
GATEWAY_TLS_SECRET = "misp-gateway-tls"
# Where clients reach HTTPS, so where plain HTTP is redirected: compose publishes 8443, the
# Kubernetes Service answers HTTPS on 443.
COMPOSE_HTTPS_PORT = 8443
# Compose's network: the gateway at a fixed address outside the range Docker hands out, and the
# services trust that address alone as their proxy (MISP_TRUSTED_PROXIES). Not the whole subnet:
# its first address is the bridge's, the source docker-proxy gives the connections it relays to
# a published port, and a trusted one could say any X-Forwarded-For. Outside Docker's default
# pools (172.17-31/16, 192.168/16), so no network Docker made itself overlaps it.
COMPOSE_SUBNET = "10.203.97.0/24"
COMPOSE_DYNAMIC_RANGE = "10.203.97.128/25"
COMPOSE_GATEWAY_ADDRESS = "10.203.97.10"
K8S_HTTPS_PORT = 443
# Kubernetes' pod network, as deploy/k8s/config.yaml's MISP_TRUSTED_PROXIES has it (a test checks
# they agree): the gateway believes the console's X-Forwarded-For from it.
K8S_POD_NETWORK = "10.244.0.0/16"

# The web console (services/console): one stateless HTTP role, no database, no Kafka principal,
# no pepper. It calls MISP's API as the browser's user through the gateway, over HTTPS (the
# gateway redirects all plain HTTP in containers), with the gateway's own certificate as its
# trust anchor (CONSOLE_GATEWAY_CA, the certificate file alone, not its key) and the name that
# certificate is for (CONSOLE_GATEWAY_TLS_NAME: the URL's host, `gateway`, is not it).
CONSOLE = render.CONSOLE
CONSOLE_PORT = render.CONSOLE_PORT
# The console forwards the browser's address (X-Forwarded-For) and the gateway must believe it,
# or every browser would share the console's address (the login limits, the abuse detector,
# the audit's ip). Compose: a fixed address outside Docker's range, the only one trusted
# besides loopback; Kubernetes: the pod network, as the services trust it.
COMPOSE_CONSOLE_ADDRESS = "10.203.97.11"
CONSOLE_TLS_NAME_VAR = "MISP_GATEWAY_TLS_NAME"
CONSOLE_TLS_NAME_HINT = (f"set {CONSOLE_TLS_NAME_VAR} to the name the gateway's certificate is "
                         "for (the name clients use, e.g. misp.example.org; localhost with "
                         "deploy/local/tls.py's)")
CONSOLE_CA_K8S_DIR = "/etc/misp/gateway-tls"


def _health_probe(port: int, path: str) -> str:
    return (
        "import sys, urllib.request; "
        f"sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=3)"
        ".status == 200 else 1)"
    )


def gateway_container_conf(services: dict[str, int], https_port: int = COMPOSE_HTTPS_PORT,
                           console_network: str = f"{COMPOSE_CONSOLE_ADDRESS}/32") -> str:
    """The container gateway: HTTPS with the provided certificate, plain HTTP redirected, and
    the console's X-Forwarded-For believed from `console_network` (and loopback)."""
    locs = render.expand(render.load_routes(render.DEFAULT_ROUTES, services), services)
    tls = render.Tls(listen="8443", cert=render.CONTAINER_TLS_CERT, key=render.CONTAINER_TLS_KEY,
                     public_port=https_port, http_from_loopback=render.HTTP_REDIRECT)
    defaults = render.Abuse.defaults()
    abuse = render.Abuse(defaults.limits,
                         defaults.trusted_proxies + render.parse_cidrs(console_network),
                         defaults.exempt)
    return render.render(locs, services, mode="container", tls=tls, abuse=abuse)


def load_programs(path: Path) -> list[tuple[str, str, int, list[str]]]:
    """deploy/programs.tsv: (service, program, replicas, arguments of `python -m <service>`)."""
    out: list[tuple[str, str, int, list[str]]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            svc, name, replicas, args = line.split("\t")
            out.append((svc, name, int(replicas), args.split()))
    return out


PROGRAMS = load_programs(HERE / "programs.tsv")


def _ready_probe(port: int) -> str:
    return _health_probe(port, "/ready")


# ---------------------------------------------------------------------------------------------
# docker-compose.yml


def _hint(var: str, what: str) -> str:
    return f"${{{var}:?set {var} to {what}, e.g. openssl rand -hex 24}}"


def settings_peer_urls(services: dict[str, int]) -> dict[str, str]:
    """Where the settings service finds the others in compose and Kubernetes (`<svc>-api`, the
    API's port): their diagnostics (the report) and their OpenAPI documents (MISP's queryACL).
    Its defaults (127.0.0.1) are the local stack's."""
    diagnostics = {s: f"http://{s}-api:{p}/_svc/{s}/diagnostics" for s, p in services.items()}
    openapi = {s: f"http://{s}-api:{p}/api/v1/{s}/openapi"
               for s, p in services.items() if s != "settings"}
    return {"SETTINGS_DIAGNOSTICS_URLS": json.dumps(diagnostics, separators=(",", ":")),
            "SETTINGS_OPENAPI_URLS": json.dumps(openapi, separators=(",", ":"))}


def compose(services: dict[str, int]) -> str:
    o: list[str] = []
    w = o.append
    w("# Generated by deploy/generate.py from deploy/services.tsv: do not edit.")
    w("# The local topology in containers: PostgreSQL, a single-node Kafka (KRaft, no automatic")
    w("# topic creation), the nginx gateway (the only published ports: HTTPS on :8443 with the")
    w("# certificate you provide, plain HTTP on :8080 redirected to it), and for every service a")
    w("# one-shot `migrate` plus its api, relay and consume processes; the web console, which")
    w("# holds no secret and calls the API through the gateway over HTTPS.")
    w("# Nothing trusts the network: each service logs in to PostgreSQL as its own role (owner of")
    w("# its database only, made by postgres-init) and to Kafka as its own SCRAM principal (whose")
    w("# ACLs kafka-init applies: deploy/docker/kafka-security.plan). No service holds the")
    w("# PostgreSQL superuser's or the Kafka admin's password. Every secret is required (compose")
    w("# refuses to start without one; README.md, With Docker, shows how to make them):")
    w("#   MISP_PEPPER, POSTGRES_PASSWORD, " + KAFKA_ADMIN_VAR + ",")
    names = [pg_password_var(s) for s in services] + [kafka_password_var(s) for s in services]
    for i in range(0, len(names), 3):
        w("#   " + ", ".join(names[i:i + 3]) + ",")
    w("#   " + ", ".join(k.host_variable for k in KEY_FILES) + ",")
    w("#   " + ", ".join(var for _, var, _, _ in GATEWAY_TLS_FILES) + " (files),")
    w(f"#   and {CONSOLE_TLS_NAME_VAR} (the name of the gateway's certificate, for the console)")
    w("#     docker compose up --build   (keep them: the data depends on them)")
    w("name: misp-admin-plane")
    w("")
    w("x-app: &app")
    w(f"  image: {IMAGE}")
    w("  build:")
    w("    context: .")
    w("    dockerfile: deploy/docker/Dockerfile")
    w("  restart: unless-stopped")
    w("")
    w("x-env: &env")
    w("  MISP_KAFKA_BOOTSTRAP_SERVERS: kafka:9092")
    w("  MISP_KAFKA_SECURITY_PROTOCOL: SASL_PLAINTEXT")
    w("  MISP_KAFKA_SASL_MECHANISM: SCRAM-SHA-512")
    # No default secret: compose refuses to start until they are set, and the containers run as
    # production (a development pepper is refused, misp_platform.config).
    w("  MISP_ENVIRONMENT: production")
    w("  MISP_PEPPER: ${MISP_PEPPER:?" + PEPPER_HINT + "}")
    w("  MISP_GATEWAY_URL: http://gateway:8080")
    w("  MISP_STATE_DIR: /var/lib/misp")
    w("  MISP_LOG_FORMAT: json")
    w(f"  MISP_TRUSTED_PROXIES: {COMPOSE_GATEWAY_ADDRESS}/32")
    # Each service's own credentials, in every container of the service and no other.
    for svc in services:
        upper = svc.upper()
        w("")
        w(f"x-{svc}-env: &{svc}-env")
        w("  <<: *env")
        w(f"  {upper}_DATABASE_URL: postgresql+psycopg://misp_{svc}:"
          + _hint(pg_password_var(svc), f"the password of the {svc} service's PostgreSQL role")
          + f"@postgres:5432/misp_{svc}")
        w(f"  MISP_KAFKA_USERNAME: misp_{svc}")
        w("  MISP_KAFKA_PASSWORD: "
          + _hint(kafka_password_var(svc), f"the password of the {svc} service's Kafka principal"))
        if svc == "settings":  # it asks every service for its diagnostics and its routes
            for name, value in settings_peer_urls(services).items():
                w(f"  {name}: '{value}'")
    w("")
    w("x-after-migrate: &after-migrate")
    w("  kafka:")
    w("    condition: service_healthy")
    w("  kafka-init:")
    w("    condition: service_completed_successfully")
    w("  postgres:")
    w("    condition: service_healthy")
    w("")
    w("services:")
    w("  postgres:")
    w("    image: postgres:15")
    w("    restart: unless-stopped")
    w("    command: [postgres, -c, max_connections=200, -c, fsync=on, -c, synchronous_commit=on]")
    w("    environment:")
    w("      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?" + PG_HINT + "}")
    w("      POSTGRES_HOST_AUTH_METHOD: scram-sha-256")
    w("    volumes:")
    w("      - pgdata:/var/lib/postgresql/data")
    w("    healthcheck:")
    w("      test: [CMD, pg_isready, -U, postgres]")
    w("      interval: 2s")
    w("      timeout: 3s")
    w("      retries: 30")
    w("")
    # At every `up`: the roles, their passwords (a new value rotates one), the databases they
    # own (also those an older version of this file made as the superuser's).
    w("  postgres-init:")
    w("    image: postgres:15")
    w('    restart: "no"')
    w("    command: [bash, /opt/misp/postgres-init.sh]")
    w("    environment:")
    w("      PGHOST: postgres")
    w("      PGUSER: postgres")
    w("      PGPASSWORD: ${POSTGRES_PASSWORD:?" + PG_HINT + "}")
    w(f"      MISP_SERVICES: {' '.join(services)}")
    for svc in services:
        w(f"      {pg_password_var(svc)}: "
          + _hint(pg_password_var(svc), f"the password of the {svc} service's PostgreSQL role"))
    w("    volumes:")
    w("      - ./deploy/docker/postgres-init.sh:/opt/misp/postgres-init.sh:ro")
    w("      - ./deploy/postgres/hand-over-to-owner.sql:/opt/misp/hand-over-to-owner.sql:ro")
    w("    depends_on:")
    w("      postgres:")
    w("        condition: service_healthy")
    w("")
    w("  kafka:")
    w("    image: apache/kafka:4.1.1")
    w("    restart: unless-stopped")
    # The local stack's broker configuration (deploy/kafka/server.properties) with the
    # container's addresses; the storage is formatted with the admin's SCRAM credential.
    w("    command: [bash, /opt/misp/kafka-start.sh]")
    w("    environment:")
    w("      CLUSTER_ID: ${KAFKA_CLUSTER_ID:-bWlzcC1hZG1pbi1wbGFuZQ}")
    w(f"      {KAFKA_ADMIN_VAR}: ${{{KAFKA_ADMIN_VAR}:?{KAFKA_ADMIN_HINT}}}")
    w("      KAFKA_HEAP_OPTS: -Xms256m -Xmx512m")
    w("    volumes:")
    w("      - kafkadata:/var/lib/kafka/data")
    w("      - ./deploy/kafka/server.properties:/opt/misp/server.properties.in:ro")
    w("      - ./deploy/docker/kafka-start.sh:/opt/misp/kafka-start.sh:ro")
    w("    healthcheck:")
    w(
        "      test: [CMD-SHELL, /opt/kafka/bin/kafka-broker-api-versions.sh"
        " --bootstrap-server localhost:9092"
        " --command-config /tmp/misp-kafka/admin.properties >/dev/null]"
    )
    w("      interval: 5s")
    w("      timeout: 10s")
    w("      retries: 30")
    w("      start_period: 10s")
    w("")
    # At every `up`: the services' SCRAM users and ACLs (deploy/docker/kafka-init.sh).
    w("  kafka-init:")
    w("    image: misp-kafka-init:local")
    w("    build:")
    w("      context: .")
    w("      dockerfile: deploy/docker/Dockerfile.kafka-init")
    w('    restart: "no"')
    w("    environment:")
    w("      MISP_KAFKA_BOOTSTRAP_SERVERS: kafka:9092")
    w(f"      {KAFKA_ADMIN_VAR}: ${{{KAFKA_ADMIN_VAR}:?{KAFKA_ADMIN_HINT}}}")
    for svc in services:
        w(f"      {kafka_password_var(svc)}: "
          + _hint(kafka_password_var(svc), f"the password of the {svc} service's Kafka principal"))
    w("    depends_on:")
    w("      kafka:")
    w("        condition: service_healthy")
    w("")
    w("  gateway:")
    w("    image: nginx:1.27")
    w("    restart: unless-stopped")
    w("    ports:")
    w('      - "8080:8080"')
    w(f'      - "{COMPOSE_HTTPS_PORT}:8443"')
    w("    volumes:")
    w("      - ./deploy/gateway/nginx.container.conf:/etc/nginx/nginx.conf:ro")
    w("    secrets:")
    for name, _var, target, _what in GATEWAY_TLS_FILES:
        w(f"      - source: {name}")
        w(f"        target: {target}")
    w("    networks:")
    w("      default:")
    w(f"        ipv4_address: {COMPOSE_GATEWAY_ADDRESS}")
    w("    depends_on:")
    for svc in services:
        w(f"      {svc}-api:")
        w("        condition: service_healthy")
    w(f"      {CONSOLE}:")
    w("        condition: service_healthy")
    w("")
    # The console: no database, no Kafka principal, no pepper, no state (not *env); the
    # gateway's certificate (not its key) is its trust anchor for the gateway.
    cert_secret = GATEWAY_TLS_FILES[0][0]
    w(f"  {CONSOLE}:")
    w("    <<: *app")
    w(f"    command: [python, -m, {CONSOLE}, api]")
    w("    environment:")
    w(f"      {CONSOLE.upper()}_HTTP_HOST: 0.0.0.0")
    w(f'      {CONSOLE.upper()}_HTTP_PORT: "{CONSOLE_PORT}"')
    w(f"      {CONSOLE.upper()}_GATEWAY_URL: https://gateway:{COMPOSE_HTTPS_PORT}")
    w(f"      {CONSOLE.upper()}_GATEWAY_CA: /run/secrets/{cert_secret}")
    w(f"      {CONSOLE.upper()}_GATEWAY_TLS_NAME: ${{{CONSOLE_TLS_NAME_VAR}:?"
      f"{CONSOLE_TLS_NAME_HINT}}}")
    w("      MISP_LOG_FORMAT: json")
    w(f"      MISP_TRUSTED_PROXIES: {COMPOSE_GATEWAY_ADDRESS}/32")
    w("    secrets:")
    w(f"      - {cert_secret}")
    w("    networks:")
    w("      default:")
    w(f"        ipv4_address: {COMPOSE_CONSOLE_ADDRESS}")
    w("    healthcheck:")
    w(f'      test: [CMD, python, -c, "{_health_probe(CONSOLE_PORT, "/console/health")}"]')
    w("      interval: 3s")
    w("      timeout: 5s")
    w("      retries: 40")
    w("      start_period: 5s")

    def keys(svc: str, role: str) -> tuple[list[str], list[str]]:
        """The environment lines and the `secrets:` block of a container's key files."""
        files = key_files(svc, role)
        env = [f"      {k.variable}: {k.compose_path}" for k in files]
        block = ["    secrets:", *(f"      - {k.compose_secret}" for k in files)] if files else []
        return env, block

    for svc, port in services.items():
        upper = svc.upper()
        w("")
        w(f"  {svc}-migrate:")
        w("    <<: *app")
        w('    restart: "no"')
        w(f"    command: [python, -m, {svc}, migrate]")
        w("    environment:")
        w(f"      <<: *{svc}-env")
        w("    volumes:")
        w(f"      - {svc}-state:/var/lib/misp")
        w("    depends_on:")
        w("      postgres:")
        w("        condition: service_healthy")
        w("      postgres-init:")
        w("        condition: service_completed_successfully")
        for role in ROLES:
            env, secrets = keys(svc, role)
            w("")
            w(f"  {svc}-{role}:")
            w("    <<: *app")
            w(f"    command: [python, -m, {svc}, {role}]")
            w("    environment:")
            w(f"      <<: *{svc}-env")
            w(f'      {upper}_HTTP_PORT: "{port}"')
            if role == "api":
                w(f"      {upper}_HTTP_HOST: 0.0.0.0")
            o.extend(env)
            w("    volumes:")
            w(f"      - {svc}-state:/var/lib/misp")
            o.extend(secrets)
            w("    depends_on:")
            w("      <<: *after-migrate")
            w(f"      {svc}-migrate:")
            w("        condition: service_completed_successfully")
            if role == "api":
                w("    healthcheck:")
                w(f'      test: [CMD, python, -c, "{_ready_probe(port)}"]')
                w("      interval: 3s")
                w("      timeout: 5s")
                w("      retries: 40")
                w("      start_period: 5s")
        for _, name, replicas, args in (p for p in PROGRAMS if p[0] == svc):
            env, secrets = keys(svc, args[0])
            w("")
            w(f"  {name}:")
            w("    <<: *app")
            w(f"    command: [python, -m, {svc}, {', '.join(args)}]")
            w("    environment:")
            w(f"      <<: *{svc}-env")
            w(f'      {upper}_HTTP_PORT: "{port}"')
            o.extend(env)
            w("    volumes:")
            w(f"      - {svc}-state:/var/lib/misp")
            o.extend(secrets)
            if replicas != 1:
                w("    deploy:")
                w(f"      replicas: {replicas}")
            w("    depends_on:")
            w("      <<: *after-migrate")
            w(f"      {svc}-migrate:")
            w("        condition: service_completed_successfully")
    w("")
    # Host files, mounted read-only at /run/secrets/<name> in the containers that read them.
    # Bind-mounted as they are: the image's user `misp` must be able to read them.
    w("secrets:")
    for k in KEY_FILES:
        w(f"  {k.compose_secret}:")
        w(f"    file: ${{{k.host_variable}:?set {k.host_variable} to the file of {k.hint}}}")
    for name, var, _target, what in GATEWAY_TLS_FILES:
        w(f"  {name}:")
        w(f"    file: ${{{var}:?set {var} to the file of {what}}}")
    w("")
    w("networks:")
    w("  default:")
    w("    ipam:")
    w("      config:")
    w(f"        - subnet: {COMPOSE_SUBNET}")
    w(f"          ip_range: {COMPOSE_DYNAMIC_RANGE}")
    w("")
    w("volumes:")
    w("  pgdata:")
    w("  kafkadata:")
    # One state volume per service, shared by all its containers and kept across restarts: the
    # mailer's GnuPG home and identity's admin key file live there.
    for svc in services:
        w(f"  {svc}-state:")
    return "\n".join(o) + "\n"


# ---------------------------------------------------------------------------------------------
# Kubernetes


def _k8s_env(svc: str, port: int, role: str, extra: dict[str, str] | None = None) -> list[str]:
    """The container's environment: the shared ConfigMap and Secret (the pepper), the service's
    own credentials, and where its key files are mounted."""
    upper = svc.upper()
    lines = [
        "          envFrom:",
        "            - configMapRef:",
        "                name: misp-env",
        "            - secretRef:",
        "                name: misp-secrets",
        "            - secretRef:",
        f"                name: {k8s_credentials(svc)}",
        "          env:",
        f"            - name: {upper}_HTTP_PORT",
        f'              value: "{port}"',
    ]
    if role in ("api", "migrate"):
        lines += [f"            - name: {upper}_HTTP_HOST", '              value: "0.0.0.0"']
    for k in key_files(svc, role):
        lines += [f"            - name: {k.variable}", f"              value: {k.k8s_path}"]
    for name, value in (extra or {}).items():
        lines += [f"            - name: {name}", f"              value: '{value}'"]
    return lines


def _k8s_key_mounts(svc: str, role: str) -> list[str]:
    files = key_files(svc, role)
    if not files:
        return []
    lines = ["          volumeMounts:"]
    for k in files:
        lines += [f"            - name: {k.secret}", f"              mountPath: {k.k8s_dir}",
                  "              readOnly: true"]
    return lines


def _k8s_key_volumes(svc: str, role: str) -> list[str]:
    files = key_files(svc, role)
    if not files:
        return []
    lines = ["      volumes:"]
    for k in files:
        lines += [
            f"        - name: {k.secret}",
            "          secret:",
            f"            secretName: {k.secret}",
            "            defaultMode: 0444",
            "            items:",
            f"              - key: {k.key}",
            f"                path: {k.key}",
        ]
    return lines


def k8s_services(services: dict[str, int]) -> str:
    docs: list[str] = []
    for svc, port in services.items():
        deployments = [(f"{svc}-{role}", role, 1, [role]) for role in ROLES]
        deployments += [(name, args[0], replicas, args)
                        for s, name, replicas, args in PROGRAMS if s == svc]
        for name, role, replicas, args in deployments:
            d = [
                "apiVersion: apps/v1",
                "kind: Deployment",
                "metadata:",
                f"  name: {name}",
                f"  namespace: {K8S_NAMESPACE}",
                "  labels:",
                "    app.kubernetes.io/part-of: misp-admin-plane",
                f"    app.kubernetes.io/name: {svc}",
                f"    app.kubernetes.io/component: {role}",
                "spec:",
                f"  replicas: {replicas}",
                "  selector:",
                "    matchLabels:",
                f"      app.kubernetes.io/name: {svc}",
                f"      app.kubernetes.io/component: {role}",
                "  template:",
                "    metadata:",
                "      labels:",
                "        app.kubernetes.io/part-of: misp-admin-plane",
                f"        app.kubernetes.io/name: {svc}",
                f"        app.kubernetes.io/component: {role}",
                f"        app.kubernetes.io/instance: {name}",
                "    spec:",
            ]
            if role == "api":
                d += [
                    "      initContainers:",
                    "        - name: migrate",
                    f"          image: {K8S_IMAGE}",
                    f"          args: [python, -m, {svc}, migrate]",
                    *_k8s_env(svc, port, "migrate"),
                ]
            d += [
                "      containers:",
                f"        - name: {role}",
                f"          image: {K8S_IMAGE}",
                f"          args: [python, -m, {svc}, {', '.join(args)}]",
                *_k8s_env(svc, port, role,
                          settings_peer_urls(services) if svc == "settings" else None),
                *_k8s_key_mounts(svc, role),
                "          resources:",
                "            requests: {cpu: 100m, memory: 128Mi}",
                "            limits: {memory: 512Mi}",
            ]
            if role == "api":
                d += [
                    "          ports:",
                    "            - name: http",
                    f"              containerPort: {port}",
                    "          readinessProbe:",
                    "            httpGet: {path: /ready, port: http}",
                    "            periodSeconds: 5",
                    "          livenessProbe:",
                    "            httpGet: {path: /health, port: http}",
                    "            periodSeconds: 10",
                ]
            d += _k8s_key_volumes(svc, role)
            docs.append("\n".join(d))
        docs.append(
            "\n".join(
                [
                    "apiVersion: v1",
                    "kind: Service",
                    "metadata:",
                    f"  name: {svc}-api",
                    f"  namespace: {K8S_NAMESPACE}",
                    "  labels:",
                    "    app.kubernetes.io/part-of: misp-admin-plane",
                    f"    app.kubernetes.io/name: {svc}",
                    "spec:",
                    "  selector:",
                    f"    app.kubernetes.io/name: {svc}",
                    "    app.kubernetes.io/component: api",
                    "  ports:",
                    "    - name: http",
                    f"      port: {port}",
                    "      targetPort: http",
                ]
            )
        )
    docs += k8s_console()
    head = "# Generated by deploy/generate.py from deploy/services.tsv: do not edit.\n"
    return head + "---\n" + "\n---\n".join(docs) + "\n"


def k8s_console() -> list[str]:
    """The web console: a stateless Deployment (2 replicas) and the Service `console` the
    gateway's config names. The shared ConfigMap (the pod network as trusted proxies, the log
    format) and nothing secret: no credentials Secret, not misp-secrets. It calls the gateway's
    HTTPS Service with the gateway's certificate (tls.crt of the TLS Secret, not its key) as
    its trust anchor, checked for the name in misp-env's MISP_GATEWAY_TLS_NAME (required: the
    pods do not start without it)."""
    upper = CONSOLE.upper()
    labels = [f"app.kubernetes.io/name: {CONSOLE}", "app.kubernetes.io/component: api"]
    deployment = [
        "apiVersion: apps/v1",
        "kind: Deployment",
        "metadata:",
        f"  name: {CONSOLE}",
        f"  namespace: {K8S_NAMESPACE}",
        "  labels:",
        "    app.kubernetes.io/part-of: misp-admin-plane",
        *(f"    {label}" for label in labels),
        "spec:",
        "  replicas: 2",
        "  selector:",
        "    matchLabels:",
        *(f"      {label}" for label in labels),
        "  template:",
        "    metadata:",
        "      labels:",
        "        app.kubernetes.io/part-of: misp-admin-plane",
        *(f"        {label}" for label in labels),
        f"        app.kubernetes.io/instance: {CONSOLE}",
        "    spec:",
        "      containers:",
        "        - name: api",
        f"          image: {K8S_IMAGE}",
        f"          args: [python, -m, {CONSOLE}, api]",
        "          envFrom:",
        "            - configMapRef:",
        "                name: misp-env",
        "          env:",
        f"            - name: {upper}_HTTP_HOST",
        '              value: "0.0.0.0"',
        f"            - name: {upper}_HTTP_PORT",
        f'              value: "{CONSOLE_PORT}"',
        f"            - name: {upper}_GATEWAY_URL",
        f"              value: https://gateway:{K8S_HTTPS_PORT}",
        f"            - name: {upper}_GATEWAY_CA",
        f"              value: {CONSOLE_CA_K8S_DIR}/tls.crt",
        f"            - name: {upper}_GATEWAY_TLS_NAME",
        "              valueFrom:",
        "                configMapKeyRef:",
        "                  name: misp-env",
        f"                  key: {CONSOLE_TLS_NAME_VAR}",
        "          volumeMounts:",
        f"            - name: {GATEWAY_TLS_SECRET}",
        f"              mountPath: {CONSOLE_CA_K8S_DIR}",
        "              readOnly: true",
        "          resources:",
        "            requests: {cpu: 100m, memory: 128Mi}",
        "            limits: {memory: 512Mi}",
        "          ports:",
        "            - name: http",
        f"              containerPort: {CONSOLE_PORT}",
        "          readinessProbe:",
        "            httpGet: {path: /console/health, port: http}",
        "            periodSeconds: 5",
        "          livenessProbe:",
        "            httpGet: {path: /console/health, port: http}",
        "            periodSeconds: 10",
        "      volumes:",
        f"        - name: {GATEWAY_TLS_SECRET}",
        "          secret:",
        f"            secretName: {GATEWAY_TLS_SECRET}",
        "            defaultMode: 0444",
        "            items:",
        "              - key: tls.crt",
        "                path: tls.crt",
    ]
    service = [
        "apiVersion: v1",
        "kind: Service",
        "metadata:",
        f"  name: {CONSOLE}",
        f"  namespace: {K8S_NAMESPACE}",
        "  labels:",
        "    app.kubernetes.io/part-of: misp-admin-plane",
        f"    app.kubernetes.io/name: {CONSOLE}",
        "spec:",
        "  selector:",
        *(f"    {label}" for label in labels),
        "  ports:",
        "    - name: http",
        f"      port: {CONSOLE_PORT}",
        "      targetPort: http",
    ]
    return ["\n".join(deployment), "\n".join(service)]


def k8s_gateway(services: dict[str, int]) -> str:
    conf = gateway_container_conf(services, https_port=K8S_HTTPS_PORT,
                                  console_network=K8S_POD_NETWORK)
    cm = render.k8s_configmap(conf, "gateway-nginx", K8S_NAMESPACE)
    cm = "\n".join(ln for ln in cm.splitlines() if not ln.startswith("#"))
    deployment = "\n".join(
        [
            "apiVersion: apps/v1",
            "kind: Deployment",
            "metadata:",
            "  name: gateway",
            f"  namespace: {K8S_NAMESPACE}",
            "  labels:",
            "    app.kubernetes.io/part-of: misp-admin-plane",
            "    app.kubernetes.io/name: gateway",
            "spec:",
            "  replicas: 1",
            "  selector:",
            "    matchLabels:",
            "      app.kubernetes.io/name: gateway",
            "  template:",
            "    metadata:",
            "      labels:",
            "        app.kubernetes.io/part-of: misp-admin-plane",
            "        app.kubernetes.io/name: gateway",
            "    spec:",
            "      containers:",
            "        - name: nginx",
            "          image: nginx:1.27",
            "          ports:",
            "            - name: http",
            "              containerPort: 8080",
            "            - name: https",
            "              containerPort: 8443",
            "          volumeMounts:",
            "            - name: conf",
            "              mountPath: /etc/nginx/nginx.conf",
            "              subPath: nginx.conf",
            "              readOnly: true",
            "            - name: tls",
            f"              mountPath: {render.CONTAINER_TLS_DIR}",
            "              readOnly: true",
            "          readinessProbe:",
            "            tcpSocket: {port: https}",
            "            periodSeconds: 5",
            "      volumes:",
            "        - name: conf",
            "          configMap:",
            "            name: gateway-nginx",
            "        - name: tls",
            "          secret:",
            f"            secretName: {GATEWAY_TLS_SECRET}",
            "            defaultMode: 0400",
            "            items:",
            "              - key: tls.crt",
            "                path: tls.crt",
            "              - key: tls.key",
            "                path: tls.key",
        ]
    )
    service = "\n".join(
        [
            "apiVersion: v1",
            "kind: Service",
            "metadata:",
            "  name: gateway",
            f"  namespace: {K8S_NAMESPACE}",
            "  labels:",
            "    app.kubernetes.io/part-of: misp-admin-plane",
            "    app.kubernetes.io/name: gateway",
            "spec:",
            "  selector:",
            "    app.kubernetes.io/name: gateway",
            "  ports:",
            "    - name: http",
            "      port: 8080",
            "      targetPort: http",
            "    - name: https",
            f"      port: {K8S_HTTPS_PORT}",
            "      targetPort: https",
        ]
    )
    head = (
        "# Generated by deploy/generate.py from deploy/gateway/routes.tsv: do not edit.\n"
        "# The gateway is the only entry point and ends TLS itself, with the TLS Secret "
        f"{GATEWAY_TLS_SECRET}\n"
        "# (deploy/k8s/README.md); plain HTTP is redirected to HTTPS on port "
        f"{K8S_HTTPS_PORT}. Expose it with a\n"
        "# LoadBalancer Service, or an Ingress that passes TLS through (or speaks HTTPS to it).\n"
    )
    return head + "---\n" + "\n---\n".join([cm, deployment, service]) + "\n"


# ---------------------------------------------------------------------------------------------
# The Kafka users and ACLs of compose's kafka-init


def kafka_plan(services: dict[str, int]) -> str:
    """The local stack's plan (deploy/local/kafka_security.py), each user's password named by
    the variable kafka-init reads it from."""
    security = _load("kafka_security", HERE / "local" / "kafka_security.py")
    if set(security.SERVICES) != set(services):
        raise SystemExit(f"deploy/services.tsv ({', '.join(services)}) and the topic catalogue "
                         f"({', '.join(security.SERVICES)}) name different services")
    lines = security.plan({s: kafka_password_var(s) for s in security.SERVICES})
    head = [
        "# Generated by deploy/generate.py from deploy/local/kafka_security.py: do not edit.",
        "# The services' Kafka users and ACLs, as the local stack has them, for kafka-init",
        "# (deploy/docker/kafka-init.sh puts each user's password, from the variable its line",
        "# names, and deploy/kafka/KafkaSecurity.java applies the plan).",
    ]
    return "\n".join(head + lines) + "\n"


def outputs() -> dict[Path, str]:
    services = render.load_services(render.DEFAULT_SERVICES)
    return {
        ROOT / "docker-compose.yml": compose(services),
        HERE / "gateway" / "nginx.container.conf": gateway_container_conf(services),
        HERE / "k8s" / "services.yaml": k8s_services(services),
        HERE / "k8s" / "gateway.yaml": k8s_gateway(services),
        KAFKA_PLAN: kafka_plan(services),
    }


def _with_project_packages() -> None:
    """The plan reads the topic catalogue and the services' consumers: without the project's
    packages, run again with the project's virtualenv."""
    if importlib.util.find_spec("misp_contracts") is not None:
        return
    venv = ROOT / ".venv"
    if (venv / "bin" / "python").exists() and Path(sys.prefix).resolve() != venv.resolve():
        os.execv(venv / "bin" / "python", [str(venv / "bin" / "python"), *sys.argv])
    raise SystemExit("deploy/generate.py needs the project's packages: run `make install`, then "
                     ".venv/bin/python deploy/generate.py")


def main() -> int:
    _with_project_packages()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--check", action="store_true", help="fail if a generated file is out of date")
    a = p.parse_args()
    stale = []
    for path, text in outputs().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if a.check:
            stale.append(str(path.relative_to(ROOT)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print("out of date (run deploy/generate.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
