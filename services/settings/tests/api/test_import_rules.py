"""Import blocklists, import regexps, the signature allowlist and the apply endpoint."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ..conftest import Keys


def _h(key: str) -> dict[str, str]:
    return {"Authorization": key, "Accept": "application/json"}


async def test_event_blocklist_add_index_edit_delete_in_misp_shapes(
        client: httpx.AsyncClient, keys: Keys, settings_engine: AsyncEngine) -> None:
    admin = _h(keys["site_admin"])
    first, second = str(uuid.uuid4()), str(uuid.uuid4()).upper()
    added = await client.post("/eventBlocklists/add", headers=admin, json={
        "uuids": [first, second], "comment": "bad feed", "event_info": "spam"})
    assert added.status_code == 200, added.text
    assert added.json()["result"]["successes"] == [first, second.lower()]
    again = (await client.post("/eventBlocklists/add", headers=admin,
                               json={"uuids": f"{first}\n"})).json()
    assert again["result"] == {"successes": [], "fails": [first]}
    assert again["message"].startswith("Done. Added 0 new entries")
    listed = (await client.get(f"/eventBlocklists/index/event_uuid:{first}",
                               headers=admin)).json()
    assert [(e["event_uuid"], e["comment"]) for e in listed] == [(first, "bad feed")]
    assert isinstance(listed[0]["id"], str)
    edited = await client.post(f"/eventBlocklists/edit/{first}", headers=admin,
                               json={"comment": "changed"})
    assert edited.json()["EventBlocklist"]["comment"] == "changed"
    deleted = await client.post(f"/eventBlocklists/delete/{first}", headers=admin)
    assert deleted.json()["success"] is True
    assert deleted.json()["message"] == "Blocklist entry removed"
    gone = await client.post(f"/eventBlocklists/delete/{first}", headers=admin)
    assert gone.status_code == 404
    async with settings_engine.connect() as conn:
        types = [r[0] for r in await conn.execute(text(
            "SELECT type FROM event WHERE stream_type = 'event-blocklist' ORDER BY recorded_at"))]
    assert types.count("misp.settings.event-blocklist.added.v1") == 2
    assert "misp.settings.event-blocklist.updated.v1" in types
    assert "misp.settings.event-blocklist.removed.v1" in types


async def test_a_malformed_uuid_is_a_4xx_and_nothing_is_written(
        client: httpx.AsyncClient, keys: Keys) -> None:
    admin = _h(keys["site_admin"])
    good = str(uuid.uuid4())
    r = await client.post("/orgBlocklists/add", headers=admin,
                          json={"uuids": [good, "x" * 36], "org_name": "Evil"})
    assert r.status_code == 403 and r.json()["saved"] is False
    listed = (await client.get("/orgBlocklists/index", headers=admin)).json()
    assert good not in {e["org_uuid"] for e in listed}
    assert {"Setec Astrononomy", "Acme Finance"} <= {e["org_name"] for e in listed}
    refused = await client.get("/orgBlocklists/index", headers=_h(keys["user"]))
    assert refused.status_code == 403


async def test_regexps_are_seeded_validated_and_applied(
        client: httpx.AsyncClient, keys: Keys) -> None:
    who = _h(keys["regexp"])
    seeded = (await client.get("/admin/regexp/index", headers=who)).json()
    assert len(seeded) == 29 and seeded[0]["Regexp"]["id"] == "1"
    invalid = await client.post("/admin/regexp/add", headers=who,
                                json={"Regexp": {"regexp": "/(a)\\1/", "replacement": "x"}})
    assert invalid.status_code == 403 and "regexp" in invalid.json()["errors"]
    marker = uuid.uuid4().hex[:8]
    added = await client.post("/admin/regexp/add", headers=who, json={
        "Regexp": {"regexp": f"/blockme-{marker}/i", "replacement": ""}})
    assert added.status_code == 200
    new_id = added.json()["Regexp"]["id"]
    assert int(new_id) > 29
    apply = "/api/v1/settings/import-rules/apply"
    blocked = (await client.post(apply, headers=who,
                                 json={"value": f"x BLOCKME-{marker} y"})).json()
    assert blocked["blocked"] is True and blocked["blocked_by_regexp"] == new_id
    rewritten = (await client.post(apply, headers=who, json={
        "value": "C:\\Users\\alice\\AppData\\Local\\Temp\\drop.exe", "type": "filename"})).json()
    assert rewritten["stored"] == "%TEMP%\\drop.exe" and rewritten["blocked"] is False
    edited = await client.post(f"/admin/regexp/edit/{new_id}", headers=who,
                               json={"Regexp": {"replacement": "[x]"}})
    assert edited.json()["Regexp"]["replacement"] == "[x]"
    assert (await client.post(f"/admin/regexp/delete/{new_id}", headers=who)).json()["success"]
    assert (await client.get("/admin/regexp/index", headers=_h(keys["user"]))).status_code == 403


async def test_a_catastrophic_pattern_is_stored_and_applied_at_once(
        client: httpx.AsyncClient, keys: Keys) -> None:
    who = _h(keys["regexp"])
    added = await client.post("/admin/regexp/add", headers=who,
                              json={"regexp": "/^(a+)+$/", "replacement": ""})
    assert added.status_code == 200
    # A backtracking engine would not finish this in the age of the universe (the test would
    # fail on pytest's timeout); RE2's linear one answers.
    r = await client.post("/api/v1/settings/import-rules/apply", headers=who,
                          json={"value": "a" * 100_000 + "!"})
    assert r.status_code == 200 and r.json()["blocked"] is False, r.text
    await client.post(f"/admin/regexp/delete/{added.json()['Regexp']['id']}", headers=who)


async def test_blocklisted_events_and_orgs_are_reported_by_apply(
        client: httpx.AsyncClient, keys: Keys) -> None:
    admin = _h(keys["site_admin"])
    event_uuid = str(uuid.uuid4())
    await client.post("/eventBlocklists/add", headers=admin, json={"uuids": [event_uuid]})
    r = (await client.post("/api/v1/settings/import-rules/apply", headers=admin,
                           json={"value": "v", "event_uuid": event_uuid})).json()
    assert r["blocked"] is True and r["reason"] == "Event blocked by event blocklist."
    org = (await client.post("/api/v1/settings/import-rules/apply", headers=admin, json={
        "value": "v", "orgc_uuid": "58d38339-7b24-4386-b4b4-4c0f950d210f"})).json()
    assert org["reason"] == "Event blocked by organisation blocklist."
    bad = await client.post("/api/v1/settings/import-rules/apply", headers=admin,
                            json={"value": "v", "event_uuid": "nope"})
    assert bad.status_code == 400


async def test_signature_allowlist_crud_and_unique_names(client: httpx.AsyncClient,
                                                         keys: Keys) -> None:
    who = _h(keys["regexp"])
    name = f"/10\\.{uuid.uuid4().int % 200}\\.0\\.1/"
    added = await client.post("/admin/allowedlists/add", headers=who,
                              json={"Allowedlist": {"name": name}})
    assert added.status_code == 200 and added.json()["Allowedlist"]["name"] == name
    dup = await client.post("/admin/allowedlists/add", headers=who, json={"name": name})
    assert dup.status_code == 403 and dup.json()["saved"] is False
    invalid = await client.post("/admin/allowedlists/add", headers=who, json={"name": "no"})
    assert invalid.status_code == 403
    everyone = (await client.get("/allowedlists/index", headers=_h(keys["user"]))).json()
    assert name in {e["Allowedlist"]["name"] for e in everyone}
    entry_id = added.json()["Allowedlist"]["id"]
    assert (await client.post(f"/admin/allowedlists/delete/{entry_id}",
                              headers=who)).json()["success"] is True


async def test_only_importers_rule_managers_and_site_admins_may_try_the_rules(
        client: httpx.AsyncClient, keys: Keys) -> None:
    """The blocklists are MISP's site admins' to see: a plain user learns nothing from apply,
    and a regexp manager tries values, not whether an event or org is blocklisted."""
    admin = _h(keys["site_admin"])
    event_uuid = str(uuid.uuid4())
    await client.post("/eventBlocklists/add", headers=admin, json={"uuids": [event_uuid]})
    apply = "/api/v1/settings/import-rules/apply"
    probe = {"value": "x", "event_uuid": event_uuid}
    refused = await client.post(apply, headers=_h(keys["user"]), json=probe)
    assert refused.status_code == 403 and "blocked" not in refused.json()
    assert (await client.post(apply, headers=_h(keys["user"]),
                              json={"value": "x"})).status_code == 403
    assert (await client.post(apply, headers=_h(keys["regexp"]),
                              json={"value": "x"})).status_code == 200
    assert (await client.post(apply, headers=_h(keys["regexp"]),
                              json=probe)).status_code == 403
    synced = await client.post(apply, headers=_h(keys["sync"]), json=probe)
    assert synced.status_code == 200 and synced.json()["blocked"] is True


async def test_cleaning_the_stored_attributes_finds_them_all_clean_for_a_site_admin_only(
        client: httpx.AsyncClient, keys: Keys) -> None:
    cleaned = await client.post("/admin/regexp/clean", headers=_h(keys["site_admin"]))
    assert cleaned.status_code == 200, cleaned.text
    message = "All done! Number of changed attributes: 0 Number of deletions: 0"
    assert cleaned.json() == {"saved": True, "success": True, "name": message,
                              "message": message, "url": "/admin/regexp/clean"}
    for who in ("regexp", "user"):  # MISP: admin_clean is the site admin's, not perm_regexp's
        refused = await client.post("/admin/regexp/clean", headers=_h(keys[who]))
        assert refused.status_code == 403
        assert refused.json()["message"] == "You do not have permission to use this functionality."
    assert (await client.get("/admin/regexp/clean",
                             headers=_h(keys["site_admin"]))).status_code == 405
