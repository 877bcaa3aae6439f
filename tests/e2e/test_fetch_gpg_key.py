"""MISP's "Fetch GnuPG key" through the gateway: identity asks the key server of the setting
`GnuPG.keyServer` (here a small HKP server of the test, serving keys made with the real gpg),
lists the current keys of an address and answers one public key, refusing secret, expired,
revoked and mismatched keys with clear messages."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlparse

import httpx
import pytest

from .support import GATEWAY, admin_headers, free_port

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


@pytest.fixture(scope="module")
def keyserver() -> Iterator[KeyServer]:
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


@pytest.fixture(scope="module")
def keys(keyserver: KeyServer) -> Iterator[Keys]:
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


def _get(path: str) -> httpx.Response:
    return httpx.get(f"{GATEWAY}{path}", headers=admin_headers(), timeout=30)


def _set_keyserver(value: str) -> None:
    answer = httpx.post(f"{GATEWAY}/servers/serverSettingsEdit/{SETTING}",
                        headers=admin_headers(), json={"value": value}, timeout=30)
    assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def using(keyserver: KeyServer) -> Iterator[KeyServer]:
    before = _get(f"/servers/getSetting/{SETTING}")
    assert before.status_code == 200, before.text
    _set_keyserver(keyserver.url)
    try:
        yield keyserver
    finally:
        _set_keyserver(before.json()["value"])


def _error(response: httpx.Response) -> str:
    return str(response.json()["message"])


def test_the_search_lists_the_current_keys_of_the_address_in_misps_shape(
        using: KeyServer, keys: Keys) -> None:
    found = _get(f"/users/fetchPGPKey/{keys.email}")
    assert found.status_code == 200, found.text
    created = time.strftime("%Y-%m-%d", time.gmtime(int(time.time()) - 3600))
    assert found.json() == [{"fingerprint": keys.good, "key_id": keys.good[-8:],
                             "date": created, "address": f"Good <{keys.email}>"}]
    assert _get(f"/users/searchGpgKey/{keys.email}").json() == found.json()
    assert any("op=index" in p and "options=mr" in p for p in using.asked)


def test_an_address_without_keys_is_misps_not_found(using: KeyServer) -> None:
    none = _get("/users/searchGpgKey/nobody-here@example.test")
    assert none.status_code == 404
    assert _error(none) == "No keys found for given email at keyserver."


def test_the_good_key_is_answered_armored(using: KeyServer, keys: Keys) -> None:
    for path in (f"/users/fetchGpgKey/{keys.good}",
                 f"/users/fetchPGPKey/{keys.email}/{keys.good.lower()}"):
        key = _get(path)
        assert key.status_code == 200, key.text
        assert key.text == keys.armored_good.strip() + "\n"
        assert key.text.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")


def test_a_secret_key_is_refused_and_none_of_it_is_answered(
        using: KeyServer, keys: Keys) -> None:
    refused = _get(f"/users/fetchGpgKey/{keys.secret}")
    assert refused.status_code == 403
    assert _error(refused) == ("The key server answered with a secret key (PRIVATE KEY BLOCK): "
                               "only public keys are accepted, and this one was not kept.")
    body = using.keys[keys.secret]
    material = [line for line in body.splitlines()
                if len(line) > 40 and not line.startswith("-----")]
    assert material and not any(line in refused.text for line in material)
    assert "BEGIN PGP" not in refused.text


def test_expired_and_revoked_keys_are_refused(using: KeyServer, keys: Keys) -> None:
    expired = _get(f"/users/fetchGpgKey/{keys.expired}")
    assert expired.status_code == 403
    assert _error(expired) == f"The GnuPG key {keys.expired} has expired."
    revoked = _get(f"/users/fetchGpgKey/{keys.revoked}")
    assert revoked.status_code == 403
    assert _error(revoked) == f"The GnuPG key {keys.revoked} is revoked."


def test_a_key_without_the_searched_address_or_fingerprint_is_refused(
        using: KeyServer, keys: Keys) -> None:
    stranger = _get(f"/users/fetchPGPKey/{keys.email}/{keys.stranger}")
    assert stranger.status_code == 403
    assert _error(stranger) == (f"The GnuPG key {keys.stranger} has no user id with the "
                                f"e-mail address {keys.email}.")
    other = "AB" * 20
    using.keys[other] = using.keys[keys.good]  # a key server answering with another key
    try:
        mismatch = _get(f"/users/fetchGpgKey/{other}")
    finally:
        del using.keys[other]
    assert mismatch.status_code == 403
    assert _error(mismatch) == ("Requested fingerprint do not match with fetched key "
                                f"fingerprint ({other} != {keys.good})")
    unknown = _get(f"/users/fetchGpgKey/{'CD' * 20}")
    assert unknown.status_code == 404
    assert _error(unknown) == "No key with given fingerprint found."


def test_fetching_stores_nothing_on_the_user(using: KeyServer, keys: Keys) -> None:
    added = httpx.post(f"{GATEWAY}/admin/users/add", headers=admin_headers(),
                       json={"email": keys.email}, timeout=30)
    assert added.status_code == 200, added.text
    user_id = added.json()["User"]["id"]
    try:
        assert _get(f"/users/fetchGpgKey/{keys.secret}").status_code == 403
        assert _get(f"/users/fetchGpgKey/{keys.expired}").status_code == 403
        assert _get(f"/users/fetchGpgKey/{keys.good}").status_code == 200
        view = _get(f"/admin/users/view/{user_id}")
        assert view.json()["User"]["gpgkey"] in ("", None)
    finally:
        httpx.post(f"{GATEWAY}/admin/users/delete/{user_id}", headers=admin_headers(),
                   timeout=30)


def test_an_unreachable_key_server_is_a_502_with_misps_body(using: KeyServer) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    _set_keyserver(closed)
    try:
        down = _get("/users/searchGpgKey/someone@example.test")
    finally:
        _set_keyserver(using.url)
    assert down.status_code == 502
    assert _error(down) == (f"Could not fetch '{closed}/pks/lookup?op=index&options=mr"
                            "&search=someone%40example.test&fingerprint=on'.")
    assert set(down.json()) >= {"name", "message", "url"}


def test_only_admins_may_fetch_keys(using: KeyServer, keys: Keys) -> None:
    added = httpx.post(f"{GATEWAY}/admin/users/add", headers=admin_headers(),
                       json={"email": f"kf-user-{secrets.token_hex(4)}@example.test",
                             "role_id": "3"}, timeout=30)
    assert added.status_code == 200, added.text
    user = added.json()["User"]
    try:
        refused = httpx.get(f"{GATEWAY}/users/fetchPGPKey/{keys.email}",
                            headers={"Authorization": user["authkey"],
                                     "Accept": "application/json"}, timeout=30)
        assert refused.status_code == 403
        assert _error(refused) == "You do not have permission to use this functionality."
    finally:
        httpx.post(f"{GATEWAY}/admin/users/delete/{user['id']}", headers=admin_headers(),
                   timeout=30)
