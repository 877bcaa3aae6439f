#!/usr/bin/env python3
"""Generate the container descriptions of the topology from deploy/services.tsv (stdlib only).

Writes (all committed; `--check` fails when one is out of date, a test runs it):
  docker-compose.yml                    PostgreSQL, Kafka, the gateway, every service role and
                                        the workers and schedulers of deploy/programs.tsv
  deploy/gateway/nginx.container.conf   the gateway for containers (render.py --mode container)
  deploy/k8s/base/services.yaml         a Deployment per service role and per program of
                                        deploy/programs.tsv, a Service per api; the web
                                        console's Deployment and Service
  deploy/k8s/base/gateway.yaml          the gateway: ConfigMap, Deployment, Service
  deploy/k8s/base/migrations.yaml       a migration Job per service
  deploy/k8s/base/policies.yaml         HPAs, PodDisruptionBudgets, NetworkPolicies
  deploy/k8s/overlays/prod/network.yaml the services' egress to existing Kafka and PostgreSQL
  deploy/k8s/overlays/dev/kafka.yaml    Strimzi: the cluster, a KafkaUser per service with the
                                        ACLs of deploy/docker/kafka-security.plan, the topics
  deploy/k8s/overlays/dev/postgres.yaml CloudNativePG: the cluster, the roles, the databases
  deploy/k8s/overlays/dev/network.yaml  the services' egress to them, PostgreSQL's ingress
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
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ROLES = ("api", "relay", "consume")
# Our images carry the project's version (pyproject.toml), as deploy/k8s/base/kustomization.yaml
# pins it: `docker compose build` tags them so, never :latest.
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
IMAGE = f"misp-admin-plane:{VERSION}"
KAFKA_INIT_IMAGE = f"misp-kafka-init:{VERSION}"
# Compose's third-party images, each pinned to a release (a tag, not a digest: no registry is
# reachable where this file is generated; an operator may append @sha256:... after a pull).
POSTGRES_IMAGE = "postgres:15.14"
KAFKA_IMAGE = "apache/kafka:4.1.1"  # deploy/docker/Dockerfile.kafka-init builds on the same
NGINX_IMAGE = "nginx:1.27.5"
MAILPIT_IMAGE = "axllent/mailpit:v1.22.3"
# What compose says when a secret is missing (its `${VAR:?message}`: it refuses to start).
PEPPER_HINT = "set MISP_PEPPER to 64 random hex characters, e.g. openssl rand -hex 32"
PG_HINT = "set POSTGRES_PASSWORD, e.g. openssl rand -hex 24"
KAFKA_ADMIN_VAR = "MISP_KAFKA_ADMIN_PASSWORD"
KAFKA_ADMIN_HINT = f"set {KAFKA_ADMIN_VAR} (the broker's admin), e.g. openssl rand -hex 24"
KAFKA_PLAN = HERE / "docker" / "kafka-security.plan"
K8S_NAMESPACE = "misp"
# The images by name: deploy/k8s/base/kustomization.yaml pins their tags (`images:`), an overlay
# may set a digest.
K8S_IMAGE = "misp-admin-plane"
GATEWAY_IMAGE = "nginx"


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
# Kubernetes' pod network, as deploy/k8s/base/config.yaml's MISP_TRUSTED_PROXIES has it (a test
# checks they agree): the gateway believes the console's X-Forwarded-For from it.
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


# The development mail relay compose starts (Mailpit: it keeps every mail, shown on
# http://127.0.0.1:8025); MAILER_SMTP_* in compose's environment point the mailer elsewhere.
MAILPIT = "mailpit"
MAILPIT_SMTP_PORT = 1025
MAILPIT_UI_PORT = 8025
# The mailer's SMTP settings (services/mailer/src/mailer/settings.py) that compose passes on,
# with the default that reaches Mailpit. The password has none and is never written here: it
# passes from compose's environment when set (MAILER_SMTP_PASSWORD), else it stays unset.
SMTP_SETTINGS = {
    "MAILER_SMTP_HOST": MAILPIT,
    "MAILER_SMTP_PORT": str(MAILPIT_SMTP_PORT),
    "MAILER_SMTP_STARTTLS": "false",
    "MAILER_SMTP_IMPLICIT_TLS": "false",
    "MAILER_SMTP_USERNAME": "",
}
SMTP_PASSWORD = "MAILER_SMTP_PASSWORD"
# Compose's healthchecks: the same paths as the Kubernetes probes. The APIs' gates the
# gateway's start (readiness: /ready); the ops port's /healthz the other roles' (it listens on
# the loopback, MISP_METRICS_HOST's default: nothing else on the network needs it).
COMPOSE_OPS_PORT = 9100
# The gateway: a TCP check of both its ports, as Kubernetes' tcpSocket probes (bash's
# /dev/tcp: nothing in the nginx image to add).
_GATEWAY_PROBE = "exec 3<>/dev/tcp/127.0.0.1/8443 && exec 4<>/dev/tcp/127.0.0.1/8080"


def _healthcheck(test: str, *, interval: str = "3s", timeout: str = "5s", retries: int = 40,
                 start_period: str = "5s") -> list[str]:
    return ["    healthcheck:", f"      test: {test}", f"      interval: {interval}",
            f"      timeout: {timeout}", f"      retries: {retries}",
            f"      start_period: {start_period}"]


def _ops_healthcheck() -> list[str]:
    """The ops port's /healthz (a relay, consumer, worker or scheduler): nothing waits on them,
    so a slower pace than the APIs'."""
    return _healthcheck(_python_check(_health_probe(COMPOSE_OPS_PORT, "/healthz")),
                        interval="15s", retries=3, start_period="60s")


def _python_check(code: str) -> str:
    return f'[CMD, python, -c, "{code}"]'


def _locked_down(tmpfs: Sequence[str] = ("/tmp:size=256m",), cap_add: Sequence[str] = (),
                 indent: str = "    ") -> list[str]:
    """A read-only root filesystem with tmpfs where the process writes, no capability but
    `cap_add`, no privilege gained by exec (Kubernetes' CONTAINER_SECURITY)."""
    out = [f"{indent}read_only: true", f"{indent}tmpfs:", *(f"{indent}  - {t}" for t in tmpfs),
           f"{indent}cap_drop: [ALL]"]
    if cap_add:
        out.append(f"{indent}cap_add: [{', '.join(cap_add)}]")
    out.append(f"{indent}security_opt: [no-new-privileges:true]")
    return out


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
    w("# Every long-running container has a healthcheck (`docker compose ps` shows it) and starts")
    w("# after what it needs is healthy or done; the state a restart must keep is on named")
    w("# volumes (PostgreSQL's data, Kafka's log, each service's MISP_STATE_DIR) or in secrets;")
    w("# images are pinned; mail goes to the development relay Mailpit (its mails on")
    w(f"# http://127.0.0.1:{MAILPIT_UI_PORT}) unless " + ", ".join(SMTP_SETTINGS) + " and")
    w(f"# {SMTP_PASSWORD} name another (README.md, With Docker).")
    w("name: misp-admin-plane")
    w("")
    # Our image runs as 999:999 (deploy/docker/Dockerfile) on a read-only root filesystem: its
    # processes write to /tmp and MISP_STATE_DIR (a volume) only, and need no capability.
    w("x-app: &app")
    w(f"  image: {IMAGE}")
    w("  build:")
    w("    context: .")
    w("    dockerfile: deploy/docker/Dockerfile")
    w("  restart: unless-stopped")
    o.extend(_locked_down(indent="  "))
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
        if svc == "mailer":  # every mailer process may deliver (the API's loop, the jobs)
            for name, default in SMTP_SETTINGS.items():
                w(f"  {name}: ${{{name}:-{default}}}")
            w(f"  {SMTP_PASSWORD}:")
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
    w(f"    image: {POSTGRES_IMAGE}")
    w("    restart: unless-stopped")
    w("    command: [postgres, -c, max_connections=200, -c, fsync=on, -c, synchronous_commit=on]")
    # The entrypoint starts as root: it owns the data and socket directories for `postgres`
    # (CHOWN, FOWNER, DAC_*) and drops to it (SETUID, SETGID); the socket and pid on tmpfs.
    o.extend(_locked_down(("/tmp:size=64m", "/var/run/postgresql:size=1m"),
                          ("CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "SETGID",
                           "SETUID")))
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
    w(f"    image: {POSTGRES_IMAGE}")
    w('    restart: "no"')
    w("    command: [bash, /opt/misp/postgres-init.sh]")
    o.extend(_locked_down(("/tmp:size=16m",)))
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
    w(f"    image: {KAFKA_IMAGE}")
    w("    restart: unless-stopped")
    # The image's user (appuser) needs no capability; its root filesystem stays writable
    # (kafka-start.sh writes its configuration under /tmp, the JVM its logs under /opt/kafka).
    w("    cap_drop: [ALL]")
    w("    security_opt: [no-new-privileges:true]")
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
    w(f"    image: {KAFKA_INIT_IMAGE}")
    w("    build:")
    w("      context: .")
    w("      dockerfile: deploy/docker/Dockerfile.kafka-init")
    w('    restart: "no"')
    o.extend(_locked_down(("/tmp:size=64m",)))
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
    w(f"    image: {NGINX_IMAGE}")
    w("    restart: unless-stopped")
    # nginx's master reads the key as root (the host file's owner may be anyone: DAC_OVERRIDE),
    # owns its temporary paths for the workers (CHOWN) and becomes `nginx` in them (SETUID,
    # SETGID); its pid and temporary files on tmpfs, as Kubernetes' emptyDirs.
    o.extend(_locked_down(("/tmp:size=256m", "/var/cache/nginx:size=64m", "/var/run:size=1m"),
                          ("CHOWN", "DAC_OVERRIDE", "SETGID", "SETUID")))
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
    o.extend(_healthcheck(f'[CMD, bash, -c, "{_GATEWAY_PROBE}"]', interval="10s", retries=6))
    w("")
    # The development mail relay: keeps the mails in memory (nothing to keep across a restart),
    # its web page on the host's loopback only.
    w(f"  {MAILPIT}:")
    w(f"    image: {MAILPIT_IMAGE}")
    w("    restart: unless-stopped")
    w("    ports:")
    w(f'      - "127.0.0.1:{MAILPIT_UI_PORT}:{MAILPIT_UI_PORT}"')
    o.extend(_locked_down(("/tmp:size=256m",)))
    o.extend(_healthcheck("[CMD, /mailpit, readyz]", interval="10s", retries=6))
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
    o.extend(_healthcheck(_python_check(_health_probe(CONSOLE_PORT, "/console/health"))))

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
            else:
                w(f'      MISP_METRICS_PORT: "{COMPOSE_OPS_PORT}"')
            o.extend(env)
            w("    volumes:")
            w(f"      - {svc}-state:/var/lib/misp")
            o.extend(secrets)
            w("    depends_on:")
            w("      <<: *after-migrate")
            w(f"      {svc}-migrate:")
            w("        condition: service_completed_successfully")
            if role == "api":
                o.extend(_healthcheck(_python_check(_ready_probe(port))))
            else:
                o.extend(_ops_healthcheck())
        for _, name, replicas, args in (p for p in PROGRAMS if p[0] == svc):
            env, secrets = keys(svc, args[0])
            w("")
            w(f"  {name}:")
            w("    <<: *app")
            w(f"    command: [python, -m, {svc}, {', '.join(args)}]")
            w("    environment:")
            w(f"      <<: *{svc}-env")
            w(f'      {upper}_HTTP_PORT: "{port}"')
            w(f'      MISP_METRICS_PORT: "{COMPOSE_OPS_PORT}"')
            o.extend(env)
            if args[0] in FAUST_ROLES:
                w("    working_dir: /tmp")  # faust's data directory (<app id>-data), on tmpfs
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
            o.extend(_ops_healthcheck())
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
    # One state volume per service (MISP_STATE_DIR), shared by all its containers and kept
    # across restarts: the mailer's GnuPG home (its keyring, the instance key imported from its
    # secret, the recipients' keys), identity's first admin key and temporary password files.
    for svc in services:
        w(f"  {svc}-state:")
    return "\n".join(o) + "\n"


# ---------------------------------------------------------------------------------------------
# Kubernetes: a kustomize base (deploy/k8s/base) and two overlays (deploy/k8s/overlays/dev with
# Strimzi's and CloudNativePG's custom resources, overlays/prod for existing servers). The
# documents are built as data and written as block YAML (_yaml).

K8S_BASE = HERE / "k8s" / "base"
K8S_DEV = HERE / "k8s" / "overlays" / "dev"
K8S_PROD = HERE / "k8s" / "overlays" / "prod"
PART_OF = {"app.kubernetes.io/part-of": "misp-admin-plane"}
# The image's user (deploy/docker/Dockerfile: uid and gid 999) and the nginx image's (101).
APP_UID = 999
NGINX_UID = 101
# The health and metrics port of the roles that serve no HTTP (misp_platform.ops_port), on every
# address of the pod so that the kubelet reaches it.
OPS_PORT = 9100
# Roles run by faust (the abuse detector): its data directory (<app id>-data) is under the
# working directory, /tmp on a read-only root filesystem. It has the ops port like the others.
FAUST_ROLES = ("detect",)
RESOURCES = {
    "api": {"requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"}},
    "role": {"requests": {"cpu": "50m", "memory": "128Mi"},
             "limits": {"cpu": "500m", "memory": "512Mi"}},
    "console": {"requests": {"cpu": "50m", "memory": "96Mi"},
                "limits": {"cpu": "500m", "memory": "256Mi"}},
    "gateway": {"requests": {"cpu": "50m", "memory": "32Mi"},
                "limits": {"cpu": "500m", "memory": "128Mi"}},
}
# Every API (and the console) runs two replicas at least, scaled on CPU up to HPA_MAX.
API_REPLICAS = 2
HPA_MAX = 5
HPA_CPU_PERCENT = 75
# The dev overlay's servers: Strimzi's Kafka cluster and CloudNativePG's cluster.
DEV_KAFKA = "misp-kafka"
DEV_PG = "misp-postgres"
DEV_KAFKA_BOOTSTRAP = f"{DEV_KAFKA}-kafka-bootstrap:9092"
DEV_PG_HOST = f"{DEV_PG}-rw:5432"
# Where the prod overlay lets the services reach their servers (every address: narrow it).
PROD_DATA_PORTS = (9092, 5432)


def _plain(s: str) -> bool:
    """A string YAML reads back as the same string without quotes."""
    if not s or s != s.strip() or s.lower() in (
            "true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"):
        return False
    if s[0] in ",[]{}#&*!|>'\"%@`" or ": " in s or " #" in s or s.endswith(":"):
        return False
    if s[0] in "-?:" and (len(s) == 1 or s[1] == " "):
        return False
    if any(c in s for c in "{}[],\"'\\\n\t"):
        return False
    try:
        float(s)
        return False
    except ValueError:
        pass
    return not (s[0].isdigit() and all(c.isdigit() or c in "_:.eE+-" for c in s))


def _scalar(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    s = str(v)
    return s if _plain(s) else json.dumps(s)


def _yaml(obj: object, indent: int = 0) -> list[str]:
    """Block YAML of dicts, lists and scalars; a list of plain strings stays on one line."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = _scalar(k)
            if (isinstance(v, dict) and v) or (isinstance(v, list) and v and not _flow(v)):
                lines += [f"{pad}{key}:", *_yaml(v, indent + 2)]
            else:
                lines.append(f"{pad}{key}: {_inline(v)}")
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, (dict, list)) and item:
                inner = _yaml(item, indent + 2)
                lines += [f"{pad}- {inner[0].lstrip()}", *inner[1:]]
            else:
                lines.append(f"{pad}- {_inline(item)}")
    else:
        lines.append(pad + _scalar(obj))
    return lines


def _flow(v: list[object]) -> bool:
    return all(isinstance(i, str) and _plain(i) for i in v) and len(", ".join(map(str, v))) < 70


def _inline(v: object) -> str:
    if isinstance(v, dict):
        return "{}"
    if isinstance(v, list):
        return "[" + ", ".join(_scalar(i) for i in v) + "]"
    return _scalar(v)


def _docs(head: str, docs: Sequence[object], raw: Sequence[str] = ()) -> str:
    texts = [*raw, *("\n".join(_yaml(d)) for d in docs)]
    return head + "---\n" + "\n---\n".join(texts) + "\n"


def _meta(name: str, labels: dict[str, str] | None = None,
          annotations: dict[str, str] | None = None) -> dict[str, object]:
    meta: dict[str, object] = {"name": name, "namespace": K8S_NAMESPACE,
                               "labels": {**PART_OF, **(labels or {})}}
    if annotations:
        meta["annotations"] = annotations
    return meta


def _pod_security(uid: int) -> dict[str, object]:
    return {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"}}


CONTAINER_SECURITY = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _http_probes(path_ready: str, path_live: str, port: str) -> dict[str, object]:
    """A startup probe that waits for the first success (Kafka and PostgreSQL may come later),
    then readiness and liveness."""
    return {
        "startupProbe": {"httpGet": {"path": path_live, "port": port}, "periodSeconds": 5,
                         "failureThreshold": 60, "timeoutSeconds": 3},
        "readinessProbe": {"httpGet": {"path": path_ready, "port": port}, "periodSeconds": 5,
                           "timeoutSeconds": 3},
        "livenessProbe": {"httpGet": {"path": path_live, "port": port}, "periodSeconds": 10,
                          "timeoutSeconds": 3, "failureThreshold": 3},
    }


def _env_list(env: dict[str, str]) -> list[dict[str, object]]:
    return [{"name": k, "value": v} for k, v in env.items()]


def _app_container(svc: str, port: int, role: str, args: list[str],
                   extra: dict[str, str] | None = None) -> dict[str, object]:
    """A container of the service's image: the shared ConfigMap and Secret (the pepper), the
    service's own credentials, its key files where its settings point, a writable /tmp and
    state directory on a read-only root filesystem; probes on the API's HTTP port or the ops
    port."""
    upper = svc.upper()
    env = {f"{upper}_HTTP_PORT": str(port)}
    if role in ("api", "migrate"):
        env[f"{upper}_HTTP_HOST"] = "0.0.0.0"
    ops = role not in ("api", "migrate")
    if ops:
        env["MISP_METRICS_PORT"] = str(OPS_PORT)
        env["MISP_METRICS_HOST"] = "0.0.0.0"
    for k in key_files(svc, role):
        env[k.variable] = k.k8s_path
    env.update(extra or {})
    c: dict[str, object] = {
        "name": role,
        "image": K8S_IMAGE,
        "args": ["python", "-m", svc, *args],
        "envFrom": [{"configMapRef": {"name": "misp-env"}},
                    {"secretRef": {"name": "misp-secrets"}},
                    {"secretRef": {"name": k8s_credentials(svc)}}],
        "env": _env_list(env),
    }
    if role in FAUST_ROLES:
        # faust keeps its data directory (<app id>-data) under the working directory
        c["workingDir"] = "/tmp"
    c["volumeMounts"] = [
        *({"name": k.secret, "mountPath": k.k8s_dir, "readOnly": True}
          for k in key_files(svc, role)),
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "state", "mountPath": "/var/lib/misp"},
    ]
    c["resources"] = RESOURCES["api" if role == "api" else "role"]
    c["securityContext"] = CONTAINER_SECURITY
    if role == "api":
        c["ports"] = [{"name": "http", "containerPort": port}]
        c.update(_http_probes("/ready", "/health", "http"))
    elif ops:
        c["ports"] = [{"name": "metrics", "containerPort": OPS_PORT}]
        c.update(_http_probes("/healthz", "/healthz", "metrics"))
    return c


def _app_volumes(svc: str, role: str) -> list[dict[str, Any]]:
    return [
        *({"name": k.secret,
           "secret": {"secretName": k.secret, "defaultMode": 0o444,
                      "items": [{"key": k.key, "path": k.key}]}}
          for k in key_files(svc, role)),
        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
        # MISP_STATE_DIR: the mailer's GnuPG home, identity's first admin key file
        {"name": "state", "emptyDir": {"sizeLimit": "256Mi"}},
    ]


def _deployment(name: str, labels: dict[str, str], replicas: int, pod: Mapping[str, Any],
                instance: str | None = None) -> dict[str, object]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, labels),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": {**PART_OF, **labels,
                                        "app.kubernetes.io/instance": instance or name}},
                "spec": pod,
            },
        },
    }


def k8s_deployments(services: dict[str, int]) -> list[tuple[str, str, str, int]]:
    """(Deployment, service, role, replicas) of every service role and program."""
    out = []
    for svc in services:
        out += [(f"{svc}-{role}", svc, role, API_REPLICAS if role == "api" else 1)
                for role in ROLES]
        out += [(name, svc, args[0], replicas) for s, name, replicas, args in PROGRAMS
                if s == svc]
    return out


def k8s_services(services: dict[str, int]) -> str:
    docs: list[object] = []
    programs = {name: args for _s, name, _r, args in PROGRAMS}
    for svc, port in services.items():
        for name, _svc, role, replicas in k8s_deployments({svc: port}):
            labels = {"app.kubernetes.io/name": svc, "app.kubernetes.io/component": role}
            extra = settings_peer_urls(services) if svc == "settings" else None
            pod: dict[str, Any] = {
                "securityContext": _pod_security(APP_UID),
                "containers": [_app_container(svc, port, role, programs.get(name, [role]),
                                              extra)],
                "volumes": _app_volumes(svc, role),
            }
            if role == "api":
                # in-flight requests finish; the gateway's upstreams stop sending first
                pod["terminationGracePeriodSeconds"] = 30
            docs.append(_deployment(name, labels, replicas, pod))
        docs.append({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(f"{svc}-api", {"app.kubernetes.io/name": svc}),
            "spec": {"selector": {"app.kubernetes.io/name": svc,
                                  "app.kubernetes.io/component": "api"},
                     "ports": [{"name": "http", "port": port, "targetPort": "http"}]},
        })
    docs += k8s_console()
    head = ("# Generated by deploy/generate.py from deploy/services.tsv and deploy/programs.tsv: "
            "do not edit.\n")
    return _docs(head, docs)


def k8s_migrations(services: dict[str, int]) -> str:
    """One Job per service running `python -m <service> migrate`: no API replica migrates.
    Its name is fixed: on upgrade, delete the Jobs and apply again (deploy/k8s/README.md)."""
    docs: list[object] = []
    for svc, port in services.items():
        labels = {"app.kubernetes.io/name": svc, "app.kubernetes.io/component": "migrate"}
        container = _app_container(svc, port, "migrate", ["migrate"])
        docs.append({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": _meta(f"{svc}-migrate", labels),
            "spec": {
                "backoffLimit": 6,
                "activeDeadlineSeconds": 3600,
                "template": {
                    "metadata": {"labels": {**PART_OF, **labels,
                                            "app.kubernetes.io/instance": f"{svc}-migrate"}},
                    "spec": {
                        "restartPolicy": "OnFailure",
                        "securityContext": _pod_security(APP_UID),
                        "containers": [container],
                        "volumes": _app_volumes(svc, "migrate"),
                    },
                },
            },
        })
    head = ("# Generated by deploy/generate.py from deploy/services.tsv: do not edit.\n"
            "# The schema migrations, a Job per service (deploy/k8s/README.md, Upgrades).\n")
    return _docs(head, docs)


def k8s_console() -> list[object]:
    """The web console: a stateless Deployment (2 replicas) and the Service `console` the
    gateway's config names. The shared ConfigMap (the pod network as trusted proxies, the log
    format) and nothing secret: no credentials Secret, not misp-secrets. It calls the gateway's
    HTTPS Service with the gateway's certificate (tls.crt of the TLS Secret, not its key) as
    its trust anchor, checked for the name in misp-env's MISP_GATEWAY_TLS_NAME (required: the
    pods do not start without it)."""
    upper = CONSOLE.upper()
    labels = {"app.kubernetes.io/name": CONSOLE, "app.kubernetes.io/component": "api"}
    container = {
        "name": "api",
        "image": K8S_IMAGE,
        "args": ["python", "-m", CONSOLE, "api"],
        "envFrom": [{"configMapRef": {"name": "misp-env"}}],
        "env": [
            *_env_list({f"{upper}_HTTP_HOST": "0.0.0.0", f"{upper}_HTTP_PORT": str(CONSOLE_PORT),
                        f"{upper}_GATEWAY_URL": f"https://gateway:{K8S_HTTPS_PORT}",
                        f"{upper}_GATEWAY_CA": f"{CONSOLE_CA_K8S_DIR}/tls.crt"}),
            {"name": f"{upper}_GATEWAY_TLS_NAME",
             "valueFrom": {"configMapKeyRef": {"name": "misp-env", "key": CONSOLE_TLS_NAME_VAR}}},
        ],
        "volumeMounts": [
            {"name": GATEWAY_TLS_SECRET, "mountPath": CONSOLE_CA_K8S_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "resources": RESOURCES["console"],
        "securityContext": CONTAINER_SECURITY,
        "ports": [{"name": "http", "containerPort": CONSOLE_PORT}],
        **_http_probes("/console/health", "/console/health", "http"),
    }
    pod = {
        "securityContext": _pod_security(APP_UID),
        "containers": [container],
        "volumes": [
            {"name": GATEWAY_TLS_SECRET,
             "secret": {"secretName": GATEWAY_TLS_SECRET, "defaultMode": 0o444,
                        "items": [{"key": "tls.crt", "path": "tls.crt"}]}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        ],
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(CONSOLE, {"app.kubernetes.io/name": CONSOLE}),
        "spec": {"selector": labels,
                 "ports": [{"name": "http", "port": CONSOLE_PORT, "targetPort": "http"}]},
    }
    return [_deployment(CONSOLE, labels, 2, pod), service]


def k8s_gateway(services: dict[str, int]) -> str:
    conf = gateway_container_conf(services, https_port=K8S_HTTPS_PORT,
                                  console_network=K8S_POD_NETWORK)
    cm = render.k8s_configmap(conf, "gateway-nginx", K8S_NAMESPACE)
    cm = "\n".join(ln for ln in cm.splitlines() if not ln.startswith("#"))
    labels = {"app.kubernetes.io/name": "gateway"}
    container = {
        "name": "nginx",
        "image": GATEWAY_IMAGE,
        "ports": [{"name": "http", "containerPort": 8080},
                  {"name": "https", "containerPort": 8443}],
        "volumeMounts": [
            {"name": "conf", "mountPath": "/etc/nginx/nginx.conf", "subPath": "nginx.conf",
             "readOnly": True},
            {"name": "tls", "mountPath": render.CONTAINER_TLS_DIR, "readOnly": True},
            # its pid file and temporary files (nginx.conf), and the image's default paths
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "cache", "mountPath": "/var/cache/nginx"},
            {"name": "run", "mountPath": "/var/run"},
        ],
        "resources": RESOURCES["gateway"],
        "securityContext": CONTAINER_SECURITY,
        "startupProbe": {"tcpSocket": {"port": "https"}, "periodSeconds": 2,
                         "failureThreshold": 30},
        "readinessProbe": {"tcpSocket": {"port": "https"}, "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 10,
                          "failureThreshold": 3},
    }
    pod = {
        "securityContext": _pod_security(NGINX_UID),
        "containers": [container],
        "volumes": [
            {"name": "conf", "configMap": {"name": "gateway-nginx"}},
            # group-readable: nginx runs as its own user, in the group fsGroup gives the files
            {"name": "tls", "secret": {"secretName": GATEWAY_TLS_SECRET, "defaultMode": 0o440,
                                       "items": [{"key": "tls.crt", "path": "tls.crt"},
                                                 {"key": "tls.key", "path": "tls.key"}]}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
            {"name": "cache", "emptyDir": {"sizeLimit": "64Mi"}},
            {"name": "run", "emptyDir": {"sizeLimit": "1Mi"}},
        ],
    }
    # One replica: its rate limits and failed-login budgets are per nginx (deploy/k8s/README.md).
    deployment = _deployment("gateway", labels, 1, pod, instance="gateway")
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta("gateway", labels),
        "spec": {"selector": labels,
                 "ports": [{"name": "http", "port": 8080, "targetPort": "http"},
                           {"name": "https", "port": K8S_HTTPS_PORT, "targetPort": "https"}]},
    }
    head = (
        "# Generated by deploy/generate.py from deploy/gateway/routes.tsv: do not edit.\n"
        "# The gateway is the only entry point and ends TLS itself, with the TLS Secret "
        f"{GATEWAY_TLS_SECRET}\n"
        "# (deploy/k8s/README.md); plain HTTP is redirected to HTTPS on port "
        f"{K8S_HTTPS_PORT}. Exposed by the\n"
        "# Ingress of ingress.yaml (HTTPS to the backend), or a LoadBalancer Service.\n"
    )
    return _docs(head, [deployment, service], raw=[cm])


def _selector_in(key: str, values: list[str]) -> dict[str, object]:
    return {"matchExpressions": [{"key": key, "operator": "In", "values": values}]}


def _netpol(name: str, pods: Mapping[str, object], *, ingress: list[object] | None = None,
            egress: list[object] | None = None) -> dict[str, object]:
    spec: dict[str, object] = {"podSelector": pods}
    types = []
    if ingress is not None:
        types.append("Ingress")
        spec["ingress"] = ingress
    if egress is not None:
        types.append("Egress")
        spec["egress"] = egress
    spec["policyTypes"] = types
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": _meta(name), "spec": spec}


def _ports(*ports: int | str, protocol: str = "TCP") -> list[dict[str, object]]:
    return [{"protocol": protocol, "port": p} for p in ports]


def _services_pods(services: dict[str, int]) -> dict[str, object]:
    """The pods of the six services (Deployments and migration Jobs), not the gateway's nor
    the console's."""
    return _selector_in("app.kubernetes.io/name", list(services))


def k8s_policies(services: dict[str, int]) -> str:
    """HorizontalPodAutoscalers, PodDisruptionBudgets and NetworkPolicies."""
    docs: list[object] = []
    apis = [f"{svc}-api" for svc in services] + [CONSOLE]
    for name in apis:
        docs.append({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": _meta(name),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": API_REPLICAS,
                "maxReplicas": HPA_MAX,
                "metrics": [{"type": "Resource", "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": HPA_CPU_PERCENT}}}],
            },
        })
    several = [(name, svc, role, n) for name, svc, role, n in k8s_deployments(services) if n > 1]
    several.append((CONSOLE, CONSOLE, "api", 2))
    for name, svc, role, _n in several:
        budget: dict[str, object] = ({"minAvailable": 1} if role == "api"
                                     else {"maxUnavailable": 1})
        docs.append({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _meta(name),
            "spec": {**budget, "selector": {"matchLabels": {
                "app.kubernetes.io/name": svc, "app.kubernetes.io/component": role}}},
        })
    gateway = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gateway"}}}
    api_pods = {"matchLabels": {**PART_OF, "app.kubernetes.io/component": "api"}}
    service_apis = {**_services_pods(services),
                    "matchLabels": {"app.kubernetes.io/component": "api"}}
    everyone = {"matchLabels": PART_OF}
    docs += [
        # Nothing reaches a pod of the namespace unless a policy below lets it.
        _netpol("default-deny-ingress", {}, ingress=[]),
        _netpol("gateway-from-anywhere", {"matchLabels": {"app.kubernetes.io/name": "gateway"}},
                ingress=[{"ports": _ports(8080, 8443)}]),
        _netpol("apis-from-gateway", api_pods,
                ingress=[{"from": [gateway], "ports": _ports("http")}]),
        # the settings service asks every API for its diagnostics and its OpenAPI document
        _netpol("apis-from-settings", service_apis, ingress=[{
            "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "settings"}}}],
            "ports": _ports("http")}]),
        # Prometheus, from the namespace `monitoring`, scrapes the ops ports
        _netpol("metrics-from-monitoring", everyone, ingress=[{
            "from": [{"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": "monitoring"}}}],
            "ports": _ports("metrics")}]),
        # Egress: every pod of the project may resolve names; nothing else unless said below
        # (an overlay adds Kafka and PostgreSQL: misp-egress-data).
        _netpol("egress-dns", everyone, egress=[{
            "to": [{"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": "kube-system"}}}],
            "ports": [*_ports(53, protocol="UDP"), *_ports(53)]}]),
        _netpol("gateway-to-apis", {"matchLabels": {"app.kubernetes.io/name": "gateway"}},
                egress=[{"to": [{"podSelector": api_pods}], "ports": _ports("http")}]),
        _netpol("console-to-gateway", {"matchLabels": {"app.kubernetes.io/name": CONSOLE}},
                egress=[{"to": [gateway], "ports": _ports(8443)}]),
        _netpol("settings-to-apis", {"matchLabels": {"app.kubernetes.io/name": "settings"}},
                egress=[{"to": [{"podSelector": service_apis}], "ports": _ports("http")}]),
        # the mailer's SMTP relay (MAILER_SMTP_HOST/PORT): narrow to yours
        _netpol("mailer-to-smtp", {"matchLabels": {"app.kubernetes.io/name": "mailer"}},
                egress=[{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                         "ports": _ports(25, 465, 587)}]),
        # identity fetches users' OpenPGP keys from the keyserver (HKP over HTTPS, or 11371)
        _netpol("identity-to-keyserver", {"matchLabels": {"app.kubernetes.io/name": "identity"}},
                egress=[{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                         "ports": _ports(443, 11371)}]),
    ]
    head = ("# Generated by deploy/generate.py from deploy/services.tsv and deploy/programs.tsv: "
            "do not edit.\n# Autoscaling, disruption budgets and the NetworkPolicies "
            "(deploy/k8s/README.md, The network).\n")
    return _docs(head, docs)


def k8s_prod_network(services: dict[str, int]) -> str:
    policy = _netpol("misp-egress-data", _services_pods(services), egress=[{
        "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": _ports(*PROD_DATA_PORTS)}])
    head = ("# Generated by deploy/generate.py from deploy/services.tsv: do not edit.\n"
            "# The services reach your Kafka (9092) and PostgreSQL (5432) at any address: "
            "narrow the cidr\n# to your servers' in a patch of this overlay "
            "(deploy/k8s/README.md, prod).\n")
    return _docs(head, [policy])


# ---- the dev overlay: Strimzi and CloudNativePG ----------------------------------------------

_OPERATIONS = {"READ": "Read", "WRITE": "Write", "CREATE": "Create", "DESCRIBE": "Describe",
               "DESCRIBE_CONFIGS": "DescribeConfigs", "IDEMPOTENT_WRITE": "IdempotentWrite",
               "ALTER": "Alter", "DELETE": "Delete", "ALTER_CONFIGS": "AlterConfigs",
               "CLUSTER_ACTION": "ClusterAction", "ALL": "All"}
_PATTERNS = {"LITERAL": "literal", "PREFIXED": "prefix"}


def read_plan(text: str) -> tuple[list[str], dict[str, list[tuple[str, str, str, str]]]]:
    """deploy/docker/kafka-security.plan: its users and each one's ACLs (resource, pattern,
    name, operation)."""
    users: list[str] = []
    acls: dict[str, list[tuple[str, str, str, str]]] = {}
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "user":
            users.append(words[1])
        elif words[0] == "acl":
            principal, resource, pattern, name, op = words[1:6]
            acls.setdefault(principal.removeprefix("User:"), []).append(
                (resource, pattern, name, op))
        else:
            raise SystemExit(f"kafka-security.plan: cannot read {line!r}")
    return users, acls


def dev_kafka_user(svc: str) -> str:
    """The service's principal in the dev overlay: a KafkaUser's name, so no `_`."""
    return f"misp-{svc}"


def strimzi_acls(rules: list[tuple[str, str, str, str]]) -> list[dict[str, object]]:
    """The plan's ACLs of one user as a KafkaUser's: one rule per resource."""
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for resource, pattern, name, op in rules:
        grouped.setdefault((resource, pattern, name), []).append(_OPERATIONS[op])
    out: list[dict[str, object]] = []
    for (resource, pattern, name), ops in sorted(grouped.items()):
        res: dict[str, object] = {"type": resource.lower()}
        if resource != "CLUSTER":
            res.update({"name": name, "patternType": _PATTERNS[pattern]})
        out.append({"resource": res, "operations": sorted(set(ops)), "host": "*"})
    return out


def k8s_dev_kafka(services: dict[str, int], plan: str) -> str:
    from misp_contracts.topics import CATALOGUE

    users, acls = read_plan(plan)
    cluster = {"strimzi.io/cluster": DEV_KAFKA}
    docs: list[object] = [
        {"apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaNodePool",
         "metadata": _meta("dual-role", cluster),
         "spec": {"replicas": 1, "roles": ["controller", "broker"],
                  "storage": {"type": "jbod", "volumes": [
                      {"id": 0, "type": "persistent-claim", "size": "10Gi",
                       "deleteClaim": False, "kraftMetadata": "shared"}]},
                  "resources": {"requests": {"cpu": "250m", "memory": "1Gi"},
                                "limits": {"cpu": "1", "memory": "2Gi"}}}},
        {"apiVersion": "kafka.strimzi.io/v1", "kind": "Kafka",
         "metadata": _meta(DEV_KAFKA),
         "spec": {
             "kafka": {
                 "listeners": [{"name": "scram", "port": 9092, "type": "internal", "tls": False,
                                "authentication": {"type": "scram-sha-512"}}],
                 "authorization": {"type": "simple"},
                 "config": {"auto.create.topics.enable": False,
                            "offsets.topic.replication.factor": 1,
                            "transaction.state.log.replication.factor": 1,
                            "transaction.state.log.min.isr": 1,
                            "default.replication.factor": 1,
                            "min.insync.replicas": 1},
             },
             "entityOperator": {"topicOperator": {}, "userOperator": {}},
         }},
    ]
    for user in users:
        svc = user.removeprefix("misp_")
        if svc not in services:
            raise SystemExit(f"kafka-security.plan names {user}, not a service of services.tsv")
        docs.append({
            "apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaUser",
            "metadata": _meta(dev_kafka_user(svc), {**cluster, "app.kubernetes.io/name": svc}),
            "spec": {
                "authentication": {"type": "scram-sha-512", "password": {"valueFrom": {
                    "secretKeyRef": {"name": k8s_credentials(svc),
                                     "key": "MISP_KAFKA_PASSWORD"}}}},
                "authorization": {"type": "simple", "acls": strimzi_acls(acls.get(user, []))},
            },
        })
    named = {name for rules in acls.values()
             for resource, pattern, name, _op in rules
             if resource == "TOPIC" and pattern == "LITERAL"}
    for topic in sorted(CATALOGUE, key=lambda t: t.name):
        if topic.name not in named:
            continue
        docs.append({
            "apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaTopic",
            "metadata": _meta(topic.name, {**cluster, "app.kubernetes.io/name": topic.owner}),
            "spec": {"partitions": topic.partitions, "replicas": 1,
                     "config": {**topic.config(), "min.insync.replicas": "1"}},
        })
    head = ("# Generated by deploy/generate.py from deploy/docker/kafka-security.plan and the "
            "topic catalogue:\n# do not edit. Strimzi's Kafka (KRaft, one dual-role node), a "
            "KafkaUser per service with\n# the plan's ACLs (its password from the service's "
            "credentials Secret), the plan's topics.\n")
    return _docs(head, docs)


def dev_pg_secret(svc: str) -> str:
    """The kubernetes.io/basic-auth Secret of the service's PostgreSQL role (dev overlay)."""
    return f"misp-{svc}-postgres"


def k8s_dev_postgres(services: dict[str, int]) -> str:
    hba = []
    for svc in services:
        hba.append(f"host misp_{svc} misp_{svc} all scram-sha-256")
    # a service's role reaches its own database only (as postgres-init's REVOKE CONNECT)
    hba += [f"host all misp_{svc} all reject" for svc in services]
    docs: list[object] = [{
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": _meta(DEV_PG),
        "spec": {
            "instances": 1,
            "storage": {"size": "5Gi"},
            "postgresql": {"parameters": {"max_connections": "200"}, "pg_hba": hba},
            "managed": {"roles": [
                {"name": f"misp_{svc}", "ensure": "present", "login": True,
                 "inherit": True, "passwordSecret": {"name": dev_pg_secret(svc)},
                 "comment": f"the {svc} service"}
                for svc in services]},
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                          "limits": {"cpu": "1", "memory": "1Gi"}},
        },
    }]
    for svc in services:
        docs.append({
            "apiVersion": "postgresql.cnpg.io/v1", "kind": "Database",
            "metadata": _meta(f"misp-{svc}", {"app.kubernetes.io/name": svc}),
            "spec": {"name": f"misp_{svc}", "owner": f"misp_{svc}", "ensure": "present",
                     "cluster": {"name": DEV_PG}},
        })
    head = ("# Generated by deploy/generate.py from deploy/services.tsv: do not edit.\n"
            "# CloudNativePG's cluster with each service's role (its password from the "
            "basic-auth Secret\n# misp-<service>-postgres) owning its database alone.\n")
    return _docs(head, docs)


def k8s_dev_network(services: dict[str, int]) -> str:
    kafka = {"matchLabels": {"strimzi.io/cluster": DEV_KAFKA, "strimzi.io/kind": "Kafka"}}
    pg = {"matchLabels": {"cnpg.io/cluster": DEV_PG}}
    docs = [
        _netpol("misp-egress-data", _services_pods(services), egress=[
            {"to": [{"podSelector": kafka}], "ports": _ports(9092)},
            {"to": [{"podSelector": pg}], "ports": _ports(5432)}]),
        # default-deny-ingress covers these pods too: the services, the other instances
        # (replication) and the operator (its namespace cnpg-system) reach PostgreSQL
        _netpol("postgres-ingress", pg, ingress=[
            {"from": [{"podSelector": _services_pods(services)}], "ports": _ports(5432)},
            {"from": [{"podSelector": pg}], "ports": _ports(5432, 8000)},
            {"from": [{"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": "cnpg-system"}}}], "ports": _ports(5432, 8000)}]),
    ]
    head = ("# Generated by deploy/generate.py from deploy/services.tsv: do not edit.\n"
            "# The services reach Strimzi's brokers and CloudNativePG's instances; Strimzi "
            "makes the\n# NetworkPolicies of its own pods.\n")
    return _docs(head, docs)


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
        KAFKA_PLAN: kafka_plan(services),
        K8S_BASE / "services.yaml": k8s_services(services),
        K8S_BASE / "gateway.yaml": k8s_gateway(services),
        K8S_BASE / "migrations.yaml": k8s_migrations(services),
        K8S_BASE / "policies.yaml": k8s_policies(services),
        K8S_PROD / "network.yaml": k8s_prod_network(services),
        K8S_DEV / "kafka.yaml": k8s_dev_kafka(services, kafka_plan(services)),
        K8S_DEV / "postgres.yaml": k8s_dev_postgres(services),
        K8S_DEV / "network.yaml": k8s_dev_network(services),
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
