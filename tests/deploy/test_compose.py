"""docker-compose.yml holds (issue 18, item 6): every long-running container has a healthcheck and
every start waits on a condition, every piece of state a restart must keep is on a named volume
or in a secret, every image is pinned, the mail relay settings reach the mailer's processes, and
the containers run locked down where their images allow.

Needs the docker CLI (`docker compose config`, no engine); nothing starts a container."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailer.settings import MailerSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
OURS = {f"misp-admin-plane:{VERSION}", f"misp-kafka-init:{VERSION}"}
KEY_FILE_VARS = ["MISP_AUDIT_SIGNING_KEY_FILE", "MISP_AUDIT_VERIFY_KEY_FILE",
                 "MISP_MAILER_INSTANCE_KEY_FILE", "MISP_GATEWAY_TLS_CERT_FILE",
                 "MISP_GATEWAY_TLS_KEY_FILE"]
SMTP_VARS = ["MAILER_SMTP_HOST", "MAILER_SMTP_PORT", "MAILER_SMTP_STARTTLS",
             "MAILER_SMTP_IMPLICIT_TLS", "MAILER_SMTP_USERNAME", "MAILER_SMTP_PASSWORD"]
# Where each image keeps what a restart must find again.
STATE = {"postgres": "/var/lib/postgresql/data", "apache/kafka": "/var/lib/kafka/data"}
STATE_DIR = "/var/lib/misp"  # MISP_STATE_DIR: the mailer's GnuPG home, identity's key files
OPS_ROLES = {"relay", "consume", "worker", "scheduler", "detect"}


def _required() -> list[str]:
    text = COMPOSE.read_text(encoding="utf-8")
    return sorted(set(re.findall(r"\$\{([A-Z0-9_]+):\?", text)))


@pytest.fixture(scope="module")
def values(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A value for every required variable (the key files: paths of files that exist)."""
    out = {var: secrets.token_hex(24) for var in _required() if var not in KEY_FILE_VARS}
    keys = tmp_path_factory.mktemp("keys")
    for var in KEY_FILE_VARS:
        (keys / var.lower()).write_text(secrets.token_hex(16), encoding="utf-8")
        out[var] = str(keys / var.lower())
    return out


def compose_config(env: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    """`docker compose config` with exactly these variables of ours, no `.env` file."""
    docker = shutil.which("docker")
    assert docker, "docker (the CLI with the compose plugin) is not installed: these tests need it"
    ours = set(_required()) | set(SMTP_VARS)
    base = {k: v for k, v in os.environ.items() if k not in ours}
    empty = tmp_path / "empty.env"
    empty.write_text("", encoding="utf-8")
    done = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "--project-directory", str(ROOT),
         "--env-file", str(empty), "config", "--format", "json"],
        env={**base, **env}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = json.loads(done.stdout)
    return config


@pytest.fixture(scope="module")
def rendered(values: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return compose_config(values, tmp_path_factory.mktemp("compose"))


def one_shot(container: dict[str, Any]) -> bool:
    """An init or migrate container: it runs once per `up` and exits."""
    return container.get("restart") == "no"


def running(rendered: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: c for n, c in rendered["services"].items() if not one_shot(c)}


def command_of(container: dict[str, Any]) -> list[str]:
    return [str(a) for a in container.get("command") or []]


def test_the_file_parses_with_its_required_variables(rendered: dict[str, Any]) -> None:
    names = set(rendered["services"])
    assert {"postgres", "kafka", "gateway", "console", "mailpit", "identity-api",
            "audit-detector", "jobs-scheduler"} <= names


def test_every_long_running_container_has_a_healthcheck(rendered: dict[str, Any]) -> None:
    for name, container in running(rendered).items():
        check = container.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name


def test_the_probes_match_the_roles(rendered: dict[str, Any]) -> None:
    """APIs on /ready (as Kubernetes' readiness), relay, consume, worker, scheduler and the abuse
    detector on the ops port's /healthz, which their environment turns on at that port."""
    checked = 0
    for name, container in running(rendered).items():
        command = command_of(container)
        if command[:2] != ["python", "-m"] or command[2] == "console":
            continue
        probe = " ".join(container["healthcheck"]["test"])
        role = command[3]
        env = container["environment"]
        if role == "api":
            assert re.search(rf"127\.0\.0\.1:{env[f'{command[2].upper()}_HTTP_PORT']}/ready'",
                             probe), name
            assert "MISP_METRICS_PORT" not in env, name
        else:
            assert role in OPS_ROLES, name
            port = env.get("MISP_METRICS_PORT")
            assert port and f"127.0.0.1:{port}/healthz'" in probe, name
        checked += 1
    assert checked >= 6 * 3


def test_every_dependency_waits_on_a_condition(rendered: dict[str, Any]) -> None:
    """Healthy for what keeps running (and has a healthcheck), completed for one-shots; no
    bare `service_started`, which only says a process was forked."""
    services = rendered["services"]
    awaited_one_shots = set()
    for name, container in services.items():
        for target, dep in (container.get("depends_on") or {}).items():
            condition = dep.get("condition")
            if one_shot(services[target]):
                assert condition == "service_completed_successfully", (name, target, condition)
                awaited_one_shots.add(target)
            else:
                assert condition == "service_healthy", (name, target, condition)
                assert services[target].get("healthcheck"), (name, target)
    # every init and migration is awaited by something
    assert awaited_one_shots == {n for n, c in services.items() if one_shot(c)}


def test_every_image_is_pinned(rendered: dict[str, Any]) -> None:
    for name, container in rendered["services"].items():
        image = container.get("image", "")
        assert image, f"{name} has no image"
        if "@sha256:" in image:
            continue
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image}"
        # a release (major.minor at least), not a floating major line such as postgres:15
        assert re.fullmatch(r"v?\d+\.\d+(\.\d+)?(-[a-z0-9.]+)?", tag), f"{name}: {image} floats"
        if container.get("build"):
            assert image in OURS, f"{name}: {image}, not the project's version {VERSION}"


def test_our_image_tag_is_the_one_kubernetes_pins() -> None:
    kustomization = yaml.safe_load(
        (ROOT / "deploy/k8s/base/kustomization.yaml").read_text(encoding="utf-8"))
    tags = {i["name"]: i.get("newTag") for i in kustomization["images"]}
    assert tags["misp-admin-plane"] == VERSION


def _mounts(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["target"]: v for v in container.get("volumes") or []}


def test_every_piece_of_state_is_on_a_named_volume(rendered: dict[str, Any]) -> None:
    named = set(rendered.get("volumes") or {})
    checked = 0
    for name, container in rendered["services"].items():
        image = container["image"].rpartition(":")[0]
        # the servers' data (postgres-init uses the server's image, as a client)
        targets = [STATE[image]] if image in STATE and not one_shot(container) else []
        env = container.get("environment") or {}
        if "MISP_STATE_DIR" in env:
            assert env["MISP_STATE_DIR"] == STATE_DIR, name
            targets.append(STATE_DIR)
        mounts = _mounts(container)
        for target in targets:
            mount = mounts.get(target)
            assert mount, f"{name}: {target} is in the container's writable layer"
            assert mount["type"] == "volume" and mount["source"] in named, (name, mount)
            checked += 1
    assert checked >= 2 + 6 * 4


def test_the_kafka_volume_is_where_the_broker_keeps_its_log() -> None:
    start = (ROOT / "deploy/docker/kafka-start.sh").read_text(encoding="utf-8")
    assert f'DATA="${{MISP_KAFKA_DATA:-{STATE["apache/kafka"]}}}"' in start


def test_our_containers_write_only_to_volumes_and_tmpfs(rendered: dict[str, Any]) -> None:
    """A read-only root filesystem: nothing a restart needs can hide in the writable layer;
    the keys come from secrets, read-only."""
    for name, container in rendered["services"].items():
        if container["image"] not in OURS:
            continue
        assert container.get("read_only") is True, name
        assert any(t.split(":")[0] == "/tmp" for t in container.get("tmpfs") or []), name
        for secret in container.get("secrets") or []:
            assert secret["target"].startswith("/run/secrets/") or secret["target"].startswith(
                "/etc/nginx/tls/"), (name, secret)


def test_every_container_drops_its_capabilities_and_gains_no_privilege(
        rendered: dict[str, Any]) -> None:
    for name, container in rendered["services"].items():
        assert container.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in (container.get("security_opt") or []), name
        # only the images whose entrypoint starts as root and drops to its user add some back
        if container.get("cap_add"):
            assert name in ("postgres", "gateway"), name


def test_restart_policies(rendered: dict[str, Any]) -> None:
    for name, container in rendered["services"].items():
        command = command_of(container)
        if "migrate" in command or name.endswith("-init"):
            assert container.get("restart") == "no", name
        else:
            assert container.get("restart") == "unless-stopped", name


def _mailers(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: c for n, c in config["services"].items() if command_of(c)[:3] ==
            ["python", "-m", "mailer"]}


def test_the_mail_relay_settings_are_the_mailers(rendered: dict[str, Any]) -> None:
    fields = MailerSettings.model_fields
    for var in SMTP_VARS:
        assert var.removeprefix("MAILER_").lower() in fields, var


def test_by_default_every_mailer_process_sends_to_the_development_relay(
        rendered: dict[str, Any]) -> None:
    mailers = _mailers(rendered)
    assert {"mailer-api", "mailer-consume", "mailer-worker"} <= set(mailers)
    relay = rendered["services"]["mailpit"]
    assert relay.get("healthcheck")
    for name, container in mailers.items():
        env = container["environment"]
        assert env["MAILER_SMTP_HOST"] == "mailpit", name
        assert env["MAILER_SMTP_PORT"] == "1025", name
        assert env["MAILER_SMTP_STARTTLS"] == env["MAILER_SMTP_IMPLICIT_TLS"] == "false", name
        assert not env.get("MAILER_SMTP_PASSWORD"), name  # none, and never a default one
    # the relay's web page stays on the host's loopback
    assert [p.get("host_ip") for p in relay.get("ports") or []] == ["127.0.0.1"]


def test_the_mail_relay_is_set_through_compose_variables(
        values: dict[str, str], tmp_path: Path) -> None:
    smtp = {"MAILER_SMTP_HOST": "smtp.example.org", "MAILER_SMTP_PORT": "465",
            "MAILER_SMTP_STARTTLS": "false", "MAILER_SMTP_IMPLICIT_TLS": "true",
            "MAILER_SMTP_USERNAME": "misp", "MAILER_SMTP_PASSWORD": secrets.token_hex(12)}
    config = compose_config({**values, **smtp}, tmp_path)
    for name, container in _mailers(config).items():
        env = container["environment"]
        assert {k: env.get(k) for k in smtp} == smtp, name
    # and to no other container
    for name, container in config["services"].items():
        if name not in _mailers(config):
            assert not set(container.get("environment") or {}) & set(smtp), name
    assert smtp["MAILER_SMTP_PASSWORD"] not in COMPOSE.read_text(encoding="utf-8")
