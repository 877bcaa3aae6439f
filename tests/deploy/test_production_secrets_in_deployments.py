"""Compose and Kubernetes run the containers as production and carry no default secret: compose
refuses to start until the pepper and the PostgreSQL passwords are set, Kubernetes takes them from
its Secrets (tests/deploy/test_trust_in_deployments.py checks every secret and who holds it)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_compose_runs_production_and_requires_its_secrets() -> None:
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    env = text.split("x-env: &env\n", 1)[1].split("\n\n", 1)[0]
    assert "\n  MISP_ENVIRONMENT: production" in "\n" + env
    assert re.search(r"^  MISP_PEPPER: \$\{MISP_PEPPER:\?set MISP_PEPPER", env, re.M)
    assert re.search(r"^      POSTGRES_PASSWORD: \$\{POSTGRES_PASSWORD:\?", text, re.M)
    for service in ("identity", "orgs", "audit", "jobs", "mailer", "settings"):
        upper = service.upper()
        assert re.search(rf"^  {upper}_DATABASE_URL: .*\$\{{MISP_PG_{upper}_PASSWORD:\?", text,
                         re.M), service
    # `:-` gives a default: no secret may have one (it was 64 zeros, and "postgres").
    assert not re.search(r"\$\{(MISP_PEPPER|[A-Z_]*PASSWORD|[A-Z_]*_FILE):-", text)


def test_kubernetes_runs_production_with_secrets_from_its_secret() -> None:
    config = (ROOT / "deploy/k8s/base/config.yaml").read_text(encoding="utf-8")
    data = config.split("\ndata:\n", 1)[1]
    assert re.search(r'^  MISP_ENVIRONMENT: "production"$', data, re.M)
    assert not re.search(r"^  MISP_PEPPER:", data, re.M)
    services = (ROOT / "deploy/k8s/base/services.yaml").read_text(encoding="utf-8")
    assert services.count("name: misp-secrets") >= 6


def test_every_container_of_a_service_shares_its_state_volume_and_only_its_own() -> None:
    """The mailer's GnuPG home and identity's admin key file outlive a container and are the
    same in every process of the service (the audit's and the mailer's keys are secrets)."""
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    services_part = text.split("\nservices:\n", 1)[1].split("\nvolumes:\n", 1)[0]
    blocks = re.split(r"\n(?=  [a-z][a-z0-9-]*:\n)", services_part)
    checked = 0
    for block in blocks:
        name = block.strip().split(":", 1)[0]
        service = name.split("-", 1)[0]
        if "command: [python, -m," not in block:
            continue
        mounts = re.findall(r"- ([a-z]+)-state:/var/lib/misp", block)
        if name == "console":  # not a service of services.tsv: it keeps no state
            assert mounts == [], f"{name} mounts {mounts}"
            continue
        assert mounts == [service], f"{name} mounts {mounts}"
        checked += 1
    assert checked >= 6 * 4  # migrate, api, relay and consume of each service at least
    assert all(f"\n  {s}-state:" in text for s in
               ("identity", "orgs", "audit", "jobs", "mailer", "settings"))
