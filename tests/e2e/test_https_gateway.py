"""HTTPS at the gateway (issue 15, item 1), against the running stack and a real nginx.

`make up` serves https://127.0.0.1:8443 with a certificate of the local CA (.local/tls/ca.pem):
a client that trusts the CA reaches the services, one that does not refuses the certificate.
Every answer carries nosniff and X-Frame-Options, HTTPS ones also HSTS, each once. Plain HTTP is
served to 127.0.0.1 and ::1 only (the suite talks to http://127.0.0.1:8080); a client bound to
127.0.0.2 is another address to the gateway and is sent to HTTPS with a 308. With the loopback
exception off (MISP_GATEWAY_HTTP_FROM_LOOPBACK=redirect, the container default) every plain request
is redirected: shown by a second nginx started here from that rendering, in front of an echo
server, on ports of its own (stopped at the end). The session cookie is Secure over HTTPS, logout
is POST only, and PyMISP works with `ssl=<the CA>`.
"""

from __future__ import annotations

import os
import secrets
import ssl
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from pymisp import MISPUser, PyMISP

from misp_platform.testing import load_script

from .support import GATEWAY, EchoHandler, admin_key, delete_user, free_port, own_gateway

ROOT = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("MISP_STATE_DIR", ROOT / ".local"))
GATEWAY_TLS = os.environ.get("MISP_GATEWAY_TLS_URL", "https://127.0.0.1:8443")
CA = Path(os.environ.get("MISP_GATEWAY_CA_FILE", STATE / "tls" / "ca.pem"))
TLS_PORT = int(GATEWAY_TLS.rsplit(":", 1)[1])
SESSION_COOKIE = "MISP-session"  # identity.handlers.login.SESSION_COOKIE
PASSWORD = "Correct-Horse-9battery"

render = load_script(ROOT / "deploy" / "gateway" / "render.py", "gateway_render_https_test")
tls_maker = load_script(ROOT / "deploy" / "local" / "tls.py", "local_tls_https_test")
SERVICES = render.load_services(render.DEFAULT_SERVICES)
LOCATIONS = render.expand(render.load_routes(render.DEFAULT_ROUTES, SERVICES), SERVICES)


def trusting_ca(path: Path = CA) -> ssl.SSLContext:
    assert path.is_file(), f"{path} is missing: make up makes it (deploy/local/gateway.sh)"
    return ssl.create_default_context(cafile=str(path))


def headers_of(response: httpx.Response, name: str) -> list[str]:
    return response.headers.get_list(name)


def assert_security_headers(response: httpx.Response, *, https: bool) -> None:
    assert len(headers_of(response, "X-Request-ID")) == 1, response.headers  # not the service's too
    assert headers_of(response, "X-Content-Type-Options") == ["nosniff"], response.headers
    assert headers_of(response, "X-Frame-Options") == ["DENY"], response.headers
    hsts = headers_of(response, "Strict-Transport-Security")
    assert hsts == (["max-age=31536000"] if https else []), response.headers


# ---- the running gateway ----------------------------------------------------------------------


def test_https_with_the_local_ca_reaches_a_service() -> None:
    with httpx.Client(verify=trusting_ca(), timeout=10) as client:
        r = client.get(f"{GATEWAY_TLS}/users/view/me",
                       headers={"Authorization": admin_key(), "Accept": "application/json"})
    assert r.status_code == 200, r.text
    assert r.json()["User"]["id"]
    assert r.url.scheme == "https" and r.http_version == "HTTP/1.1"


def test_https_without_the_ca_fails_verification() -> None:
    with httpx.Client(timeout=10) as client, pytest.raises(httpx.ConnectError,
                                                           match="CERTIFICATE_VERIFY_FAILED"):
        client.get(f"{GATEWAY_TLS}/users/view/me")


def test_every_answer_carries_the_security_headers_once() -> None:
    key = {"Authorization": admin_key(), "Accept": "application/json"}
    with httpx.Client(verify=trusting_ca(), timeout=10) as client:
        for path, status in (("/users/view/me", 200), ("/events/index", 404)):
            r = client.get(GATEWAY_TLS + path, headers=key)
            assert r.status_code == status, r.text
            assert_security_headers(r, https=True)
        refused = client.get(GATEWAY_TLS + "/users/view/me")  # a service's own 403
        assert refused.status_code == 403
        assert_security_headers(refused, https=True)
    plain = httpx.get(GATEWAY + "/users/view/me", headers=key, timeout=10)
    assert plain.status_code == 200  # from 127.0.0.1: served, not redirected
    assert_security_headers(plain, https=False)


def test_plain_http_from_another_address_is_redirected_to_https() -> None:
    conf = (STATE / "nginx" / "nginx.conf").read_text(encoding="utf-8")
    assert "        127.0.0.1 serve;\n        ::1 serve;\n" in conf
    assert f"return 308 https://$host:{TLS_PORT}$request_uri;" in conf
    # 127.0.0.2 is on the loopback interface, but not one of the two addresses served
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=transport, timeout=10) as client:
        for method in ("GET", "POST"):
            r = client.request(method, GATEWAY + "/users/view/me?x=1", content=b"{}")
            assert r.status_code == 308, (method, r.status_code, r.text)
            assert r.headers["location"] == f"https://127.0.0.1:{TLS_PORT}/users/view/me?x=1"
            assert_security_headers(r, https=False)


@pytest.fixture
def user_with_password() -> Iterator[str]:
    """A new user of the host organisation with PASSWORD: their email; deleted afterwards (which
    ends their sessions too)."""
    email = f"https-{secrets.token_hex(5)}@example.test"
    headers = {"Authorization": admin_key(), "Accept": "application/json"}
    with httpx.Client(base_url=GATEWAY, timeout=10) as http:
        r = http.post("/admin/users/add", headers=headers,
                      json={"email": email, "org_id": 1, "role_id": 3, "password": PASSWORD,
                            "change_pw": False})
        assert r.status_code == 200, r.text
        yield email
        delete_user(http, headers, r.json()["User"]["id"])


def test_login_over_https_sets_a_secure_cookie_and_logout_is_post_only(
        user_with_password: str) -> None:
    email = user_with_password
    login = {"User": {"email": email, "password": PASSWORD}}
    plain = httpx.post(GATEWAY + "/users/login", json=login, timeout=10)
    assert plain.status_code == 200, plain.text
    assert "; secure" not in plain.headers["set-cookie"].lower()

    with httpx.Client(verify=trusting_ca(), timeout=10) as client:
        r = client.post(GATEWAY_TLS + "/users/login", json=login)
        assert r.status_code == 200, r.text
        cookie = r.headers["set-cookie"].lower()
        assert cookie.startswith(SESSION_COOKIE.lower() + "=")
        assert "; secure" in cookie and "; httponly" in cookie and "samesite=lax" in cookie
        token = r.cookies[SESSION_COOKIE]
        client.cookies.clear()
        session = {SESSION_COOKIE: token}

        def who() -> int:
            return client.get(GATEWAY_TLS + "/api/v1/identity/session",
                              cookies=session).status_code

        assert who() == 200
        get = client.get(GATEWAY_TLS + "/users/logout", cookies=session)
        assert get.status_code == 405
        assert get.json() == {"name": "Method Not Allowed", "message": "Method Not Allowed",
                              "url": "/users/logout"}
        assert who() == 200  # the GET ended nothing
        # Ending a live session by POST takes its CSRF token (misp_platform.auth.sessions).
        assert client.post(GATEWAY_TLS + "/users/logout", cookies=session).status_code == 403
        assert who() == 200
        csrf = client.get(GATEWAY_TLS + "/api/v1/identity/session",
                          cookies=session).json()["csrf_token"]
        post = client.post(GATEWAY_TLS + "/users/logout", cookies=session,
                           headers={"X-CSRF-Token": csrf})
        assert post.status_code == 200 and post.json()["message"] == "Logged out."
        assert who() == 403


def test_pymisp_calls_the_gateway_over_https_with_the_ca() -> None:
    misp = PyMISP(GATEWAY_TLS, admin_key(), ssl=str(CA))
    me = misp.get_user(pythonify=True)
    assert isinstance(me, MISPUser), me
    assert me.id and me.email


# ---- the rendering, and a second nginx with the loopback exception off ------------------------


def test_the_rendered_configs_redirect_plain_http() -> None:
    tls = render.Tls(listen="127.0.0.1:8443", cert="/c.pem", key="/k.pem", public_port=8443)
    local = render.render(LOCATIONS, SERVICES, mode="local", state_dir=Path("/s"), tls=tls)
    plain, https = local.split("listen 127.0.0.1:8443 ssl;")
    assert "geo $realip_remote_addr $misp_plain_http {\n        default redirect;" in plain
    assert ("        if ($misp_plain_http = redirect) {\n"
            "            return 308 https://$host:8443$request_uri;\n        }") in plain
    assert "Strict-Transport-Security" not in plain and "nosniff" in plain
    assert 'add_header Strict-Transport-Security "max-age=31536000" always;' in https
    assert plain.count("proxy_pass ") == https.count("proxy_pass ") > 0  # the same locations

    # no TLS: no redirect (the route tests' gateway)
    bare = render.render(LOCATIONS, SERVICES, mode="local", state_dir=Path("/s"))
    assert "308" not in bare and "ssl" not in bare and "nosniff" in bare

    container = render.render(LOCATIONS, SERVICES, mode="container")
    plain, https = container.split("listen 8443 ssl;")
    assert "$misp_plain_http" not in plain and "proxy_pass" not in plain
    assert "location / {\n            return 308 https://$host:8443$request_uri;" in plain
    assert f"ssl_certificate {render.CONTAINER_TLS_CERT};" in https
    k8s = (ROOT / "deploy" / "k8s" / "base" / "gateway.yaml").read_text(encoding="utf-8")
    assert "return 308 https://$host$request_uri;" in k8s  # its Service answers HTTPS on 443




@pytest.fixture(scope="module")
def redirecting_gateway() -> Iterator[tuple[str, str, Path]]:
    """nginx rendered with --http-from-loopback redirect, TLS from a CA made here, every
    service's upstream an echo server: (http URL, https URL, the CA)."""
    echo = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    http_port, https_port = free_port(), free_port()

    def render_args(state: Path) -> list[str]:
        tls_maker.ensure(state / "tls")
        return ["--listen", f"127.0.0.1:{http_port}", "--tls-listen", f"127.0.0.1:{https_port}",
                "--tls-cert", str(state / "tls/server.pem"),
                "--tls-key", str(state / "tls/server.key"), "--http-from-loopback", "redirect",
                *(f"--upstream={svc}=127.0.0.1:{echo.server_address[1]}" for svc in SERVICES)]

    try:
        with own_gateway(render_args, [http_port, https_port]) as state:
            yield (f"http://127.0.0.1:{http_port}", f"https://127.0.0.1:{https_port}",
                   state / "tls" / "ca.pem")
    finally:
        echo.shutdown()
        echo.server_close()


def test_with_the_loopback_exception_off_plain_http_from_loopback_is_redirected(
        redirecting_gateway: tuple[str, str, Path]) -> None:
    http_url, https_url, ca = redirecting_gateway
    r = httpx.get(http_url + "/users/view/me?a=b", timeout=10)
    assert r.status_code == 308
    assert r.headers["location"] == https_url + "/users/view/me?a=b"
    assert_security_headers(r, https=False)
    # 308 keeps the method and the body: the POST arrives as a POST, over HTTPS
    with httpx.Client(verify=trusting_ca(ca), follow_redirects=True, timeout=10) as client:
        r = client.post(http_url + "/admin/users/add", content=b'{"email": "x@example.test"}',
                        headers={"X-Forwarded-Proto": "http"})
    assert r.status_code == 200 and [h.status_code for h in r.history] == [308]
    echoed = r.json()
    assert echoed["method"] == "POST" and echoed["path"] == "/admin/users/add"
    assert echoed["body"] == '{"email": "x@example.test"}'
    assert echoed["headers"]["x-forwarded-proto"] == "https"  # the gateway's, not the client's
    assert_security_headers(r, https=True)
