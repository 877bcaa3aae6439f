"""MISP's "Fetch GnuPG key" through the gateway: identity asks the key server of the setting
`GnuPG.keyServer` (here a small HKP server of the test, serving keys made with the real gpg),
lists the current keys of an address and answers one public key, refusing secret, expired,
revoked and mismatched keys with clear messages."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import httpx
import pytest

from .hkp import Keys, KeyServer, keyserver_setting, make_keys, serve, set_keyserver
from .hkp import get as _get
from .support import GATEWAY, admin_headers, free_port


@pytest.fixture(scope="module")
def keyserver() -> Iterator[KeyServer]:
    with serve() as server:
        yield server


@pytest.fixture(scope="module")
def keys(keyserver: KeyServer) -> Iterator[Keys]:
    with make_keys(keyserver) as made:
        yield made


@pytest.fixture(scope="module")
def using(keyserver: KeyServer) -> Iterator[KeyServer]:
    with keyserver_setting(keyserver) as server:
        yield server


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
        gone = httpx.post(f"{GATEWAY}/admin/users/delete/{user_id}", headers=admin_headers(),
                          timeout=30)
        assert gone.status_code == 200, gone.text


def test_an_unreachable_key_server_is_a_502_with_misps_body(using: KeyServer) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    set_keyserver(closed)
    try:
        down = _get("/users/searchGpgKey/someone@example.test")
    finally:
        set_keyserver(using.url)
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
        gone = httpx.post(f"{GATEWAY}/admin/users/delete/{user['id']}", headers=admin_headers(),
                          timeout=30)
        assert gone.status_code == 200, gone.text
