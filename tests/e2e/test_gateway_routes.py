"""The gateway's route table, its nginx rendering, and the container descriptions.

The routing decisions are checked twice: by the renderer's `resolve()` (nginx's rule: an exact
location first, else the longest prefix) and by a real nginx started from the rendered config in
front of echo servers that say which service they are. Needs no service, Kafka or PostgreSQL.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from misp_platform.testing import load_script

from .support import RENDER, EchoHandler, free_port, own_gateway

ROOT = Path(__file__).resolve().parents[2]
GENERATE = ROOT / "deploy" / "generate.py"


def _load(path: Path, name: str) -> ModuleType:
    return load_script(path, name)


render = _load(RENDER, "gateway_render_under_test")
SERVICES = render.load_services(render.DEFAULT_SERVICES)
LOCATIONS = render.expand(render.load_routes(render.DEFAULT_ROUTES, SERVICES), SERVICES)

EXPECTED = [
    # an exact or longer path wins over a shorter prefix
    ("/admin/users/email", "mailer"),
    ("/admin/users/email.json", "mailer"),
    ("/admin/users/email/1", "mailer"),
    ("/admin/users/quickEmail/5", "mailer"),
    ("/admin/users/quickEmail/5.json", "mailer"),
    ("/admin/users/emailFoo", "identity"),
    ("/admin/users/view/1", "identity"),
    ("/admin/users/view/1.json", "identity"),
    ("/admin/users", "identity"),
    ("/admin/users.json", "identity"),
    ("/admin/users/", "identity"),
    ("/admin/users/index", "identity"),
    ("/users/view/me.json", "identity"),
    ("/roles/index", "identity"),
    ("/admin/roles/add", "identity"),
    ("/auth_keys/add/1", "identity"),
    ("/userSettings/setSetting", "identity"),
    ("/organisations/view/1", "orgs"),
    ("/organisations", "orgs"),
    ("/admin/organisations/merge/2", "orgs"),
    ("/admin/logs/index", "audit"),
    ("/admin/audit_logs/index", "audit"),
    ("/logs/index", "audit"),
    ("/servers/getWorkers", "jobs"),
    ("/servers/getWorkers.json", "jobs"),
    ("/servers/startWorker/default", "jobs"),
    ("/servers/stopWorker/1234", "jobs"),
    ("/servers/restartWorkers", "jobs"),
    ("/servers/restartDeadWorkers.json", "jobs"),
    ("/servers/killAllWorkers", "jobs"),
    ("/servers/serverSettings", "settings"),
    ("/servers/serverSettings/diagnostics", "settings"),
    ("/servers/getWorkersX", "settings"),
    ("/servers/serverSettingsEdit/MISP.baseurl", "settings"),
    ("/attributes/describeTypes.json", "settings"),
    ("/attributes/describeTypes", "settings"),
    ("/admin/regexp/index", "settings"),
    ("/admin/allowedlists/index", "settings"),
    ("/allowedlists/index", "settings"),
    ("/eventBlocklists/index", "settings"),
    ("/orgBlocklists/index", "settings"),
    ("/jobs/index", "jobs"),
    ("/tasks/index", "jobs"),
    ("/gpg.asc", "mailer"),
    ("/api/v1/orgs/organisations/1/logo", "orgs"),
    ("/api/v1/audit/verify", "audit"),
    ("/api/v1/jobs/cancel/3", "jobs"),
    ("/_svc/identity/ready", "identity"),
    ("/_svc/settings/diagnostics", "settings"),
    # the web console: the site's root and its own paths (pages of MISP's paths are chosen by
    # the Accept header, in nginx: tests/browser)
    ("/", "console"),
    ("/console/static/console.css", "console"),
    # not ours
    ("/events/index", None),
    ("/attributes/restSearch", None),
    ("/admin", None),
    ("/gpg.ascx", None),
    ("/api/v1/nosuch/x", None),
]


@pytest.mark.parametrize(("path", "service"), EXPECTED)
def test_the_renderer_routes_each_path_to_its_owner(path: str, service: str | None) -> None:
    assert render.resolve(LOCATIONS, path) == service


def test_every_route_of_the_table_resolves_to_its_own_service() -> None:
    for route in render.load_routes(render.DEFAULT_ROUTES, SERVICES):
        probes = [route.path]
        if route.path.endswith("/"):
            probes += [route.path + "x/1", route.path.rstrip("/"), route.path.rstrip("/") + ".json"]
        elif not route.path.rsplit("/", 1)[-1].count("."):
            probes += [route.path + ".json", route.path + "/1"]
        for probe in probes:
            assert render.resolve(LOCATIONS, probe) == route.service, (probe, route)


def test_locations_are_written_exact_first_then_longest_prefix_first() -> None:
    kinds = [loc.kind for loc in LOCATIONS]
    assert kinds == sorted(kinds, key=lambda k: k != render.EXACT)
    prefixes = [len(loc.path) for loc in LOCATIONS if loc.kind == render.PREFIX]
    assert prefixes == sorted(prefixes, reverse=True)
    conf = render.render(LOCATIONS, SERVICES, mode="local", state_dir=Path("/state"))
    assert conf.index("location = /admin/users/email {") < conf.index("location ^~ /admin/users/ {")
    assert conf.index("location ^~ /admin/users/quickEmail/ {") < conf.index(
        "location ^~ /admin/users/ {"
    )


def test_a_path_claimed_by_two_services_is_refused(tmp_path: Path) -> None:
    table = tmp_path / "routes.tsv"
    table.write_text("/users/\tidentity\n/users\torgs\n")
    with pytest.raises(render.RouteError, match="one owner per path"):
        render.expand(render.load_routes(table, SERVICES), SERVICES)


def test_an_unknown_service_is_refused(tmp_path: Path) -> None:
    table = tmp_path / "routes.tsv"
    table.write_text("/users/\tnobody\n")
    with pytest.raises(render.RouteError, match="unknown service"):
        render.load_routes(table, SERVICES)


def test_the_generated_files_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(GENERATE), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_docker_compose_config_validates_and_refuses_to_start_without_its_secrets(
        tmp_path: Path) -> None:
    """(Each secret, and who holds it: tests/deploy/test_trust_in_deployments.py.)"""
    docker = shutil.which("docker")
    assert docker, "the docker CLI is not installed (deploy/local/install.sh installs compose)"
    secrets = {"MISP_PEPPER": "a1" * 32, "POSTGRES_PASSWORD": "b2" * 12,
               "MISP_KAFKA_ADMIN_PASSWORD": "c3" * 12}
    for svc in SERVICES:
        secrets[f"MISP_PG_{svc.upper()}_PASSWORD"] = "d4" * 12
        secrets[f"MISP_KAFKA_{svc.upper()}_PASSWORD"] = "e5" * 12
    for key in ("AUDIT_SIGNING_KEY", "AUDIT_VERIFY_KEY", "MAILER_INSTANCE_KEY",
                "GATEWAY_TLS_CERT", "GATEWAY_TLS_KEY"):
        (tmp_path / key).write_text("key\n")
        secrets[f"MISP_{key}_FILE"] = str(tmp_path / key)
    secrets["MISP_GATEWAY_TLS_NAME"] = "misp.example.test"  # the console checks it

    def config(**given: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in secrets}
        return subprocess.run(
            [docker, "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
            capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
            env={**env, **given})

    result = config(**secrets)
    assert result.returncode == 0, result.stderr
    missing = config(**{k: v for k, v in secrets.items() if k != "MISP_PEPPER"})
    assert missing.returncode != 0 and "set MISP_PEPPER" in missing.stderr


# ---------------------------------------------------------------------------------------------
# the real nginx, in front of echo servers




DOWN_SERVICE = "orgs"  # its upstream points at a closed port


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    servers = []
    upstreams = []
    for svc in (*SERVICES, render.CONSOLE):  # the console too: never the running one
        if svc == DOWN_SERVICE:
            upstreams.append(f"--upstream={svc}=127.0.0.1:{free_port()}")
            continue
        handler = type(f"Echo_{svc}", (EchoHandler,), {"service": svc})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        upstreams.append(f"--upstream={svc}=127.0.0.1:{server.server_address[1]}")
    port = free_port()
    try:
        with own_gateway(lambda _state: ["--listen", f"127.0.0.1:{port}", *upstreams], [port]):
            yield f"http://127.0.0.1:{port}"
    finally:
        for server in servers:
            server.shutdown()


REAL = [(p, s) for p, s in EXPECTED if s != DOWN_SERVICE and s is not None and "%" not in p]


@pytest.mark.parametrize(("path", "service"), REAL)
def test_nginx_routes_each_path_like_the_renderer(gateway: str, path: str, service: str) -> None:
    r = httpx.get(gateway + path, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["service"] == service
    if path.startswith("/_svc/"):
        assert body["path"] == path[len(f"/_svc/{service}") :]  # prefix stripped
    else:
        assert body["path"] == path  # passed unchanged


def test_nginx_passes_the_request_id_and_the_client_address(gateway: str) -> None:
    r = httpx.get(gateway + "/users/view/me", headers={"X-Request-ID": "req-123"}, timeout=10)
    headers = {k.lower(): v for k, v in r.json()["headers"].items()}
    assert headers["x-request-id"] == "req-123"
    assert r.headers["x-request-id"] == "req-123"
    assert headers["x-real-ip"] == "127.0.0.1"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["host"] == gateway.removeprefix("http://")

    r = httpx.get(gateway + "/users/view/me", timeout=10)
    generated = {k.lower(): v for k, v in r.json()["headers"].items()}["x-request-id"]
    assert len(generated) == 32
    assert r.headers["x-request-id"] == generated


def test_nginx_answers_unknown_paths_with_misp_s_404(gateway: str) -> None:
    r = httpx.get(gateway + "/events/index", timeout=10)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"name": "Not Found", "message": "Not Found", "url": "/events/index"}
    r = httpx.get(gateway + '/a"b\\c', timeout=10)
    assert r.status_code == 404
    assert r.json()["name"] == "Not Found"  # still valid JSON


def test_nginx_answers_503_json_when_the_owner_is_down(gateway: str) -> None:
    r = httpx.get(gateway + "/organisations/index", timeout=10)
    assert r.status_code == 503
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {
        "name": "Service Unavailable",
        "message": "Service Unavailable",
        "url": "/organisations/index",
    }


def test_nginx_keeps_operator_paths_for_loopback_clients(gateway: str) -> None:
    # 127.0.0.2 is on the loopback interface but is not one of the allowed addresses
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=transport, timeout=10) as client:
        r = client.get(gateway + "/_svc/identity/ready")
        assert r.status_code == 403
        assert r.json()["name"] == "Forbidden"
        assert client.get(gateway + "/users/view/me").status_code == 200


def test_nginx_limits_bodies_to_10m(gateway: str) -> None:
    ok = httpx.post(gateway + "/admin/users/add", content=b"x" * (9 * 1024 * 1024), timeout=30)
    assert ok.status_code == 200
    big = httpx.post(gateway + "/admin/users/add", content=b"x" * (11 * 1024 * 1024), timeout=30)
    assert big.status_code == 413
    assert big.json()["name"] == "Request Entity Too Large"
