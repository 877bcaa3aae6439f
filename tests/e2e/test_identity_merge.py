"""The organisation merge saga end to end: the real orgs and identity processes behind the
gateway. A site admin merges an organisation with users; identity moves them, orgs completes the
merge and deletes the source."""

from __future__ import annotations

import secrets
from contextlib import ExitStack
from typing import Any

import httpx

from .support import GATEWAY, admin_key, delete_organisation, delete_user, until


def test_merging_an_organisation_moves_its_users_and_deletes_it() -> None:
    headers = {"Authorization": admin_key(), "Accept": "application/json"}
    # What the test makes is deleted at the end, whatever happens: `undo` runs its callbacks in
    # reverse order (the users, then the target, then the source if the merge left it).
    with httpx.Client(base_url=GATEWAY, headers=headers, timeout=15) as http, \
            ExitStack() as undo:
        def new_org() -> dict[str, Any]:
            r = http.post("/admin/organisations/add",
                          json={"name": f"merge-e2e {secrets.token_hex(5)}"})
            assert r.status_code == 200, r.text
            org: dict[str, Any] = r.json()["Organisation"]
            return org

        def delete_if_left(org_id: str) -> None:
            if http.get(f"/organisations/view/{org_id}").status_code != 404:
                delete_organisation(http, headers, org_id)

        source = new_org()
        undo.callback(delete_if_left, source["id"])
        target = new_org()
        undo.callback(delete_organisation, http, headers, target["id"])

        def add_user() -> httpx.Response:
            return http.post("/admin/users/add", json={
                "email": f"merge-{secrets.token_hex(5)}@example.test",
                "org_id": source["id"], "role_id": "3"})

        # Identity learns the organisation from orgs' topic: until then it is unknown there.
        first = until(lambda: (r := add_user()).status_code == 200 and r, what="org in identity")
        users = [first.json()["User"]]
        undo.callback(delete_user, http, headers, users[0]["id"])
        second = add_user()
        assert second.status_code == 200, second.text
        users.append(second.json()["User"])
        undo.callback(delete_user, http, headers, users[1]["id"])

        started = http.post(f"/admin/organisations/merge/{source['id']}",
                            json={"target_id": target["id"]})
        assert started.status_code == 200, started.text
        assert started.json()["saved"] is True

        def moved() -> bool:
            return all(http.get(f"/admin/users/view/{u['id']}").json()["User"]["org_id"]
                       == target["id"] for u in users)

        until(moved, what="users moved to the target")
        until(lambda: http.get(f"/organisations/view/{source['id']}").status_code == 404,
              what="source deleted")
        merge = until(lambda: (m := http.get(started.json()["status_url"]).json()["Merge"])
                      ["status"] == "completed" and m, what="merge completed")
        assert merge["users_moved"] == "2"
        listed = http.get(f"/admin/users/index/searchorg:{target['id']}").json()
        assert sorted(u["User"]["id"] for u in listed) == sorted(u["id"] for u in users)

        # The source is gone for identity too: no new user there.
        refused = add_user()
        assert refused.status_code == 403, refused.text
        assert refused.json()["errors"] == ["Invalid organisation"]
