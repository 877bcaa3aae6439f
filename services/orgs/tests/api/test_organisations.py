"""MISP's organisation endpoints in-process: shapes, messages, status codes, permissions, and
the events each write leaves for the outbox (actor and changes)."""

from __future__ import annotations

import random
import uuid
from typing import Any

import httpx
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from misp_platform.db import event
from misp_platform.server_settings import record_setting
from misp_platform.testing import seed_principal
from orgs.settings import OrgsSettings

from ..support import auth

NO_PERMISSION = "You do not have permission to use this functionality."


def name() -> str:
    return f"Org {uuid.uuid4().hex[:10]}"


async def add(client: httpx.AsyncClient, key: str, **body: Any) -> httpx.Response:
    return await client.post("/admin/organisations/add", json=body, headers=auth(key))


async def events_of(engine: AsyncEngine, org_id: int) -> list[Any]:
    from orgs.domain.model import stream_id_of

    async with engine.connect() as conn:
        return list(await conn.execute(select(event).where(
            event.c.stream_id == stream_id_of(org_id)).order_by(event.c.version)))


async def test_add_returns_misps_organisation_record_with_string_ids_and_booleans(
        client: httpx.AsyncClient, keys: dict[str, str], orgs_engine: AsyncEngine) -> None:
    org_name = name()
    response = await add(client, keys["site_admin"], name=org_name, description="d",
                         nationality="Luxembourg", sector="Financial", type="CERT",
                         contacts="c@example.test", restricted_to_domain=["a.test", "b.test"])
    assert response.status_code == 200, response.text
    org = response.json()["Organisation"]
    assert org["name"] == org_name and org["local"] is True
    assert isinstance(org["id"], str) and org["id"].isdigit()
    assert org["user_count"] == "0" and org["restricted_to_domain"] == ["a.test", "b.test"]
    assert len(org["uuid"]) == 36 and org["uuid"] == org["uuid"].lower()
    assert len(org["date_created"]) == 19 and org["date_created"][10] == " "
    assert org["created_by"].isdigit() and "created_by_email" in org

    rows = await events_of(orgs_engine, int(org["id"]))
    assert [r.type for r in rows] == ["misp.orgs.organisation.created.v1"]
    actor = rows[0].metadata["actor"]
    assert actor["user_id"] == int(org["created_by"]) and actor["email"]
    async with orgs_engine.connect() as conn:
        queued = (await conn.execute(text(
            "SELECT count(*) FROM outbox WHERE topic = 'misp.orgs.organisation.v1'"))).scalar()
    assert queued == 1


async def test_a_wrapped_body_and_a_given_uuid_are_accepted(
        client: httpx.AsyncClient, keys: dict[str, str]) -> None:
    given = str(uuid.uuid4()).upper()
    response = await client.post("/admin/organisations/add.json", headers=auth(keys["site_admin"]),
                                 json={"Organisation": {"name": name(), "uuid": given,
                                                        "local": False}})
    assert response.status_code == 200, response.text
    assert response.json()["Organisation"]["uuid"] == given.lower()
    assert response.json()["Organisation"]["local"] is False


async def test_bad_input_gets_misps_403_failure_body_and_nothing_is_written(
        client: httpx.AsyncClient, keys: dict[str, str], orgs_engine: AsyncEngine) -> None:
    admin = keys["site_admin"]
    first = (await add(client, admin, name=name())).json()["Organisation"]
    async with orgs_engine.connect() as conn:
        before = (await conn.execute(text("SELECT count(*) FROM event"))).scalar()
    cases = [
        ({"name": first["name"]}, "name", "An organisation with this name already exists."),
        ({"name": first["name"].upper()}, "name",
         "An organisation with this name already exists."),
        ({"name": name(), "uuid": first["uuid"]}, "uuid",
         "An organisation with this UUID already exists."),
        ({"name": name(), "uuid": "1234"}, "uuid", "Please provide a valid RFC 4122 UUID"),
        ({"description": "no name"}, "name", "Name cannot be empty."),
        ({"name": {"a": 1}}, "name", "Name must be a string."),
    ]
    for body, field, message in cases:
        response = await add(client, admin, **body)
        assert response.status_code == 403, (body, response.text)
        assert response.json() == {
            "saved": False, "name": "Could not add Organisation",
            "message": "Could not add Organisation", "url": "/admin/organisations/add",
            "errors": {field: [message]}}
    bad_json = await client.post("/admin/organisations/add", content=b"{nope",
                                 headers={**auth(admin), "Content-Type": "application/json"})
    assert bad_json.status_code == 405 and "Invalid JSON input" in bad_json.json()["message"]
    not_object = await client.post("/admin/organisations/add", json=[1, 2], headers=auth(admin))
    assert not_object.status_code == 400
    async with orgs_engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM event"))).scalar() == before


async def test_only_site_admins_write(client: httpx.AsyncClient, keys: dict[str, str]) -> None:
    org = (await add(client, keys["site_admin"], name=name())).json()["Organisation"]
    for who in ("org_admin", "user"):
        for method, path in (("POST", "/admin/organisations/add"),
                             ("POST", f"/admin/organisations/edit/{org['id']}"),
                             ("POST", f"/admin/organisations/delete/{org['id']}"),
                             ("POST", f"/admin/organisations/merge/{org['id']}")):
            response = await client.request(method, path, json={"name": name()},
                                            headers=auth(keys[who]))
            assert response.status_code == 403, (who, path)
            assert response.json()["message"] == NO_PERMISSION
    missing = await client.get("/organisations/index", headers={"Accept": "application/json"})
    assert missing.status_code == 403


async def test_edit_by_id_or_uuid_changes_only_editable_fields_and_records_the_changes(
        client: httpx.AsyncClient, keys: dict[str, str], orgs_engine: AsyncEngine) -> None:
    admin = keys["site_admin"]
    org = (await add(client, admin, name=name(), sector="A")).json()["Organisation"]
    new_name = name()
    response = await client.post(f"/admin/organisations/edit/{org['uuid']}", headers=auth(admin),
                                 json={**org, "name": new_name, "sector": "B",
                                       "created_by": "12345", "id": "999", "user_count": "7"})
    assert response.status_code == 200, response.text
    edited = response.json()["Organisation"]
    assert edited["id"] == org["id"] and edited["name"] == new_name and edited["sector"] == "B"
    assert edited["created_by"] == org["created_by"] and edited["uuid"] == org["uuid"]
    put = await client.put(f"/admin/organisations/edit/{org['id']}", headers=auth(admin),
                           json={"Organisation": {"description": "via PUT"}})
    assert put.json()["Organisation"]["description"] == "via PUT"

    rows = await events_of(orgs_engine, int(org["id"]))
    assert [r.type for r in rows][1:] == ["misp.orgs.organisation.updated.v1"] * 2
    assert rows[1].data["changes"] == {"name": [org["name"], new_name], "sector": ["A", "B"]}
    assert rows[1].metadata["actor"]["email"]

    other = (await add(client, admin, name=name())).json()["Organisation"]
    clash = await client.post(f"/admin/organisations/edit/{org['id']}", headers=auth(admin),
                              json={"name": other["name"]})
    assert clash.status_code == 403
    assert clash.json()["errors"] == {"name": ["An organisation with this name already exists."]}
    assert clash.json()["name"] == "Could not edit Organisation"
    unknown = await client.post("/admin/organisations/edit/987654321", headers=auth(admin),
                                json={"name": name()})
    assert unknown.status_code == 404 and unknown.json()["message"] == "Invalid organisation"


async def test_delete_answers_misps_envelope_by_id_or_uuid_and_frees_the_name(
        client: httpx.AsyncClient, keys: dict[str, str], orgs_engine: AsyncEngine) -> None:
    admin = keys["site_admin"]
    for by in ("id", "uuid"):
        org = (await add(client, admin, name=name())).json()["Organisation"]
        response = await client.post(f"/admin/organisations/delete/{org[by]}",
                                     headers=auth(admin))
        assert response.status_code == 200, response.text
        assert response.json() == {
            "saved": True, "success": True, "name": "Organisation deleted",
            "message": "Organisation deleted",
            "url": f"/admin/organisations/delete/{org['id']}", "id": org["id"]}
        view = await client.get(f"/organisations/view/{org['id']}", headers=auth(admin))
        assert view.status_code == 404
        assert view.json() == {"name": "Invalid organisation", "message": "Invalid organisation",
                               "url": f"/organisations/view/{org['id']}"}
        again = await add(client, admin, name=org["name"])
        assert again.status_code == 200
        assert again.json()["Organisation"]["id"] != org["id"]
    last = again.json()["Organisation"]["id"]
    deleted = await client.delete(f"/admin/organisations/delete/{last}",
                                  headers=auth(admin))
    assert deleted.status_code == 200
    gone = await client.post("/admin/organisations/delete/987654321", headers=auth(admin))
    assert gone.status_code == 404
    async with orgs_engine.begin() as conn:  # the next organisation is the host (id 1)
        await conn.execute(text("ALTER SEQUENCE organisation_id_seq RESTART WITH 1"))
    host_org = (await add(client, admin, name=name())).json()["Organisation"]
    assert host_org["id"] == "1"
    host = await client.post("/admin/organisations/delete/1", headers=auth(admin))
    assert host.status_code == 403
    assert host.json() == {"saved": False, "name": "Could not delete Organisation",
                           "message": "Could not delete Organisation",
                           "url": "/admin/organisations/delete/1",
                           "errors": {"id": ["The host organisation cannot be deleted."]}}


async def test_view_by_id_uuid_or_name_and_head(client: httpx.AsyncClient,
                                                keys: dict[str, str]) -> None:
    admin = keys["site_admin"]
    org = (await add(client, admin, name=name())).json()["Organisation"]
    for key in (org["id"], org["uuid"], org["name"], org["name"].replace(" ", "+")):
        response = await client.get(f"/organisations/view/{key}", headers=auth(admin))
        assert response.status_code == 200, key
        assert response.json()["Organisation"]["id"] == org["id"]
    head = await client.head(f"/organisations/view/{org['uuid']}", headers=auth(admin))
    assert head.status_code == 200
    missing = await client.head(f"/organisations/view/{uuid.uuid4()}", headers=auth(admin))
    assert missing.status_code == 404
    as_user = await client.get(f"/organisations/view/{org['id']}", headers=auth(keys["user"]))
    assert as_user.status_code == 200 and "created_by" not in as_user.json()["Organisation"]


async def test_index_scopes_search_and_ordering(client: httpx.AsyncClient,
                                                keys: dict[str, str]) -> None:
    admin = keys["site_admin"]
    tag = uuid.uuid4().hex[:8]
    local = (await add(client, admin, name=f"b-{tag}", sector=f"sec-{tag}")).json()
    remote = (await add(client, admin, name=f"a-{tag}", local=False,
                        description=f"about {tag}")).json()
    async def names(path: str, key: str = admin) -> list[str]:
        response = await client.get(path, headers=auth(key))
        assert response.status_code == 200, response.text
        return [o["Organisation"]["name"] for o in response.json()]

    assert await names(f"/organisations/index/scope:all/searchall:{tag}") == [
        f"a-{tag}", f"b-{tag}"]
    assert await names(f"/organisations/index/searchall:{tag}") == [f"b-{tag}"]
    assert await names(f"/organisations/index/scope:external/searchall:{tag}") == [f"a-{tag}"]
    assert await names(f"/organisations/index/scope:all/searchall:{tag.upper()}") == [
        f"a-{tag}", f"b-{tag}"]
    assert await names(f"/organisations/index/scope:all/searchall:sec-{tag}.json") == [f"b-{tag}"]
    assert await names("/organisations/index/searchall:%25") == []  # no wildcard
    everything = (await client.get("/organisations", headers=auth(admin))).json()
    assert any(o["Organisation"]["name"] == local["Organisation"]["name"] for o in everything)
    for o in everything:
        assert set(o) == {"Organisation"} and "created_by_email" in o["Organisation"]
    as_user = (await client.get(f"/organisations/index/scope:all/searchall:{tag}",
                                headers=auth(keys["user"])))
    assert [o["Organisation"]["name"] for o in as_user.json()] == [f"a-{tag}", f"b-{tag}"]
    assert all("created_by" not in o["Organisation"] for o in as_user.json())
    assert remote["Organisation"]["local"] is False


async def test_hide_organisation_index_from_users_is_honoured(
        client: httpx.AsyncClient, keys: dict[str, str], orgs_engine: AsyncEngine,
        orgs_settings: OrgsSettings) -> None:
    org = (await add(client, keys["site_admin"], name=name())).json()["Organisation"]
    async with orgs_engine.begin() as conn:
        await record_setting(conn, "Security.hide_organisation_index_from_users", True)
    refused = await client.get("/organisations/index", headers=auth(keys["user"]))
    assert refused.status_code == 403 and refused.json()["message"] == NO_PERMISSION
    hidden = await client.get(f"/organisations/view/{org['id']}", headers=auth(keys["user"]))
    assert hidden.status_code == 404
    assert hidden.json() == {"name": "Invalid organisation", "message": "Invalid organisation",
                             "url": f"/organisations/view/{org['id']}"}
    # MISP hides the other organisations only: a member still views their own.
    member = await seed_principal(orgs_engine, orgs_settings.pepper.get_secret_value(),
                                  user_id=random.randint(10**9, 10**12), org_id=int(org["id"]),
                                  org_name=org["name"])
    own = await client.get(f"/organisations/view/{org['id']}", headers=auth(member))
    assert own.status_code == 200, own.text
    assert own.json()["Organisation"]["uuid"] == org["uuid"]
    assert "created_by" not in own.json()["Organisation"]
    for who in ("sharing", "site_admin"):
        index = await client.get("/organisations/index", headers=auth(keys[who]))
        assert index.status_code == 200
        assert (await client.get(f"/organisations/view/{org['id']}",
                                 headers=auth(keys[who]))).status_code == 200


async def test_the_nationality_drop_down_lists_iso_country_names(
        client: httpx.AsyncClient, keys: dict[str, str]) -> None:
    response = await client.get("/api/v1/orgs/countries", headers=auth(keys["user"]))
    assert response.status_code == 200
    names = response.json()
    assert "Luxembourg" in names and "Belgium" in names and len(names) > 200
    assert names == sorted(names)
    refused = await client.get("/api/v1/orgs/countries")
    assert refused.status_code == 403
