"""The ops port of the non-HTTP roles, served in-process on a free port: /metrics is this
process's registry, /healthz follows the role's loop and its event loop."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request

import pytest

from misp_platform.config import settings_class
from misp_platform.ops_port import OpsPort, serving


def get(port: int, path: str) -> tuple[int, str, str]:
    """Status, body and content type of GET http://127.0.0.1:<port><path> (blocking)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode(), answer.headers["Content-Type"]
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), error.headers["Content-Type"]


async def aget(port: int, path: str) -> tuple[int, str, str]:
    """The same from a thread, so that the event loop under test goes on turning."""
    return await asyncio.to_thread(get, port, path)


async def test_metrics_shows_this_processes_registry_in_prometheus_text() -> None:
    ops = OpsPort(0)
    ops.start()
    port = ops.port
    try:
        assert port
        status, body, content_type = await aget(port, "/metrics")
        assert status == 200
        assert content_type.startswith("text/plain")
        assert "# TYPE events_published_total counter" in body
        assert "outbox_oldest_age_seconds " in body
        assert (await aget(port, "/elsewhere"))[0] == 404
    finally:
        ops.stop()
    try:
        get(port, "/metrics")
    except urllib.error.URLError:
        pass
    else:
        raise AssertionError("the port still answers after stop()")


async def test_healthz_is_503_until_the_loop_runs_200_while_it_runs_and_503_after() -> None:
    ops = OpsPort(0)
    ops.start()
    try:
        assert ops.port
        assert (await aget(ops.port, "/healthz"))[0] == 503
        async with ops.alive():
            status, body, _ = await aget(ops.port, "/healthz")
            assert (status, body) == (200, "ok\n")
        assert (await aget(ops.port, "/healthz"))[0] == 503
    finally:
        ops.stop()


async def test_healthz_is_503_while_the_event_loop_is_blocked() -> None:
    ops = OpsPort(0, stale_after_s=0.4)
    ops.start()
    try:
        assert ops.port
        async with ops.alive():
            assert (await aget(ops.port, "/healthz"))[0] == 200
            time.sleep(0.6)  # noqa: ASYNC251 (the point: a stuck call blocks this loop)
            assert get(ops.port, "/healthz")[0] == 503  # asked from inside the blocked loop
            await asyncio.sleep(0.2)  # the loop turns again: its stamp is fresh
            assert (await aget(ops.port, "/healthz"))[0] == 200
    finally:
        ops.stop()


def test_the_port_is_the_settings_and_0_opens_none(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MISP_METRICS_PORT", "MISP_METRICS_HOST", "ORGS_METRICS_PORT"):
        monkeypatch.delenv(name, raising=False)
    orgs = settings_class("orgs")
    off = OpsPort.from_settings(orgs())
    off.start()
    assert off.port is None
    off.stop()
    monkeypatch.setenv("MISP_METRICS_PORT", "9464")
    monkeypatch.setenv("MISP_METRICS_HOST", "0.0.0.0")
    on = OpsPort.from_settings(orgs())
    assert (on.requested_port, on.host) == (9464, "0.0.0.0")
    monkeypatch.setenv("ORGS_METRICS_PORT", "9465")
    assert OpsPort.from_settings(orgs()).requested_port == 9465


async def test_serving_keeps_the_health_state_without_a_port_too() -> None:
    async with serving(settings_class("orgs")(metrics_port=0)) as ops:
        assert ops.port is None and not ops.healthy()
        async with ops.alive():
            assert ops.healthy()
        assert not ops.healthy()
