"""Authorization everywhere (ARCHITECTURE §4), through the real processes and the gateway.

A site admin adds an organisation, a user in it and a key for them over the API; every
service's consumer process builds its own principals projection from identity's and orgs'
events, and its API then accepts the key and knows the user and the organisation. Disabling the
user reaches every service; the test deletes what it made."""

from __future__ import annotations

import secrets

import httpx

from misp_contracts.topics import SERVICES

from .support import GATEWAY, add_organisation, add_user_once_known, admin_headers, until

DISABLED = "Authentication failed. Your user account has been disabled."  # MISP's words
USER_ROLE = 3


def statuses(http: httpx.Client, key: str) -> dict[str, int]:
    return {s: http.get(f"/api/v1/{s}/whoami", headers={"Authorization": key}).status_code
            for s in SERVICES}


def wait_for(http: httpx.Client, key: str, status: int) -> None:
    until(lambda: all(c == status for c in statuses(http, key).values()),
          f"every service answering {status}", timeout_s=30, interval_s=0.05)


def test_a_key_made_over_the_api_works_on_every_service_and_disabling_its_user_reaches_all(
        ) -> None:
    site = admin_headers()
    token = secrets.token_hex(5)
    with httpx.Client(base_url=GATEWAY, timeout=30) as http:
        org_id = add_organisation(http, site, f"e2e-principals {token}")
        email = f"e2e-principals-{token}@example.test"
        user = add_user_once_known(http, site, email=email, org_id=org_id, role_id=USER_ROLE)
        try:
            made = http.post(f"/auth_keys/add/{user['id']}", headers=site,
                             json={"comment": f"e2e principals {token}"})
            assert made.status_code == 200, made.text
            key = made.json()["AuthKey"]["authkey_raw"]
            wait_for(http, key, 200)
            me = http.get("/api/v1/orgs/whoami", headers={"X-MISP-AUTH": key}).json()
            assert me["User"] == {"id": str(user["id"]), "email": email}
            assert me["Organisation"]["name"] == f"e2e-principals {token}"

            disabled = http.post(f"/admin/users/edit/{user['id']}", headers=site,
                                 json={"disabled": True})
            assert disabled.status_code == 200, disabled.text
            wait_for(http, key, 403)
            refused = http.get("/api/v1/jobs/whoami", headers={"Authorization": key})
            assert refused.json() == {"name": DISABLED, "message": DISABLED,
                                      "url": "/api/v1/jobs/whoami"}
        finally:
            gone = http.post(f"/admin/users/delete/{user['id']}", headers=site)
            assert gone.status_code == 200, gone.text
        # Orgs deletes an organisation once its user projection is empty.
        until(lambda: http.post(f"/admin/organisations/delete/{org_id}",
                                headers=site).status_code == 200,
              "the emptied organisation deleted")
