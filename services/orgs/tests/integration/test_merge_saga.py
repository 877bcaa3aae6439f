"""The merge saga over the real Kafka: orgs starts it, identity's reaction (published here as
identity publishes it) moves the users, orgs completes it exactly once; refusals first."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from misp_platform.consumer import ConsumerRunner
from misp_platform.db import event
from misp_platform.testing import eventually
from orgs.domain.model import stream_id_of

from ..support import Publish, auth, created, moved, new_user


async def add(client: httpx.AsyncClient, key: str, **body: Any) -> dict[str, Any]:
    response = await client.post("/admin/organisations/add", headers=auth(key),
                                 json={"name": f"Org {uuid.uuid4().hex[:10]}", **body})
    assert response.status_code == 200, response.text
    org: dict[str, Any] = response.json()["Organisation"]
    return org


async def user_count(client: httpx.AsyncClient, key: str, org_id: str) -> int | None:
    response = await client.get(f"/organisations/view/{org_id}", headers=auth(key))
    if response.status_code != 200:
        return None
    return int(response.json()["Organisation"]["user_count"])


async def stream_types(engine: AsyncEngine, org_id: str) -> list[Any]:
    async with engine.connect() as conn:
        return list(await conn.execute(select(event.c.type, event.c.data, event.c.metadata).where(
            event.c.stream_id == stream_id_of(int(org_id))).order_by(event.c.version)))


async def test_merge_refuses_bad_targets_with_misps_failure_body(
        client: httpx.AsyncClient, keys: dict[str, str]) -> None:
    admin = keys["site_admin"]
    source = await add(client, admin)
    cases = [({"target_id": source["id"]}, "An organisation cannot be merged into itself."),
             ({"target_id": "987654321"}, "Invalid target organisation."),
             ({}, "Invalid target organisation."),
             ({"target_id": ["x"]}, "Invalid target organisation.")]
    for body, message in cases:
        response = await client.post(f"/admin/organisations/merge/{source['id']}",
                                     headers=auth(admin), json=body)
        assert response.status_code == 403, response.text
        assert response.json() == {"saved": False, "name": "Could not merge Organisation",
                                   "message": "Could not merge Organisation",
                                   "url": f"/admin/organisations/merge/{source['id']}",
                                   "errors": {"target": [message]}}
    unknown = await client.post("/admin/organisations/merge/987654321", headers=auth(admin),
                                json={"target_id": source["id"]})
    assert unknown.status_code == 404
    assert await user_count(client, admin, source["id"]) == 0  # nothing half-done


async def test_users_move_then_the_source_is_merged_and_deleted_exactly_once(
        client: httpx.AsyncClient, keys: dict[str, str], orgs_engine: AsyncEngine,
        running_consumer: ConsumerRunner, publish: Publish) -> None:
    admin = keys["site_admin"]
    source, target = await add(client, admin), await add(client, admin)
    users = [new_user(int(source["id"])) for _ in range(3)]
    await publish([created(u) for u in users])
    await eventually(lambda: _equals(user_count(client, admin, source["id"]), 3))

    started = await client.post(f"/admin/organisations/merge/{source['uuid']}",
                                headers=auth(admin),
                                json={"Organisation": {"targetType": "0",
                                                       "orgsLocal": target["id"]}})
    assert started.status_code == 200, started.text
    body = started.json()
    assert body["saved"] is True and body["message"] == "Organisation merge started."
    merge_url = body["status_url"]
    # The source is closed while users move: no edit, no delete, no second merge, and its
    # target cannot be deleted.
    for path, payload in ((f"/admin/organisations/edit/{source['id']}", {"name": "x"}),
                          (f"/admin/organisations/delete/{source['id']}", {}),
                          (f"/admin/organisations/delete/{target['id']}", {}),
                          (f"/admin/organisations/merge/{source['id']}",
                           {"target_id": target["id"]})):
        refused = await client.post(path, headers=auth(admin), json=payload)
        assert refused.status_code == 403, (path, refused.text)

    # Identity's reaction: one UserUpdated per user, org_id changing from source to target.
    await publish([moved(u, int(target["id"])) for u in users[:2]])
    await eventually(lambda: _equals(user_count(client, admin, source["id"]), 1))
    assert (await client.get(merge_url, headers=auth(admin))).json()["Merge"]["status"] == (
        "running")
    await publish([moved(users[2], int(target["id"]))])
    await eventually(lambda: _equals(user_count(client, admin, source["id"]), None))
    merge = (await client.get(merge_url, headers=auth(admin))).json()["Merge"]
    assert merge["status"] == "completed" and merge["users_moved"] == "3"
    assert await user_count(client, admin, target["id"]) == 3

    rows = await stream_types(orgs_engine, source["id"])
    assert [r.type for r in rows] == [
        "misp.orgs.organisation.created.v1", "misp.orgs.organisation.merge-started.v1",
        "misp.orgs.organisation.merged.v1", "misp.orgs.organisation.deleted.v1"]
    assert rows[2].data["target"]["id"] == int(target["id"]) and rows[2].data["users_moved"] == 3
    assert rows[3].data["merged_into"] == int(target["id"])
    admin_actor = rows[1].metadata["actor"]
    assert admin_actor["user_id"] and rows[2].metadata["actor"] == admin_actor
    assert rows[2].metadata["correlationid"] == rows[1].metadata["correlationid"]

    # A redelivered move changes nothing.
    await publish([moved(users[0], int(target["id"]))])
    await publish([created(new_user(int(target["id"])))])
    await eventually(lambda: _equals(user_count(client, admin, target["id"]), 4))
    assert len(await stream_types(orgs_engine, source["id"])) == 4


async def test_an_empty_organisation_is_merged_as_soon_as_orgs_sees_the_merge_start(
        client: httpx.AsyncClient, keys: dict[str, str], running_consumer: ConsumerRunner
        ) -> None:
    admin = keys["site_admin"]
    source, target = await add(client, admin), await add(client, admin)
    started = await client.post(f"/admin/organisations/merge/{source['id']}/{target['id']}",
                                headers=auth(admin))
    assert started.status_code == 200, started.text
    await eventually(lambda: _equals(user_count(client, admin, source["id"]), None))
    merge = (await client.get(started.json()["status_url"], headers=auth(admin))).json()
    assert merge["Merge"]["status"] == "completed" and merge["Merge"]["users_moved"] == "0"


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)
