"""Per-address rate limits at the gateway (issue 15, item 2), on a real nginx of the test's own.

Two gateways are rendered here in front of an echo server, with limits small enough to reach in
a few requests (per minute, so that nothing refills while a test runs): one trusting loopback's
X-Forwarded-For (the default), so a request from loopback with `X-Forwarded-For: 198.51.100.x`
is that client's; one trusting another network only, so the same header is not believed. Every
test takes addresses of its own (TEST-NET-2, each once), so no test spends another's allowance.
A last test checks the running stack's gateway with the default limits.
"""

from __future__ import annotations

import ipaddress
import random
import secrets
import threading
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from misp_platform.client_address import client_ip, parse_networks
from misp_platform.testing import load_script

from .support import GATEWAY, RENDER, EchoHandler, free_port, own_gateway

render = load_script(RENDER, "gateway_render_abuse_test")
SERVICES = render.load_services(render.DEFAULT_SERVICES)
BURST = 2
LIMIT = f"1r/m burst={BURST}"  # BURST + 1 requests at once, then 429 for a minute
ALLOWED = BURST + 1
TOO_MANY = {"name": "Too Many Requests", "message": "Too Many Requests"}
LIMITED_PATHS = ["/users/login", "/users/login.json", "/users/otp", "/users/forgot",
                 "/users/password_reset/abc123", "/users/register.json"]


# This module's gateways start with empty zones: each address is drawn once, in a random order.
_FRESH = iter(random.sample([f"198.51.100.{n}" for n in range(1, 255)], 254))


def address() -> str:
    return next(_FRESH)


def addresses(n: int) -> list[str]:
    return [address() for _ in range(n)]


def documentation_v6() -> str:
    """A random address of 2001:db8::/32: one the running gateway has not seen before."""
    return str(ipaddress.IPv6Address(0x20010DB8 << 96 | secrets.randbits(96)))


@pytest.fixture(scope="module")
def echo() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _gateway(echo: int, trusted: str, exempt: str) -> Iterator[str]:
    port = free_port()
    args = ["--listen", f"127.0.0.1:{port}", "--trusted-proxies", trusted,
            "--abuse-exempt-networks", exempt,
            *(f"--limit-{zone}={LIMIT}" for zone in render.DEFAULT_LIMITS),
            *(f"--upstream={svc}=127.0.0.1:{echo}" for svc in SERVICES)]
    with own_gateway(lambda _state: args, [port]):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def gateway(echo: int) -> Iterator[str]:
    """Trusts loopback's X-Forwarded-For; loopback is exempt (the defaults)."""
    yield from _gateway(echo, render.LOOPBACK_NETWORKS, render.LOOPBACK_NETWORKS)


@pytest.fixture(scope="module")
def distrustful_gateway(echo: int) -> Iterator[str]:
    """Believes X-Forwarded-For from 192.0.2.0/24 only, exempts nobody."""
    yield from _gateway(echo, "192.0.2.0/24", "")


def _until_refused(call: httpx.Client, url: str, path: str,
                   headers: Callable[[], dict[str, str]]) -> httpx.Response:
    """POSTs (with `headers()` each) until the gateway refuses, at most ALLOWED + 5 times; the
    first ALLOWED pass."""
    for n in range(ALLOWED + 5):
        r = call.post(url + path, headers=headers(), content=b"{}")
        if n < ALLOWED:
            assert r.status_code == 200, (n, r.status_code, r.text)
        elif r.status_code == 429:
            return r
    raise AssertionError(f"{path}: no 429 after {ALLOWED + 5} requests")


def assert_too_many(r: httpx.Response, path: str, retry_after: str) -> None:
    assert r.status_code == 429, r.text
    assert r.json() == {**TOO_MANY, "url": path}
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers.get_list("Retry-After") == [retry_after]
    assert r.headers.get_list("X-Content-Type-Options") == ["nosniff"]
    assert len(r.headers.get_list("X-Request-ID")) == 1


@pytest.mark.parametrize("path", LIMITED_PATHS)
def test_past_the_burst_one_address_gets_429_and_another_still_passes(gateway: str,
                                                                     path: str) -> None:
    flooding, other = addresses(2)
    with httpx.Client(timeout=10) as client:
        r = _until_refused(client, gateway, path, lambda: {"X-Forwarded-For": flooding})
        assert_too_many(r, path, "60")
        passed = client.post(gateway + path, headers={"X-Forwarded-For": other}, content=b"{}")
        assert passed.status_code == 200, passed.text
        again = client.post(gateway + path, headers={"X-Forwarded-For": flooding}, content=b"{}")
        assert again.status_code == 429


def test_the_service_sees_the_forwarded_client_as_the_gateway_does(gateway: str) -> None:
    client = address()
    r = httpx.get(gateway + "/users/view/me", timeout=10,
                  headers={"X-Forwarded-For": f"203.0.113.9, {client}", "Authorization": "k"})
    seen = r.json()["headers"]
    assert seen["x-real-ip"] == client  # nginx's $remote_addr, which the limits key on
    # the services' own rule (misp_platform.client_address) finds the same client
    assert client_ip("127.0.0.1", seen["x-forwarded-for"],
                     parse_networks(render.LOOPBACK_NETWORKS)) == client


def test_a_credential_is_not_limited_as_anonymous(gateway: str) -> None:
    flooding = address()
    credentials = [{"Authorization": "abc"}, {"X-MISP-AUTH": "abc"},
                   {"Cookie": "lang=en; MISP-session=s3ss10n"}]
    with httpx.Client(timeout=10) as client:
        for headers in credentials:
            for _ in range(ALLOWED + 2):
                r = client.get(gateway + "/users/view/me",
                               headers={**headers, "X-Forwarded-For": flooding})
                assert r.status_code == 200, (headers, r.text)
        # the same address without one: the anonymous limit; a look-alike cookie is none
        r = _until_refused(client, gateway, "/admin/users/view/1",
                           lambda: {"X-Forwarded-For": flooding, "Cookie": "NOTMISP-session=x"})
        assert_too_many(r, "/admin/users/view/1", "60")
        # the limited paths are limited even with a credential
        r = _until_refused(client, gateway, "/users/login",
                           lambda: {"X-Forwarded-For": flooding, "Authorization": "abc"})
        assert_too_many(r, "/users/login", "60")


def test_the_exempt_networks_are_never_limited(gateway: str) -> None:
    with httpx.Client(timeout=10) as client:
        for path in [*LIMITED_PATHS, "/admin/users/view/1"]:
            for _ in range(ALLOWED * 3):
                r = client.post(gateway + path, content=b"{}")  # from 127.0.0.1, no XFF
                assert r.status_code == 200, (path, r.text)


def test_a_forwarded_address_from_an_untrusted_peer_is_not_believed(
        distrustful_gateway: str) -> None:
    with httpx.Client(timeout=10) as client:
        first = client.get(distrustful_gateway + "/users/view/me",
                           headers={"X-Forwarded-For": address(), "Authorization": "k"})
        assert first.json()["headers"]["x-real-ip"] == "127.0.0.1"
        # a new X-Forwarded-For each time: all of them count against the peer, 127.0.0.1
        r = _until_refused(client, distrustful_gateway, "/users/login",
                           lambda: {"X-Forwarded-For": address()})
        assert_too_many(r, "/users/login", "60")


def test_the_operator_paths_go_by_the_peer_not_a_forwarded_address(gateway: str) -> None:
    # 127.0.0.2 is a trusted proxy (127.0.0.0/8) but not one of the two operator peers
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=transport, timeout=10) as client:
        r = client.get(gateway + "/_svc/identity/ready", headers={"X-Forwarded-For": "127.0.0.1"})
        assert r.status_code == 403 and r.json()["name"] == "Forbidden"
    r = httpx.get(gateway + "/_svc/identity/ready", headers={"X-Forwarded-For": address()})
    assert r.status_code == 200, r.text


def test_the_rendered_limits_follow_the_settings() -> None:
    locs = render.expand(render.load_routes(render.DEFAULT_ROUTES, SERVICES), SERVICES)
    conf = render.render(locs, SERVICES, mode="container")
    assert "limit_req_zone $misp_form_key zone=misp_login:10m rate=10r/m;" in conf
    assert "limit_req zone=misp_anonymous burst=40 nodelay;" in conf
    assert conf.count("location = /users/login {") == 1  # HTTPS; plain HTTP only redirects
    off = render.Abuse({**render.Abuse.defaults().limits, render.LOGIN: None}, (), ())
    conf = render.render(locs, SERVICES, mode="local", state_dir=Path("/s"), abuse=off)
    assert "misp_login" not in conf and "location = /users/login {" not in conf
    assert "set_real_ip_from" not in conf and "        default 0;\n    }" in conf
    assert render.parse_limit(" 5r/s   burst=7 ") == render.Limit(5, "s", 7)
    assert render.parse_limit("7r/m").retry_after() == 9
    for bad in ("10/m", "0r/s", "10r/h burst=1", "10r/m burst=-1"):
        with pytest.raises(ValueError, match="not a limit"):
            render.parse_limit(bad)
    with pytest.raises(ValueError, match="not a network"):
        render.parse_cidrs("10.0.0.0/8, nonsense")


def test_the_session_cookie_is_identitys() -> None:
    from identity.handlers.login import SESSION_COOKIE

    assert render.SESSION_COOKIE == SESSION_COOKIE


# ---- the running stack's gateway --------------------------------------------------------------


def test_the_running_gateway_limits_a_forwarded_client_at_login() -> None:
    """GET (identity answers 405 without any work) from a random documentation address (IPv6:
    no earlier run can have used it): the default login limit refuses past its burst."""
    flooding, other = documentation_v6(), documentation_v6()
    default = render.parse_limit(render.DEFAULT_LIMITS[render.LOGIN])
    assert default is not None
    with httpx.Client(timeout=10) as client:
        statuses = []
        for _ in range(default.burst + 10):
            r = client.get(GATEWAY + "/users/login", headers={"X-Forwarded-For": flooding})
            statuses.append(r.status_code)
            if r.status_code == 429:
                break
        assert statuses[: default.burst + 1] == [405] * (default.burst + 1), statuses
        assert_too_many(r, "/users/login", str(default.retry_after()))
        assert client.get(GATEWAY + "/users/login",
                          headers={"X-Forwarded-For": other}).status_code == 405
        assert client.get(GATEWAY + "/users/login").status_code == 405  # loopback: exempt
