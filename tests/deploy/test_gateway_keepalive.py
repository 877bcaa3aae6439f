"""Only the gateway closes an idle connection to an API: every upstream's keepalive_timeout is
shorter than the APIs' own (uvicorn's timeout_keep_alive). The other way round, nginx could send
a request on a connection uvicorn is closing: a reset, which the gateway answers 503 (seen once
in a run of the read-your-writes rounds)."""

from __future__ import annotations

import re
from pathlib import Path

from misp_platform.roles import UPSTREAM_IDLE_S
from misp_platform.testing import load_script

ROOT = Path(__file__).resolve().parents[2]


def test_every_upstream_closes_idle_connections_before_the_api_does() -> None:
    render = load_script(ROOT / "deploy" / "gateway" / "render.py", "gateway_render_keepalive")
    services = render.load_services()
    locations = render.expand(render.load_routes(services=services), services)
    for mode, state_dir in (("local", Path("/state")), ("container", None)):
        conf = render.render(locations, services, mode=mode, state_dir=state_dir)
        upstreams = re.findall(r"upstream (\w+) \{(.*?)\}", conf, re.S)
        assert {name for name, _ in upstreams} == {*services, render.CONSOLE}, mode
        for name, body in upstreams:
            [timeout] = re.findall(r"keepalive_timeout (\d+)s;", body)
            assert 0 < int(timeout) < UPSTREAM_IDLE_S, (mode, name, timeout)
