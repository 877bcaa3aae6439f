"""A small HKP key server for tests (a threading http.server on 127.0.0.1:0) and keys made
with the real gpg binary in a throwaway home: a good one, an expired, a revoked, a secret key's
export and a key of another address. `GnuPG.keyServer` is pointed at it and restored after."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlparse

import httpx

from .support import GATEWAY, admin_headers

SETTING = "GnuPG.keyServer"


class Gpg:
    """The real gpg binary in a throwaway home (a short path: gpg-agent's socket must fit)."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def run(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(["gpg", "--homedir", str(self.home), "--batch", "--yes",
                               "--pinentry-mode", "loopback", "--passphrase", "", *args],
                              input=stdin, capture_output=True, text=True, check=True)
        return done.stdout

    def new_key(self, uid: str, *, faked_time: str | None = None,
                expires: str = "never") -> str:
        extra = ["--faked-system-time", faked_time] if faked_time else []
        self.run(*extra, "--quick-gen-key", uid, "ed25519", "sign", expires)
        return self.fingerprints(uid)[-1]

    def fingerprints(self, uid: str) -> list[str]:
        out = self.run("--with-colons", "--list-keys", uid)
        lines = out.splitlines()
        return [line.split(":")[9] for i, line in enumerate(lines)
                if line.startswith("fpr:") and lines[i - 1].startswith("pub:")]

    def export(self, fingerprint: str) -> str:
        return self.run("--armor", "--export", fingerprint)

    def export_secret(self, fingerprint: str) -> str:
        return self.run("--armor", "--export-secret-keys", fingerprint)

    def revoke(self, fingerprint: str) -> None:
        certificate = (self.home / "openpgp-revocs.d" / f"{fingerprint}.rev").read_text()
        self.run("--import", stdin=certificate.replace(":-----BEGIN", "-----BEGIN"))


@dataclass
class KeyServer:
    """What the HKP server answers: index lines by search, armored keys by fingerprint."""

    index: dict[str, list[str]] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)
    url: str = ""

    def list_key(self, email: str, fingerprint: str, uid: str, *, created: int,
                 expires: int | None = None, flags: str = "") -> None:
        self.index.setdefault(email.lower(), []).append(
            f"pub:{fingerprint}:22:256:{created}:{expires or ''}:{flags}\n"
            f"uid:{quote(uid)}:{created}::\n")


@contextmanager
def serve() -> Iterator[KeyServer]:
    """An HKP server answering op=index and op=get (options=mr) from its state."""
    state = KeyServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            state.asked.append(self.path)
            body: str | None = None
            if url.path == "/pks/lookup" and query.get("options") == "mr":
                search = query.get("search", "")
                if query.get("op") == "index" and search.lower() in state.index:
                    entries = state.index[search.lower()]
                    body = f"info:1:{len(entries)}\n" + "".join(entries)
                elif query.get("op") == "get":
                    body = state.keys.get(search.removeprefix("0x").upper())
            data = (body or "Not found").encode()
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class Keys:
    email: str
    good: str
    expired: str
    revoked: str
    secret: str
    stranger: str
    armored_good: str


@contextmanager
def make_keys(keyserver: KeyServer) -> Iterator[Keys]:
    """The test's keys, made with gpg and put on `keyserver`."""
    home = Path(tempfile.mkdtemp(prefix="kf", dir="/tmp"))
    gpg = Gpg(home)
    email = f"kf-{secrets.token_hex(4)}@example.test"
    try:
        good = gpg.new_key(f"Good <{email}>")
        expired = gpg.new_key(f"Expired <{email}>", faked_time="20200101T000000",
                              expires="1d")
        revoked = gpg.new_key(f"Revoked <{email}>")
        gpg.revoke(revoked)
        secret = gpg.new_key(f"Secret <{email}>")
        stranger = gpg.new_key(f"Stranger <other-{secrets.token_hex(3)}@example.test>")
        now = int(time.time())
        keyserver.list_key(email, good, f"Good <{email}>", created=now - 3600)
        keyserver.list_key(email, expired, f"Expired <{email}>", created=1577836800,
                           expires=1577923200)
        keyserver.list_key(email, revoked, f"Revoked <{email}>", created=now, flags="r")
        for fingerprint in (good, expired, revoked, stranger):
            keyserver.keys[fingerprint] = gpg.export(fingerprint)
        keyserver.keys[secret] = gpg.export_secret(secret)
        assert "PRIVATE KEY BLOCK" in keyserver.keys[secret]
        yield Keys(email=email, good=good, expired=expired, revoked=revoked, secret=secret,
                   stranger=stranger, armored_good=keyserver.keys[good])
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"],
                       capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)


def get(path: str) -> httpx.Response:
    return httpx.get(f"{GATEWAY}{path}", headers=admin_headers(), timeout=30)


def set_keyserver(value: str) -> None:
    answer = httpx.post(f"{GATEWAY}/servers/serverSettingsEdit/{SETTING}",
                        headers=admin_headers(), json={"value": value}, timeout=30)
    assert answer.status_code == 200, answer.text


@contextmanager
def keyserver_setting(keyserver: KeyServer) -> Iterator[KeyServer]:
    """`GnuPG.keyServer` set to `keyserver` (identity has it when the answer returns), then
    restored."""
    before = get(f"/servers/getSetting/{SETTING}")
    assert before.status_code == 200, before.text
    set_keyserver(keyserver.url)
    try:
        yield keyserver
    finally:
        set_keyserver(before.json()["value"])
