"""What the end-to-end tests share: the gateway's URL, the site admin's authkey that identity
writes on its first run, polling with a deadline, and the pieces of a gateway of their own (a
free port, an echo server to stand for a service, a rendered nginx started and stopped)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from misp_platform.testing import load_script

GATEWAY = os.environ.get("MISP_GATEWAY_URL", "http://127.0.0.1:8080")
# The stack's profile (deploy/local/lib.sh): `full`, a process per role, or `small`, one per
# service. A test that replaces or kills one role's process needs the full one.
PROFILE = os.environ.get("MISP_PROFILE") or "full"
needs_a_process_per_role = pytest.mark.skipif(
    PROFILE != "full", reason="the small profile runs a service's roles in one process: this "
    "test stops or kills one role's process alone")
ROOT = Path(__file__).resolve().parents[2]
RENDER = ROOT / "deploy" / "gateway" / "render.py"
# The local stack: its state folder, its supervisor, its PostgreSQL server as the superuser
# (for tests that look into a service's database: `f"{PG_URL}/misp_<service>"`).
STATE = Path(os.environ.get("MISP_STATE_DIR", ROOT / ".local"))
SUPERVISORCTL = [str(ROOT / ".venv/bin/supervisorctl"), "-c",
                 str(STATE / "supervisor/supervisord.conf")]
PG_URL = os.environ.get("MISP_PG_URL", "postgresql://postgres@127.0.0.1:55432").replace(
    "postgresql+psycopg://", "postgresql://")
T = TypeVar("T")


def admin_key(wait_s: float = 30) -> str:
    """The site admin's authkey (`.local/admin.authkey`); a failed test when it never shows."""
    path = Path(os.environ.get("MISP_STATE_DIR", ".local")) / "admin.authkey"
    deadline = time.monotonic() + wait_s
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    if not path.exists():
        pytest.fail(f"{path} is missing: identity writes it on its first run", pytrace=False)
    return path.read_text().strip()


def admin_headers() -> dict[str, str]:
    return {"Authorization": admin_key(), "Accept": "application/json"}


def until(check: Callable[[], T | None], what: str, timeout_s: float = 30,
          interval_s: float = 0.2) -> T:
    """The first truthy value of `check()`, or a failed assertion naming `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s}s (last: {value!r})")
        time.sleep(interval_s)


@cache
def stack_replicas() -> dict[tuple[str, str], int]:
    """(service, role) -> replicas of the local stack (deploy/replicas.tsv, read once by the
    gateway's renderer: one parser of the file)."""
    replicas: dict[tuple[str, str], int] = load_script(
        RENDER, "gateway_render_replicas").load_replicas()
    return replicas


def program_replicas(service: str, role: str) -> list[str]:
    """The supervisor programs of a role of the local stack, one per replica."""
    count = stack_replicas().get((service, role), 1)
    return [f"{service}-{role}" + ("" if i == 1 else f"-{i}") for i in range(1, count + 1)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EchoHandler(BaseHTTPRequestHandler):
    """Stands for a service behind a test's own nginx: answers every request with what it got
    (`service`, method, path, body, headers with lower-case names) as JSON."""

    protocol_version = "HTTP/1.1"
    service = "?"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.dumps({"service": self.service, "method": self.command, "path": self.path,
                           "body": self.rfile.read(length).decode() if length else "",
                           "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


def wait_listening(proc: subprocess.Popen[bytes], ports: list[int], log: Path) -> None:
    """Until a test's own nginx (`proc`) accepts connections on every port; a failed test with
    its stderr and error log when it exits or takes more than 10 s."""
    deadline = time.monotonic() + 10
    for port in ports:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    pytest.fail(f"nginx did not start: {err}\n"
                                f"{log.read_text(errors='replace') if log.exists() else ''}")
                time.sleep(0.05)


def _worker_user() -> str:
    for name in ("www-data", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    return "root"


@contextmanager
def own_gateway(render_args: Callable[[Path], list[str]], ports: list[int]) -> Iterator[Path]:
    """A test's own nginx, rendered by deploy/gateway/render.py --mode local with
    `render_args(state)` (which may put files in the state directory first), listening on
    `ports`: yields the state directory, stops nginx and removes the directory at the end."""
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    assert nginx, "nginx is not installed (deploy/local/install.sh installs it)"
    # not under pytest's tmp_path (0700): nginx's workers (www-data when we are root) use tmp/
    state = Path(tempfile.mkdtemp(prefix="misp-gw-"))
    try:
        state.chmod(0o755)
        for d in ("logs", "nginx/tmp"):
            (state / d).mkdir(parents=True)
        conf = state / "nginx" / "nginx.conf"
        args = [sys.executable, str(RENDER), "--mode", "local", "--state-dir", str(state),
                "--out", str(conf), *render_args(state)]
        if os.geteuid() == 0:
            user = _worker_user()
            args += ["--user", user]
            pw = pwd.getpwnam(user)
            os.chown(state / "nginx" / "tmp", pw.pw_uid, pw.pw_gid)
        subprocess.run(args, check=True)
        log = state / "logs" / "gateway-error.log"
        proc = subprocess.Popen([nginx, "-e", str(log), "-p", str(state / "nginx"), "-c",
                                 str(conf), "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        try:
            wait_listening(proc, ports, log)
            yield state
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    finally:
        shutil.rmtree(state, ignore_errors=True)


def add_organisation(http: httpx.Client, headers: dict[str, str], name: str) -> str:
    """A new local organisation, through the API; its id."""
    made = http.post("/admin/organisations/add", headers=headers, json={"name": name})
    assert made.status_code == 200, made.text
    return str(made.json()["Organisation"]["id"])


def add_user_once_known(http: httpx.Client, headers: dict[str, str], *, email: str,
                        org_id: str, role_id: int) -> dict[str, Any]:
    """A new user of `org_id`, through the API, once identity has learnt the organisation from
    orgs' topic (until then identity refuses it as unknown)."""

    def add() -> dict[str, Any] | None:
        r = http.post("/admin/users/add", headers=headers,
                      json={"email": email, "org_id": org_id, "role_id": role_id})
        return r.json()["User"] if r.status_code == 200 else None

    return until(add, f"organisation {org_id} known to identity", timeout_s=60)


def delete_user(http: httpx.Client, headers: dict[str, str], user_id: object) -> None:
    """A user deleted through the API (identity deletes their keys and ends their sessions with
    them); a failed test when the deletion is refused."""
    gone = http.post(f"/admin/users/delete/{user_id}", headers=headers)
    assert gone.status_code == 200, gone.text


def delete_organisation(http: httpx.Client, headers: dict[str, str], org_id: object) -> None:
    """An organisation deleted through the API, once orgs has seen it emptied of its users
    (until then orgs refuses)."""
    until(lambda: http.post(f"/admin/organisations/delete/{org_id}",
                            headers=headers).status_code == 200,
          f"organisation {org_id} deleted once empty")
