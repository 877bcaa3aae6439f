"""Through the gateway, against the running stack, with the mails the local mail catcher wrote
(`.local/mail/*.eml`):

- an administrator's password-reset mail really sets the user's password: `users/login` accepts
  the temporary password once identity applied the mailer's `TemporaryPasswordIssued`; the user
  must then change it;
- a user's "forgot password" mails a single-use link: followed at once (identity catches up
  with the mailer's `PasswordResetLinkIssued` if it has to), it sets the password the user
  chooses, and then it is refused; the token is in no log line of identity or the mailer."""

from __future__ import annotations

import email
import os
import re
import secrets
import time
from email import policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from .support import GATEWAY, admin_key, delete_user

MAIL_DIR = Path(os.environ.get("MISP_STATE_DIR", ".local")) / "mail"
PASSWORD_RE = re.compile(r"Your temporary password: (\S+)")
LINK_RE = re.compile(r"https?://\S+?(/users/password_reset/([A-Za-z0-9_-]+))")
LOG_DIR = MAIL_DIR.parent / "logs"


def _text_of(message: EmailMessage) -> str:
    """The readable text of a mail: the signed part of a PGP/MIME signed mail, or the body."""
    if message.get_content_type() == "multipart/signed":
        signed = next(message.iter_parts())
        assert isinstance(signed, EmailMessage)
        return _text_of(signed)
    if message.is_multipart():
        return "\n".join(_text_of(part) for part in message.iter_parts()
                         if isinstance(part, EmailMessage))
    content = message.get_content()
    return content if isinstance(content, str) else ""


def _mail_to(address: str, *, timeout_s: float = 30,
             pattern: re.Pattern[str] = PASSWORD_RE) -> EmailMessage:
    """The mail to `address` whose text matches `pattern` (a temporary password) the catcher
    wrote."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for path in sorted(MAIL_DIR.glob("*.eml"), reverse=True)[:200]:
            raw = path.read_bytes()
            if address.encode() in raw:
                message = email.message_from_bytes(raw, policy=policy.default)
                assert isinstance(message, EmailMessage)
                if (message["To"] and address in str(message["To"])
                        and pattern.search(_text_of(message))):
                    return message
        time.sleep(0.2)
    raise AssertionError(f"no mail to {address} in {MAIL_DIR} within {timeout_s}s")


def test_a_password_reset_mail_sets_the_password_the_user_can_log_in_with() -> None:
    if not MAIL_DIR.is_dir():
        pytest.fail(f"no mail catcher directory {MAIL_DIR}: is the stack up (make up)?")
    key = admin_key()
    headers = {"Authorization": key, "Accept": "application/json"}
    address = f"reset-{secrets.token_hex(5)}@example.test"
    with httpx.Client(base_url=GATEWAY, timeout=30) as http:
        created = http.post("/admin/users/add", headers=headers,
                            json={"email": address, "org_id": 1, "role_id": 3,
                                  "password": f"Initial-{secrets.token_hex(8)}A1"})
        assert created.status_code == 200, created.text
        user_id = int(created.json()["User"]["id"])
        try:
            # At once: the mailer knows the user identity just created (read-your-writes).
            sent = http.post("/admin/users/email", headers=headers,
                             json={"action": "2", "recipient": "1",
                                   "recipientEmailList": str(user_id)})
            assert sent.status_code == 200, sent.text

            message = _mail_to(address)
            assert message.get_content_type() == "multipart/signed"
            found = PASSWORD_RE.search(_text_of(message))
            assert found is not None, "no temporary password in the mail"
            password = found.group(1)

            deadline = time.monotonic() + 30
            while True:  # until identity applied the mailer's TemporaryPasswordIssued
                login = http.post("/users/login", headers={"Accept": "application/json"},
                                  json={"User": {"email": address, "password": password}})
                if login.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert login.status_code == 200, login.text
            assert login.json()["User"]["id"] == str(user_id)
            assert login.json()["User"]["change_pw"] is True
        finally:
            delete_user(http, headers, user_id)


def _set(http: httpx.Client, headers: dict[str, str], name: str, value: object) -> None:
    r = http.post(f"/servers/serverSettingsEdit/{name}", headers=headers,
                  json={"value": value, "force": True})
    assert r.status_code == 200, r.text


def _forgot(http: httpx.Client, address: str) -> httpx.Response:
    return http.post("/users/forgot", headers={"Accept": "application/json"},
                     json={"email": address})


def test_a_forgotten_password_mails_a_single_use_link_that_sets_a_new_password() -> None:
    if not MAIL_DIR.is_dir():
        pytest.fail(f"no mail catcher directory {MAIL_DIR}: is the stack up (make up)?")
    headers = {"Authorization": admin_key(), "Accept": "application/json"}
    plain = {"Accept": "application/json"}
    address = f"forgot-{secrets.token_hex(5)}@example.test"
    old = f"Initial-{secrets.token_hex(8)}A1"
    new = f"Chosen-{secrets.token_hex(8)}B2"
    name = "Security.allow_password_forgotten"
    with httpx.Client(base_url=GATEWAY, timeout=30) as http:
        before = http.get(f"/servers/serverSettingsEdit/{name}", headers=headers).json()[name]
        created = http.post("/admin/users/add", headers=headers,
                            json={"email": address, "org_id": 1, "role_id": 3,
                                  "password": old})
        assert created.status_code == 200, created.text
        user_id = int(created.json()["User"]["id"])
        _set(http, headers, name, True)
        try:
            # At once: identity follows the setting just changed, and the mailer mails a user
            # created a moment ago (read-your-writes; its projection may not know them yet).
            answer = _forgot(http, f"nobody-{secrets.token_hex(4)}@example.test")
            assert answer.status_code == 200, answer.text
            known = _forgot(http, address)
            assert known.status_code == 200 and known.json() == answer.json()
            text = _text_of(_mail_to(address, pattern=LINK_RE))
            assert "temporary password" not in text
            found = LINK_RE.search(text)
            assert found is not None
            path, token = found.group(1), found.group(2)
            # Followed the moment it arrives: no polling, identity catches up if it must.
            status = http.get(path, headers=plain)
            assert status.status_code == 200, status.text
            assert status.json()["valid"] is True
            # Asking for the link changed nothing yet: the old password still works.
            assert http.post("/users/login", headers=plain, json={
                "User": {"email": address, "password": old}}).status_code == 200
            done = http.post(path, headers=plain,
                             json={"password": new, "confirm_password": new})
            assert done.status_code == 200, done.text
            login = http.post("/users/login", headers=plain,
                              json={"User": {"email": address, "password": new}})
            assert login.status_code == 200, login.text
            assert login.json()["User"]["change_pw"] in (False, 0, "0")
            again = http.post(path, headers=plain,
                              json={"password": old, "confirm_password": old})
            assert again.status_code == 404 and "message" in again.json()
            assert http.post("/users/login", headers=plain, json={
                "User": {"email": address, "password": old}}).status_code == 403
            for log in [*LOG_DIR.glob("identity-*.log"), *LOG_DIR.glob("mailer-*.log")]:
                assert token.encode() not in log.read_bytes(), f"the token is in {log}"
        finally:
            _set(http, headers, name, before)
            delete_user(http, headers, user_id)
