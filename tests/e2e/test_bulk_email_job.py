"""Through the gateway, against the running stack: an org admin's `admin/users/email` to all users
becomes a `bulk_email` job on the `email` queue (jobs service -> the mailer's own worker), which
completes with progress 100 and a summary, and every user of the org gets the mail in the local
mail catcher (`.local/mail/*.eml`); users of other orgs get nothing."""

from __future__ import annotations

import email
import os
import secrets
from contextlib import ExitStack
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest

from misp_contracts.events.jobs import STATUS_COMPLETED, STATUS_FAILED

from .support import (
    GATEWAY,
    add_organisation,
    add_user_once_known,
    admin_key,
    delete_organisation,
    delete_user,
    until,
)

MAIL_DIR = Path(os.environ.get("MISP_STATE_DIR", ".local")) / "mail"
ORG_ADMIN_ROLE, USER_ROLE = 2, 3


def mails_with(token: str) -> list[EmailMessage]:
    """The catcher's mails whose subject carries `token` (a double delivery shows twice)."""
    found: list[EmailMessage] = []
    for path in MAIL_DIR.glob("*.eml"):
        raw = path.read_bytes()
        if token.encode() in raw:
            message = email.message_from_bytes(raw, policy=policy.default)
            if isinstance(message, EmailMessage) and token in str(message["Subject"]):
                found.append(message)
    return found


def test_a_mail_to_all_users_runs_as_a_job_with_progress_and_reaches_every_user() -> None:
    if not MAIL_DIR.is_dir():
        pytest.fail(f"no mail catcher directory {MAIL_DIR}: is the stack up (make up)?")
    site = {"Authorization": admin_key(), "Accept": "application/json"}
    token = secrets.token_hex(5)
    # What the test makes is deleted at the end, whatever happens (the users first, their key
    # with them, then their organisation): `undo` runs its callbacks in reverse order.
    with httpx.Client(base_url=GATEWAY, timeout=30) as http, ExitStack() as undo:
        org_id = add_organisation(http, site, f"bulk-e2e {token}")
        undo.callback(delete_organisation, http, site, org_id)
        users: list[dict[str, Any]] = []
        for prefix, role in (("bulk-admin", ORG_ADMIN_ROLE), ("bulk-a", USER_ROLE),
                             ("bulk-b", USER_ROLE)):
            users.append(add_user_once_known(http, site, email=f"{prefix}-{token}@example.test",
                                             org_id=org_id, role_id=role))
            undo.callback(delete_user, http, site, users[-1]["id"])
        admin = users[0]
        addresses = sorted(str(u["email"]) for u in users)
        outsider = http.post("/admin/users/add", headers=site, json={
            "email": f"bulk-outsider-{token}@example.test", "org_id": 1, "role_id": USER_ROLE})
        assert outsider.status_code == 200, outsider.text
        undo.callback(delete_user, http, site, outsider.json()["User"]["id"])
        key = http.post(f"/auth_keys/add/{admin['id']}", headers=site,
                        json={"comment": "bulk e2e"})
        assert key.status_code == 200, key.text
        org_admin = {"Authorization": key.json()["AuthKey"]["authkey_raw"],
                     "Accept": "application/json"}
        until(lambda: http.get("/api/v1/mailer/whoami", headers=org_admin).status_code == 200,
              "the org admin's key known to the mailer", timeout_s=60)

        sent = http.post("/admin/users/email", headers=org_admin, json={
            "action": "0", "recipient": "0", "subject": f"Maintenance {token}",
            "body": "The instance is down on Friday 18:00 UTC."})
        assert sent.status_code == 200, sent.text
        answer = sent.json()
        assert answer["success"] is True and answer["message"].startswith("E-mail job queued")
        request_id = answer["request_id"]

        def job_id() -> str | None:
            r = http.get(f"/api/v1/mailer/requests/{request_id}", headers=org_admin)
            assert r.status_code == 200, r.text
            view = r.json()["BulkRequest"]
            assert view["status"] not in ("rejected", "failed"), view
            return view["job_id"]

        job = until(job_id, "the jobs service's JobQueued recorded by the mailer", timeout_s=60)
        listed = http.get("/jobs/index/email", headers=site)
        assert listed.status_code == 200, listed.text
        [row] = [j["Job"] for j in listed.json() if str(j["Job"]["id"]) == str(job)]
        assert row["job_type"] == "bulk_email" and row["worker"] == "email"

        def finished() -> dict[str, Any] | None:
            r = http.get(f"/api/v1/jobs/jobs/{job}", headers=site)
            assert r.status_code == 200, r.text
            state: dict[str, Any] = r.json()["Job"]
            return state if int(state["status"]) in (STATUS_COMPLETED, STATUS_FAILED) else None

        state = until(finished, "the bulk_email job finished", timeout_s=60)
        assert int(state["status"]) == STATUS_COMPLETED, state
        assert int(state["progress"]) == 100
        assert state["message"] == "Queued 3 e-mail(s).", state

        def all_arrived() -> list[EmailMessage] | None:
            found = mails_with(token)
            return found if len(found) >= len(addresses) else None

        received = until(all_arrived, "the mails in the catcher", timeout_s=60)
        # One each (counted, not keyed by recipient), and the outsider (org 1) got none.
        assert sorted(str(m["To"]) for m in received) == addresses
        assert all(m.get_content_type() == "multipart/signed" for m in received)
        done = http.get(f"/api/v1/mailer/requests/{request_id}", headers=org_admin).json()
        assert done["BulkRequest"]["status"] == "done" and done["BulkRequest"]["mails"] == "3"

        # Each mail sent is in the audit log as the org admin's admin_email, without its body.
        def logged() -> list[dict[str, Any]] | None:
            r = http.post("/admin/logs/index", headers=site, json={
                "action": "admin_email", "email": admin["email"]})
            assert r.status_code == 200, r.text
            rows = [x["Log"] for x in r.json() if f"Maintenance {token}" in x["Log"]["title"]]
            return rows if len(rows) >= len(addresses) else None

        rows = until(logged, "the mails sent in the audit log", timeout_s=60)
        assert sorted(r["title"] for r in rows) == sorted(
            f'Email to {a} sent, titled "Maintenance {token}".' for a in addresses)
        assert all(r["model"] == "User" and "Friday" not in r["change"] for r in rows)
