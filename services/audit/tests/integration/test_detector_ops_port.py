"""The abuse detector's ops port, as the other roles that serve no HTTP have one: the real
`python -m audit detect` process (faust, the real broker) answers `/healthz` 200 while its worker
runs and shows its blocks counter on `/metrics`; once stopped, nothing listens."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import httpx

from misp_platform.testing import ChildProcesses


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthz(port: int) -> int | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code
    except httpx.TransportError:
        return None


def test_the_detector_is_healthy_on_its_ops_port_while_it_runs(tmp_path: Path) -> None:
    port = _free_port()
    children = ChildProcesses()
    # faust keeps its data directory (<app id>-data) under the working directory
    env = {**os.environ, "MISP_METRICS_PORT": str(port)}
    detector = children.start([sys.executable, "-m", "audit", "detect"],
                              tmp_path / "detector.log", env=env)
    try:
        deadline = time.monotonic() + 120
        while _healthz(port) != 200:
            assert detector.poll() is None, (tmp_path / "detector.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the detector never became healthy"
            time.sleep(0.5)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert "# TYPE abuse_blocks_total counter" in metrics
    finally:
        children.stop_all()
    assert detector.returncode is not None
    assert _healthz(port) is None
