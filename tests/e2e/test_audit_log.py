"""The audit log through the real processes and the gateway: a user added and renamed over the
API becomes MISP Log rows that the site admin finds with PyMISP's search call, a bad key's 403
is logged as auth_fail, and the chains verify. Every search holds a token of this run.

The log of a long-lived stack is big: the verification asked for is the API's default, bounded
whatever the log's size (the whole log when small, else the entries after a recent signed
checkpoint), and the answer must say which it did; a broken chain in that range still fails."""

from __future__ import annotations

import asyncio
import os
import secrets
import time

import httpx

from .support import admin_key

GATEWAY = os.environ.get("MISP_GATEWAY_URL", "http://127.0.0.1:8080")
# The verification's cost is bounded by the API's default range (audit's VerifyLimits),
# not by the log: room for a loaded machine, not for a walk of the whole log.
VERIFY_TIMEOUT_S = 30


async def search(client: httpx.AsyncClient, key: str, body: dict[str, object]) -> httpx.Response:
    return await client.post(f"{GATEWAY}/admin/logs/index", json=body,
                             headers={"Authorization": key, "Accept": "application/json"})


async def poll(client: httpx.AsyncClient, key: str, body: dict[str, object],
               timeout_s: float = 30) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout_s
    while True:
        response = await search(client, key, body)
        if response.status_code == 200 and response.json():
            rows: list[dict[str, object]] = response.json()
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"no row for {body}: {response.status_code} {response.text}")
        await asyncio.sleep(0.1)


async def test_identity_events_become_searchable_log_rows_through_the_gateway() -> None:
    key = admin_key()
    site = {"Authorization": key, "Accept": "application/json"}
    token = secrets.token_hex(5)  # in every name searched for: no row of an earlier run matches
    email, renamed = f"e2e-audit-{token}@example.test", f"e2e-audit-{token}-renamed@example.test"
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=10) as client:
        made = await client.post("/admin/users/add", headers=site,
                                 json={"email": email, "org_id": 1, "role_id": 3})
        assert made.status_code == 200, made.text
        user_id = int(made.json()["User"]["id"])
        try:
            edited = await client.post(f"/admin/users/edit/{user_id}", headers=site,
                                       json={"email": renamed})
            assert edited.status_code == 200, edited.text
            rows = await poll(client, key, {"model": "User", "model_id": user_id,
                                            "action": "edit", "title": f"%{token}%"})
            assert len(rows) == 1, rows
            log = rows[0]["Log"]
            assert isinstance(log, dict)
            assert log["change"] == f"email ({email}) => ({renamed})"
            assert log["title"] == f"User ({user_id}): {renamed}"
            added = await poll(client, key, {"model": "User", "action": "add",
                                             "title": f"%{token}%"})
            assert [r["Log"]["model_id"] for r in added] == [str(user_id)]  # type: ignore[index]
        finally:
            gone = await client.post(f"/admin/users/delete/{user_id}", headers=site)
            assert gone.status_code == 200, gone.text

        bad = secrets.token_hex(20)  # 40 characters, a new first and last four each run
        refused = await client.get("/admin/logs/index", headers={"Authorization": bad})
        assert refused.status_code == 403
        fails = await poll(client, key, {"action": "auth_fail",
                                         "title": f"%{bad[:4]}{'*' * 32}{bad[-4:]}%"})
        assert len(fails) == 1 and fails[0]["Log"]["email"] == "SYSTEM", fails  # type: ignore[index]

        verified = await client.get("/api/v1/audit/verify", headers={"Authorization": key},
                                    timeout=VERIFY_TIMEOUT_S)
        assert verified.status_code == 200, verified.text
        report = verified.json()
        assert report["ok"] is True, report
        assert report["compared_with_kafka"] is True and report["entries"] >= 0, report
        if report["full"]:  # a small log: walked whole
            assert report["since_checkpoint"] is None and report["not_covered_entries"] == 0
        else:  # a big one: from a signed checkpoint, what lies before it said, not walked
            assert report["since_checkpoint"] >= 1 and report["not_covered_entries"] > 0, report
