"""TOTP two-factor login through the gateway, in MISP's shapes, with codes pyotp makes: a user
enrols (users/totp_new), their password alone then gets MISP's redirect to users/otp and no
session; a code completes the login and the session works at another service; the API key is
never asked for a code; the audit log holds MISP's "TOTP token created" entry; a site admin's
users/totp_delete makes the password enough again."""

from __future__ import annotations

import secrets
import time

import httpx
import pyotp

from .support import GATEWAY, admin_headers, delete_user, until

PASSWORD = f"Totp-{secrets.token_hex(8)}A1"


def test_a_totp_login_through_the_gateway() -> None:
    with httpx.Client(base_url=GATEWAY, timeout=30) as http:
        email = f"totp-{secrets.token_hex(5)}@example.test"
        added = http.post("/admin/users/add", headers=admin_headers(), json={
            "email": email, "org_id": 1, "role_id": 3, "password": PASSWORD, "change_pw": 0})
        assert added.status_code == 200, added.text
        user = added.json()["User"]
        try:
            key = {"Authorization": user["authkey"], "Accept": "application/json"}

            shown = http.get("/users/totp_new", headers=key)
            assert shown.status_code == 200, shown.text
            secret = shown.json()["secret"]
            assert shown.json()["provisioning_uri"].startswith("otpauth://totp/")
            enrolled = http.post("/users/totp_new", headers=key,
                                 json={"User": {"otp": pyotp.TOTP(secret).now()}})
            assert enrolled.status_code == 200, enrolled.text
            assert enrolled.json()["saved"] is True
            assert http.get("/users/view/me", headers=key).json()["User"]["totp_is_set"] is True

            login = http.post("/users/login", headers={"Accept": "application/json"},
                              json={"User": {"email": email, "password": PASSWORD}})
            assert login.status_code == 302 and login.headers["location"] == "/users/otp"
            assert "MISP-session" not in login.cookies
            pending = login.cookies["MISP-otp"]
            wrong = http.post("/users/otp", json={"User": {"otp": "000000"}},
                              headers={"Accept": "application/json",
                                       "Cookie": f"MISP-otp={pending}"})
            assert wrong.status_code == 403
            assert wrong.json()["message"] == "The OTP is incorrect or has expired"
            # The enrolment used this step's code: the next step's (within the drift) is new.
            code = pyotp.TOTP(secret).at(time.time() + 30)
            done = http.post("/users/otp", json={"User": {"otp": code}},
                             headers={"Accept": "application/json",
                                      "Cookie": f"MISP-otp={pending}"})
            assert done.status_code == 200, done.text
            session = done.cookies["MISP-session"]
            orgs = http.get("/api/v1/orgs/whoami", headers={
                "Accept": "application/json", "Cookie": f"MISP-session={session}"})
            assert orgs.status_code == 200, orgs.text

            def created_entry() -> list[dict[str, object]] | None:
                rows = http.post("/admin/logs/index", headers=admin_headers(), json={
                    "model": "User", "model_id": user["id"], "action": "update"})
                return [r for r in rows.json() if "TOTP token created" in str(r)] \
                    if rows.status_code == 200 else None

            until(created_entry, "the audit log's TOTP entry")

            removed = http.post(f"/users/totp_delete/{user['id']}", headers=admin_headers())
            assert removed.status_code == 200, removed.text
            assert removed.json()["message"] == "User TOTP deleted."
            again = http.post("/users/login", headers={"Accept": "application/json"},
                              json={"User": {"email": email, "password": PASSWORD}})
            assert again.status_code == 200 and again.cookies["MISP-session"]
        finally:
            delete_user(http, admin_headers(), user["id"])  # with their sessions
