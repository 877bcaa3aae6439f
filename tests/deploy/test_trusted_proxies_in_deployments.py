"""Compose and Kubernetes tell the services which peers are their proxies (issue 15, item 3), so
that the audit's ip, authkeys' allowed IPs and the login limits see the client, not the gateway.

Compose: the gateway has a fixed address on the network deploy/generate.py defines, outside the
range Docker hands out, and only that address is trusted: not the whole subnet, whose first
address is the bridge's, the source of connections docker-proxy relays to a published port
(trusting it would let such clients choose their address). Kubernetes: the pod network, a
documented value of the ConfigMap. Reads the files only (no docker, no cluster)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import yaml

from misp_platform.client_address import is_trusted
from misp_platform.config import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "misp-admin-plane:0.1.0"  # the project's version (pyproject.toml)


def trusted(value: str) -> tuple[Any, ...]:
    """The networks a service reads from the value (a bad one raises, as it stops a service)."""
    return ServiceSettings(trusted_proxies=value).trusted_proxy_networks


def test_compose_trusts_the_gateways_fixed_address_alone() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    (pool,) = compose["networks"]["default"]["ipam"]["config"]
    subnet = ipaddress.ip_network(pool["subnet"])
    handed_out = ipaddress.ip_network(pool["ip_range"])
    gateway = compose["services"]["gateway"]
    address = ipaddress.ip_address(gateway["networks"]["default"]["ipv4_address"])
    assert handed_out.subnet_of(subnet) and address in subnet and address not in handed_out
    bridge = next(subnet.hosts())
    apps = {name: c for name, c in compose["services"].items() if c.get("image") == IMAGE}
    assert {"identity-api", "audit-api", "identity-consume"} <= set(apps)
    for name, container in apps.items():
        networks = trusted(container["environment"]["MISP_TRUSTED_PROXIES"])
        assert networks == (ipaddress.ip_network(f"{address}/32"),), name
        assert is_trusted(address, networks) and not is_trusted(bridge, networks), name
        assert not any(is_trusted(host, networks) for host in list(handed_out.hosts())[:8])


def test_kubernetes_trusts_the_pod_network_of_the_configmap() -> None:
    config = yaml.safe_load(
        (ROOT / "deploy" / "k8s" / "base" / "config.yaml").read_text(encoding="utf-8"))
    assert config["kind"] == "ConfigMap" and config["metadata"]["name"] == "misp-env"
    networks = trusted(config["data"]["MISP_TRUSTED_PROXIES"])
    assert networks and all(n.is_private and n.prefixlen >= 8 for n in networks)
    services = (ROOT / "deploy" / "k8s" / "base" / "services.yaml").read_text(encoding="utf-8")
    deployments = [d for d in yaml.safe_load_all(services) if d and d["kind"] == "Deployment"]
    for deployment in deployments:
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            refs = [s.get("configMapRef", {}).get("name") for s in container.get("envFrom", [])]
            assert "misp-env" in refs, deployment["metadata"]["name"]
