"""Compose and Kubernetes trust nobody by default, as the local stack does (issue 14): each service
logs in to PostgreSQL as its own role and to Kafka as its own SCRAM principal, with passwords that
have no default; only the init containers hold the PostgreSQL superuser's and the Kafka admin's
passwords; kafka-init applies the very plan the local stack applies; the audit's and the
mailer's keys come from secrets mounted where their settings point, in the processes that need
them and no other.

Needs the docker CLI (`docker compose config`, no engine) and kubectl (`kubectl kustomize`, no
cluster); the init scripts run here with stand-ins for psql, java and Kafka's tools. Nothing
starts a container: whether the images run is for `docker compose up` to show."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from misp_platform.testing import load_script

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKER_DIR = ROOT / "deploy" / "docker"
# deploy/services.tsv, read by the gateway's renderer (the one parser of it)
API_PORTS: dict[str, int] = load_script(ROOT / "deploy" / "gateway" / "render.py",
                                        "gateway_render_services").load_services()
SERVICES = list(API_PORTS)
IMAGE = "misp-admin-plane:0.1.0"  # the project's version (pyproject.toml)

PG_VARS = {s: f"MISP_PG_{s.upper()}_PASSWORD" for s in SERVICES}
KAFKA_VARS = {s: f"MISP_KAFKA_{s.upper()}_PASSWORD" for s in SERVICES}
KEY_FILE_VARS = ["MISP_AUDIT_SIGNING_KEY_FILE", "MISP_AUDIT_VERIFY_KEY_FILE",
                 "MISP_MAILER_INSTANCE_KEY_FILE", "MISP_GATEWAY_TLS_CERT_FILE",
                 "MISP_GATEWAY_TLS_KEY_FILE"]
# The gateway's provided certificate: compose secret -> where nginx.container.conf reads it.
GATEWAY_TLS = {"gateway_tls_cert": "/etc/nginx/tls/tls.crt",
               "gateway_tls_key": "/etc/nginx/tls/tls.key"}
# Not a secret, but required all the same: the name of the gateway's certificate, which the
# web console checks (it calls https://gateway:8443, a name the certificate is not for).
TLS_NAME_VAR = "MISP_GATEWAY_TLS_NAME"
REQUIRED = ["MISP_PEPPER", "POSTGRES_PASSWORD", "MISP_KAFKA_ADMIN_PASSWORD",
            *PG_VARS.values(), *KAFKA_VARS.values(), *KEY_FILE_VARS, TLS_NAME_VAR]
# The web console (services/console) is not a service of deploy/services.tsv: it owns no
# data, so it has no PostgreSQL role, no Kafka principal, no pepper and no state; it holds the
# gateway's certificate (not its key), its trust anchor for the gateway.
CONSOLE = "console"
CONSOLE_CA = "/run/secrets/gateway_tls_cert"

# Which containers read which key, by the setting that names its file: the processes that sign
# the audit's checkpoints, the audit's API (the public key only), every mailer process that
# renders mails or serves /gpg.asc. Compose secret and Kubernetes Secret of each.
KEYS = {
    "AUDIT_SIGNING_KEY_PATH": ("audit_signing_key", "misp-audit-signing-key",
                               {"audit-consume", "audit-worker"}),
    "AUDIT_VERIFY_KEY_PATH": ("audit_verify_key", "misp-audit-verify-key", {"audit-api"}),
    "MAILER_GNUPG_INSTANCE_KEY_FILE": ("mailer_instance_key", "misp-mailer-instance-key",
                                       {"mailer-api", "mailer-consume", "mailer-worker"}),
}


def _load(name: str, path: Path) -> ModuleType:
    return load_script(path, name)


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed: these tests need it (they never skip)"
    return path


@pytest.fixture(scope="module")
def values(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A distinct value for every secret (the key files: paths of files with distinct texts)."""
    out = {var: secrets.token_hex(24) for var in REQUIRED if var not in KEY_FILE_VARS}
    keys = tmp_path_factory.mktemp("keys")
    for var in KEY_FILE_VARS:
        path = keys / var.lower()
        path.write_text(secrets.token_hex(16), encoding="utf-8")
        out[var] = str(path)
    return out


def compose_config(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`docker compose config` with exactly these of the variables, no `.env` file."""
    base = {k: v for k, v in os.environ.items() if k not in REQUIRED}
    empty = tmp_path / "empty.env"
    empty.write_text("", encoding="utf-8")
    return subprocess.run(
        [_tool("docker"), "compose", "-f", str(COMPOSE), "--project-directory", str(ROOT),
         "--env-file", str(empty), "config", "--format", "json"],
        env={**base, **env}, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def rendered(values: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    done = compose_config(values, tmp_path_factory.mktemp("compose"))
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = json.loads(done.stdout)
    return config


def owner(container: dict[str, Any]) -> str | None:
    """The service whose code an application container runs (`python -m <service> ...`)."""
    command = container.get("command") or []
    if container.get("image") == IMAGE and command[:2] == ["python", "-m"]:
        return str(command[2])
    return None


# ---- compose: no secret has a default --------------------------------------------------------


def test_compose_requires_exactly_these_secrets() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    assert set(re.findall(r"\$\{([A-Z0-9_]+):\?", text)) == set(REQUIRED)
    assert not re.search(rf"\$\{{{TLS_NAME_VAR}:?-", text)  # no default name either
    assert not re.search(r"\$\{[A-Z0-9_]*(PASSWORD|PEPPER|_FILE)(:?-)", text)


@pytest.mark.parametrize("missing", REQUIRED)
def test_compose_refuses_to_start_without_each_secret(
        missing: str, values: dict[str, str], tmp_path: Path) -> None:
    done = compose_config({k: v for k, v in values.items() if k != missing}, tmp_path)
    assert done.returncode != 0, f"compose rendered without {missing}"
    assert missing in done.stderr, done.stderr


def test_compose_renders_with_every_secret(rendered: dict[str, Any]) -> None:
    assert {"postgres", "postgres-init", "kafka", "kafka-init"} <= set(rendered["services"])


# ---- compose: who holds which credential ------------------------------------------------------


def test_each_service_container_logs_in_as_its_own_role_and_principal(
        rendered: dict[str, Any], values: dict[str, str]) -> None:
    seen: dict[str, int] = dict.fromkeys(SERVICES, 0)
    for name, container in rendered["services"].items():
        svc = owner(container)
        if svc is None or svc == CONSOLE:  # the console: test_the_console_holds_no_secret
            continue
        seen[svc] += 1
        env = container["environment"]
        assert env["MISP_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT", name
        assert env["MISP_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512", name
        assert env["MISP_KAFKA_USERNAME"] == f"misp_{svc}", name
        assert env["MISP_KAFKA_PASSWORD"] == values[KAFKA_VARS[svc]], name
        url = urlsplit(env[f"{svc.upper()}_DATABASE_URL"])
        assert (url.username, url.password, url.hostname, url.path) == (
            f"misp_{svc}", values[PG_VARS[svc]], "postgres", f"/misp_{svc}"), name
        # No server-wide URL (it named the superuser) and no other service's database.
        assert "MISP_PG_URL" not in env, name
        assert [k for k in env if k.endswith("_DATABASE_URL")] == [
            f"{svc.upper()}_DATABASE_URL"], name
    # migrate, api, relay and consume of each service at least
    assert all(n >= 4 for n in seen.values()), seen


def test_only_the_init_containers_hold_the_superuser_and_admin_passwords(
        rendered: dict[str, Any], values: dict[str, str]) -> None:
    holders: dict[str, set[str]] = {
        "POSTGRES_PASSWORD": {"postgres", "postgres-init"},
        "MISP_KAFKA_ADMIN_PASSWORD": {"kafka", "kafka-init"},
    }
    for svc in SERVICES:
        mine = {n for n, c in rendered["services"].items() if owner(c) == svc}
        holders[PG_VARS[svc]] = mine | {"postgres-init"}
        holders[KAFKA_VARS[svc]] = mine | {"kafka-init"}
    for var, allowed in holders.items():
        holding = {name for name, container in rendered["services"].items()
                   if values[var] in json.dumps(container)}
        assert holding == allowed, var


def test_services_start_after_their_credentials_exist(rendered: dict[str, Any]) -> None:
    for name, container in rendered["services"].items():
        if owner(container) in (None, CONSOLE):  # the console has no credentials to wait for
            continue
        needs = {k: v["condition"] for k, v in container["depends_on"].items()}
        if name.endswith("-migrate"):
            assert needs.get("postgres-init") == "service_completed_successfully", name
        else:
            assert needs.get("kafka-init") == "service_completed_successfully", name
            assert needs.get(f"{owner(container)}-migrate") == "service_completed_successfully"
    init = rendered["services"]["kafka-init"]
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert rendered["services"]["postgres-init"]["depends_on"]["postgres"]["condition"] == (
        "service_healthy")


# ---- compose: Kafka ---------------------------------------------------------------------------


def test_kafka_init_applies_the_local_stacks_plan(
        rendered: dict[str, Any], values: dict[str, str], tmp_path: Path) -> None:
    """The committed plan is kafka_security.plan's (the function the local stack runs), and
    kafka-init hands KafkaSecurity.java that plan with each service's password put in."""
    security = _load("kafka_security", ROOT / "deploy" / "local" / "kafka_security.py")
    committed = [line for line in (DOCKER_DIR / "kafka-security.plan").read_text(
        encoding="utf-8").splitlines() if line and not line.startswith("#")]
    assert committed == security.plan(KAFKA_VARS)
    assert {f"user misp_{s} {KAFKA_VARS[s]}" for s in SERVICES} <= set(committed)

    # The image compiles KafkaSecurity.java and carries the plan and the script.
    dockerfile = (DOCKER_DIR / "Dockerfile.kafka-init").read_text(encoding="utf-8")
    assert "deploy/kafka/KafkaSecurity.java" in dockerfile
    assert "deploy/docker/kafka-security.plan /opt/misp/kafka-security.plan" in dockerfile
    assert rendered["services"]["kafka-init"]["build"]["dockerfile"] == (
        "deploy/docker/Dockerfile.kafka-init")

    # kafka-init.sh with its container's environment, `java` standing in for the JVM.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    java = bin_dir / "java"
    java.write_text('#!/bin/sh\nfor a; do last=$a; done\necho "$@" >&2\ncat "$last"\n')
    java.chmod(0o755)
    env = {**rendered["services"]["kafka-init"]["environment"],
           "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "MISP_KAFKA_PLAN": str(DOCKER_DIR / "kafka-security.plan")}
    done = subprocess.run(["bash", str(DOCKER_DIR / "kafka-init.sh")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == security.plan(
        {s: values[KAFKA_VARS[s]] for s in SERVICES})
    assert " KafkaSecurity kafka:9092 " in done.stderr  # one JVM, the program, the broker

    env.pop(KAFKA_VARS["orgs"])
    done = subprocess.run(["bash", str(DOCKER_DIR / "kafka-init.sh")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and KAFKA_VARS["orgs"] in done.stderr


def _properties(text: str) -> dict[str, str]:
    """Java properties as the broker reads them: the last value of a key wins."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def test_the_broker_takes_clients_with_scram_only_under_acls(
        rendered: dict[str, Any], values: dict[str, str], tmp_path: Path) -> None:
    kafka = rendered["services"]["kafka"]
    assert kafka["command"] == ["bash", "/opt/misp/kafka-start.sh"]
    mounts = {v["target"]: v["source"] for v in kafka["volumes"] if v["type"] == "bind"}
    assert mounts["/opt/misp/server.properties.in"] == str(
        ROOT / "deploy" / "kafka" / "server.properties")
    assert "--command-config /tmp/misp-kafka/admin.properties" in " ".join(
        kafka["healthcheck"]["test"])

    # kafka-start.sh with stand-ins for Kafka's tools: what it formats and starts with.
    tools = tmp_path / "kafka" / "bin"
    tools.mkdir(parents=True)
    (tools / "kafka-storage.sh").write_text('#!/bin/sh\necho "$@" > "$MISP_KAFKA_DATA/format"\n')
    (tools / "kafka-server-start.sh").write_text('#!/bin/sh\ncat "$1"\n')
    for tool in tools.iterdir():
        tool.chmod(0o755)
    env = {**kafka["environment"], "PATH": os.environ["PATH"],
           "MISP_KAFKA_HOME": str(tmp_path / "kafka"),
           "MISP_KAFKA_TEMPLATE": mounts["/opt/misp/server.properties.in"],
           "MISP_KAFKA_DATA": str(tmp_path / "data"),
           "MISP_KAFKA_CONF_DIR": str(tmp_path / "conf")}
    done = subprocess.run(["bash", str(DOCKER_DIR / "kafka-start.sh")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    props = _properties(done.stdout)
    admin = values["MISP_KAFKA_ADMIN_PASSWORD"]
    assert props["listeners"] == "SASL_PLAINTEXT://:9092,CONTROLLER://127.0.0.1:9093"
    assert props["advertised.listeners"] == "SASL_PLAINTEXT://kafka:9092"
    assert props["listener.security.protocol.map"] == (
        "CONTROLLER:SASL_PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT")
    assert props["listener.name.sasl_plaintext.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["authorizer.class.name"] == (
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer")
    assert props["super.users"] == "User:admin"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["log.dirs"] == str(tmp_path / "data")
    assert "@" not in "".join(v for k, v in props.items() if k != "controller.quorum.voters")
    assert f"--add-scram SCRAM-SHA-512=[name=admin,password={admin}]" in (
        tmp_path / "data" / "format").read_text()


# ---- compose: PostgreSQL ----------------------------------------------------------------------


def test_postgres_init_makes_each_service_the_owner_of_its_database_alone(
        rendered: dict[str, Any], values: dict[str, str], tmp_path: Path) -> None:
    init = rendered["services"]["postgres-init"]
    assert init["environment"]["PGUSER"] == "postgres"
    assert init["environment"]["PGPASSWORD"] == values["POSTGRES_PASSWORD"]
    assert init["environment"]["MISP_SERVICES"].split() == SERVICES
    # postgres-init.sh with `psql` standing in: what it sends, and with which password.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "psql.log"
    psql = bin_dir / "psql"
    psql.write_text(f'#!/bin/sh\n{{ echo "ARGS $*"; echo "PASSWORD ${{MISP_PG_PASSWORD:-}}"; '
                    f'[ -t 0 ] || cat; }} >> {log}\n')
    psql.chmod(0o755)
    env = {**init["environment"], "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(DOCKER_DIR / "postgres-init.sh")], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    calls = log.read_text().split("ARGS ")
    for svc in SERVICES:
        [roles] = [c for c in calls if f"-d postgres -v role=misp_{svc}" in c]
        assert f"PASSWORD {values[PG_VARS[svc]]}\n" in roles
        assert "\\getenv password MISP_PG_PASSWORD" in roles
        assert "PASSWORD :'password'" in roles and "NOSUPERUSER" in roles
        assert "CREATE DATABASE %I OWNER %I" in roles
        assert 'ALTER DATABASE :"role" OWNER TO :"role"' in roles
        assert 'REVOKE ALL ON DATABASE :"role" FROM PUBLIC' in roles
    # No password on a command line.
    assert not any(values[v] in line for v in PG_VARS.values()
                   for line in log.read_text().splitlines() if line.startswith("ARGS"))

    log.unlink()
    env.pop(PG_VARS["jobs"])
    done = subprocess.run(["bash", str(DOCKER_DIR / "postgres-init.sh")], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and PG_VARS["jobs"] in done.stderr
    assert not log.exists()  # refused before touching anything


# ---- compose: key files -----------------------------------------------------------------------


def test_compose_mounts_each_key_where_its_setting_points_and_nowhere_else(
        rendered: dict[str, Any], values: dict[str, str]) -> None:
    files = {name: s["file"] for name, s in rendered["secrets"].items()}
    assert files == {"audit_signing_key": values["MISP_AUDIT_SIGNING_KEY_FILE"],
                     "audit_verify_key": values["MISP_AUDIT_VERIFY_KEY_FILE"],
                     "mailer_instance_key": values["MISP_MAILER_INSTANCE_KEY_FILE"],
                     "gateway_tls_cert": values["MISP_GATEWAY_TLS_CERT_FILE"],
                     "gateway_tls_key": values["MISP_GATEWAY_TLS_KEY_FILE"]}
    for setting, (secret, _k8s, readers) in KEYS.items():
        holders = set()
        for name, container in rendered["services"].items():
            mounted = {s["source"]: s.get("target") or f"/run/secrets/{s['source']}"
                       for s in container.get("secrets", [])}
            if secret in mounted:
                holders.add(name)
                assert container["environment"][setting] == mounted[secret], name
            else:
                assert setting not in container.get("environment", {}), name
        assert holders == readers, setting


def test_compose_gives_the_certificate_to_the_gateway_alone_where_its_config_reads_it(
        rendered: dict[str, Any]) -> None:
    conf = (ROOT / "deploy" / "gateway" / "nginx.container.conf").read_text(encoding="utf-8")
    assert f"ssl_certificate {GATEWAY_TLS['gateway_tls_cert']};" in conf
    assert f"ssl_certificate_key {GATEWAY_TLS['gateway_tls_key']};" in conf
    for name, container in rendered["services"].items():
        mounted = {s["source"]: s.get("target") for s in container.get("secrets", [])}
        if name == "gateway":
            assert mounted == GATEWAY_TLS
        elif name == CONSOLE:  # the certificate alone, not its key
            assert mounted == {"gateway_tls_cert": CONSOLE_CA}
            assert container["environment"]["CONSOLE_GATEWAY_CA"] == CONSOLE_CA
        else:
            assert not set(mounted) & set(GATEWAY_TLS), name
    published = {p["target"]: p["published"] for p in rendered["services"]["gateway"]["ports"]}
    assert published == {8080: "8080", 8443: "8443"}


# ---- compose: the web console -----------------------------------------------------------------


def test_the_console_holds_no_secret_and_calls_the_gateway_over_https(
        rendered: dict[str, Any], values: dict[str, str]) -> None:
    console = rendered["services"][CONSOLE]
    assert owner(console) == CONSOLE and console["command"] == ["python", "-m", CONSOLE, "api"]
    env = console["environment"]
    assert env["CONSOLE_GATEWAY_URL"] == "https://gateway:8443"  # plain HTTP is redirected
    assert env["CONSOLE_GATEWAY_TLS_NAME"] == values[TLS_NAME_VAR]
    assert env["CONSOLE_GATEWAY_CA"] == CONSOLE_CA
    assert (env["CONSOLE_HTTP_HOST"], env["CONSOLE_HTTP_PORT"]) == ("0.0.0.0", "8107")
    # No database, no Kafka, no pepper, no state: nothing of *env nor of a service's env.
    assert not [k for k in env if "DATABASE" in k or "KAFKA" in k or "PEPPER" in k
                or k in ("MISP_PG_URL", "MISP_STATE_DIR")], env
    assert not console.get("volumes")
    secret_values = [v for k, v in values.items() if k != TLS_NAME_VAR]
    assert not any(v in json.dumps(console) for v in secret_values
                   if not v.startswith("/")), "the console holds a secret"
    # The gateway starts once the console answers; the console needs nothing to start.
    assert console["healthcheck"]["test"][:3] == ["CMD", "python", "-c"]
    assert "http://127.0.0.1:8107/console/health" in console["healthcheck"]["test"][3]
    assert rendered["services"]["gateway"]["depends_on"][CONSOLE]["condition"] == (
        "service_healthy")
    assert not console.get("depends_on")


def test_the_gateway_believes_the_forwarded_address_of_the_console_alone(
        rendered: dict[str, Any]) -> None:
    """The console forwards the browser's address: the gateway must believe it (or every
    browser shares the console's address at the login limits and the abuse detector), and
    from the console's fixed address only, outside the range Docker hands out."""
    (pool,) = rendered["networks"]["default"]["ipam"]["config"]
    address = rendered["services"][CONSOLE]["networks"]["default"]["ipv4_address"]
    assert ipaddress.ip_address(address) in ipaddress.ip_network(pool["subnet"])
    assert ipaddress.ip_address(address) not in ipaddress.ip_network(pool["ip_range"])
    conf = (ROOT / "deploy" / "gateway" / "nginx.container.conf").read_text(encoding="utf-8")
    assert re.findall(r"set_real_ip_from (\S+);", conf) == [
        "127.0.0.0/8", "::1/128", f"{address}/32"]
    gateway = (ROOT / "deploy" / "k8s" / "base" / "gateway.yaml").read_text(encoding="utf-8")
    config = yaml.safe_load(
        (ROOT / "deploy" / "k8s" / "base" / "config.yaml").read_text(encoding="utf-8"))
    assert re.findall(r"set_real_ip_from (\S+);", gateway) == [
        "127.0.0.0/8", "::1/128", config["data"]["MISP_TRUSTED_PROXIES"]]


# ---- Kubernetes -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    """The prod overlay: the base with your own servers (tests/deploy/test_k8s_overlays.py
    builds every overlay)."""
    done = subprocess.run([_tool("kubectl"), "kustomize",
                           str(ROOT / "deploy" / "k8s" / "overlays" / "prod")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def _secrets_of(pod: dict[str, Any]) -> set[str]:
    names = {v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
    for c in pod.get("initContainers", []) + pod["containers"]:
        names |= {e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e}
        names |= {e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", [])
                  if "secretKeyRef" in e.get("valueFrom", {})}
    return names


def test_kubernetes_gives_each_service_its_own_credentials_only(
        manifests: list[dict[str, Any]]) -> None:
    deployments = [d for d in manifests if d["kind"] == "Deployment"
                   and d["metadata"]["labels"]["app.kubernetes.io/name"] in SERVICES]
    assert {d["metadata"]["labels"]["app.kubernetes.io/name"] for d in deployments} == set(
        SERVICES)
    key_secrets = {k8s for _s, k8s, _r in KEYS.values()}
    for d in deployments:
        svc = d["metadata"]["labels"]["app.kubernetes.io/name"]
        pod = d["spec"]["template"]["spec"]
        assert _secrets_of(pod) - key_secrets == {"misp-secrets", f"misp-{svc}-credentials"}, (
            d["metadata"]["name"])
        for c in pod.get("initContainers", []) + pod["containers"]:
            refs = [e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e]
            assert f"misp-{svc}-credentials" in refs, (d["metadata"]["name"], c["name"])
            assert "MISP_PG_URL" not in {e["name"] for e in c.get("env", [])}
    [config] = [m for m in manifests if m["kind"] == "ConfigMap"
                and m["metadata"]["name"] == "misp-env"]
    assert "MISP_PG_URL" not in config["data"]
    assert config["data"]["MISP_ENVIRONMENT"] == "production"
    assert config["data"]["MISP_KAFKA_SECURITY_PROTOCOL"].startswith("SASL_")
    assert not any(m["kind"] == "Secret" for m in manifests)  # made out of band, never committed


def test_kubernetes_gives_the_tls_secret_to_the_gateway_alone(
        manifests: list[dict[str, Any]]) -> None:
    holders = set()
    for d in manifests:
        if d["kind"] != "Deployment":
            continue
        pod = d["spec"]["template"]["spec"]
        if "misp-gateway-tls" in _secrets_of(pod):
            holders.add(d["metadata"]["name"])
    assert holders == {"gateway", CONSOLE}
    [console] = [d for d in manifests if d["kind"] == "Deployment"
                 and d["metadata"]["name"] == CONSOLE]
    pod = console["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if "secret" in v]
    assert [i["key"] for i in volume["secret"]["items"]] == ["tls.crt"]  # never the key
    [container] = pod["containers"]
    [mount] = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert mount["readOnly"] is True
    assert env["CONSOLE_GATEWAY_CA"] == f"{mount['mountPath']}/tls.crt"
    [gateway] = [d for d in manifests if d["kind"] == "Deployment"
                 and d["metadata"]["name"] == "gateway"]
    pod = gateway["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if "secret" in v]
    [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["mountPath"] == "/etc/nginx/tls" and mount["readOnly"] is True
    assert sorted(i["path"] for i in volume["secret"]["items"]) == ["tls.crt", "tls.key"]
    [service] = [m for m in manifests if m["kind"] == "Service"
                 and m["metadata"]["name"] == "gateway"]
    assert {p["port"]: p["targetPort"] for p in service["spec"]["ports"]} == {
        8080: "http", 443: "https"}


def test_kubernetes_mounts_each_key_secret_where_its_setting_points(
        manifests: list[dict[str, Any]]) -> None:
    holders: dict[str, set[str]] = {setting: set() for setting in KEYS}
    for d in manifests:
        if d["kind"] != "Deployment":
            continue
        pod = d["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for c in pod.get("initContainers", []) + pod["containers"]:
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            mounts = c.get("volumeMounts", [])
            for setting, (_compose, secret, _readers) in KEYS.items():
                mounted = [m for m in mounts
                           if volumes[m["name"]].get("secret", {}).get("secretName") == secret]
                if setting not in env:
                    assert not mounted, (d["metadata"]["name"], c["name"], secret)
                    continue
                holders[setting].add(d["metadata"]["name"])
                path = PurePosixPath(env[setting])
                [mount] = mounted
                assert mount["readOnly"] is True
                assert PurePosixPath(mount["mountPath"]) == path.parent
                items = volumes[mount["name"]]["secret"]["items"]
                assert [i["path"] for i in items] == [path.name]
    for setting, (_compose, _secret, readers) in KEYS.items():
        assert holders[setting] == readers, setting


def test_kubernetes_runs_the_console_stateless_behind_the_gateway_s_https_service(
        manifests: list[dict[str, Any]]) -> None:
    [console] = [d for d in manifests if d["kind"] == "Deployment"
                 and d["metadata"]["name"] == CONSOLE]
    labels = console["spec"]["template"]["metadata"]["labels"]
    assert (labels["app.kubernetes.io/name"], labels["app.kubernetes.io/component"]) == (
        CONSOLE, "api")
    assert console["spec"]["replicas"] == 2
    pod = console["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["args"] == ["python", "-m", CONSOLE, "api"]
    assert _secrets_of(pod) == {"misp-gateway-tls"}  # no credentials, not misp-secrets
    assert [e["configMapRef"]["name"] for e in container["envFrom"]] == ["misp-env"]
    env = {e["name"]: e for e in container["env"]}
    assert not [k for k in env if "DATABASE" in k or "KAFKA" in k or "PEPPER" in k]
    assert env["CONSOLE_GATEWAY_TLS_NAME"]["valueFrom"]["configMapKeyRef"] == {
        "name": "misp-env", "key": TLS_NAME_VAR}  # no `optional`: required
    [gateway_service] = [m for m in manifests if m["kind"] == "Service"
                         and m["metadata"]["name"] == "gateway"]
    https = {p["name"]: p["port"] for p in gateway_service["spec"]["ports"]}["https"]
    assert env["CONSOLE_GATEWAY_URL"]["value"] == f"https://gateway:{https}"
    assert container["readinessProbe"]["httpGet"]["path"] == "/console/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/console/health"
    assert not pod.get("initContainers")
    # The Service the gateway's config names (upstream console:8107), onto these pods.
    [service] = [m for m in manifests if m["kind"] == "Service"
                 and m["metadata"]["name"] == CONSOLE]
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": CONSOLE,
                                           "app.kubernetes.io/component": "api"}
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(8107, "http")]
    assert {p["containerPort"] for p in container["ports"]} == {8107}
    conf = (ROOT / "deploy" / "gateway" / "nginx.container.conf").read_text(encoding="utf-8")
    assert "server console:8107 " in conf


# ---- compose and Kubernetes: the settings service finds the others ---------------------------


def _api_ports() -> dict[str, int]:
    return dict(API_PORTS)


def _assert_peer_urls(env: dict[str, str], api_hosts: set[str], where: str) -> None:
    """SETTINGS_DIAGNOSTICS_URLS and SETTINGS_OPENAPI_URLS parse as the settings service reads
    them and point at each service's API (not 127.0.0.1, which is the settings container)."""
    from settings.settings import SettingsSettings

    ports = _api_ports()
    with pytest.MonkeyPatch.context() as patch:  # read from the environment, as a process does
        for name in ("SETTINGS_DIAGNOSTICS_URLS", "SETTINGS_OPENAPI_URLS"):
            patch.setenv(name, env[name])
        parsed = SettingsSettings()
    assert set(parsed.diagnostics_urls) == set(ports), where
    assert set(parsed.openapi_urls) == set(ports) - {"settings"}, where
    for svc, url in [*parsed.diagnostics_urls.items(), *parsed.openapi_urls.items()]:
        parts = urlsplit(url)
        assert (parts.hostname, parts.port) == (f"{svc}-api", ports[svc]), (where, url)
        assert f"{svc}-api" in api_hosts, (where, url)


def test_compose_gives_the_settings_service_every_apis_address(rendered: dict[str, Any]) -> None:
    apis = {name for name in rendered["services"] if name.endswith("-api")}
    for name, container in rendered["services"].items():
        if owner(container) == "settings":
            _assert_peer_urls(container["environment"], apis, name)


def test_kubernetes_gives_the_settings_service_every_apis_address() -> None:
    docs = [d for d in yaml.safe_load_all(
        (ROOT / "deploy" / "k8s" / "base" / "services.yaml").read_text(encoding="utf-8")) if d]
    apis = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    checked = 0
    for d in docs:
        if d["kind"] != "Deployment" or d["metadata"]["labels"]["app.kubernetes.io/name"] != \
                "settings":
            continue
        for container in d["spec"]["template"]["spec"]["containers"]:
            _assert_peer_urls({e["name"]: e["value"] for e in container["env"]}, apis,
                              d["metadata"]["name"])
            checked += 1
    assert checked >= 3  # api, relay, consume at least
