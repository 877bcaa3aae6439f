"""Every service runs as real processes behind the real nginx gateway (started by `make test`)."""

from __future__ import annotations

import os

import httpx
import pytest

from misp_contracts.topics import SERVICES

GATEWAY = os.environ.get("MISP_GATEWAY_URL", "http://127.0.0.1:8080")


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_answers_health_and_ready_through_the_gateway(service: str) -> None:
    health = httpx.get(f"{GATEWAY}/_svc/{service}/health", timeout=10)
    assert health.status_code == 200
    assert health.json()["service"] == service
    ready = httpx.get(f"{GATEWAY}/_svc/{service}/ready", timeout=10)
    assert ready.status_code == 200, ready.text


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_exposes_prometheus_metrics_to_operators(service: str) -> None:
    metrics = httpx.get(f"{GATEWAY}/_svc/{service}/metrics", timeout=10)
    assert metrics.status_code == 200
    assert "# TYPE" in metrics.text


def test_an_unknown_path_gets_misp_s_404_body() -> None:
    response = httpx.get(f"{GATEWAY}/no/such/thing", timeout=10)
    assert response.status_code == 404
    assert response.json() == {"name": "Not Found", "message": "Not Found",
                               "url": "/no/such/thing"}



@pytest.mark.parametrize("service", SERVICES)
def test_each_service_says_what_it_is_under_its_api_prefix(service: str) -> None:
    about = httpx.get(f"{GATEWAY}/api/v1/{service}", timeout=10)
    assert about.status_code == 200
    assert about.json()["service"] == service
