"""The race rule (services/orgs/README.md): no user ends up in a deleted organisation.

Orgs' side: a delete re-checks the user projection under the organisation's row lock; a user
that lands in an organisation deleted meanwhile (identity had not yet seen the delete) brings
it back; a merge completes only once the source is empty, late users included."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from misp_contracts.envelope import Envelope
from misp_contracts.events.identity import UserCreated
from misp_platform.consumer import ConsumerRunner
from misp_platform.testing import eventually
from orgs.adapters.store import SqlUnitOfWork
from orgs.consumer import handlers
from orgs.domain.errors import OrganisationInUseError
from orgs.handlers.organisations import delete_organisation
from orgs.settings import OrgsSettings

from ..support import Publish, auth, created, deleted, moved, new_user
from .test_merge_saga import _equals, add, stream_types, user_count

CREATED, DELETED = "misp.orgs.organisation.created.v1", "misp.orgs.organisation.deleted.v1"


async def test_delete_is_refused_while_the_user_projection_has_users(
        client: httpx.AsyncClient, keys: dict[str, str], running_consumer: ConsumerRunner,
        publish: Publish) -> None:
    admin = keys["site_admin"]
    org = await add(client, admin)
    user = new_user(int(org["id"]))
    await publish([created(user)])
    await eventually(lambda: _equals(user_count(client, admin, org["id"]), 1))
    refused = await client.post(f"/admin/organisations/delete/{org['id']}", headers=auth(admin))
    assert refused.status_code == 403
    assert refused.json() == {"saved": False, "name": "Could not delete Organisation",
                              "message": "Could not delete Organisation",
                              "url": f"/admin/organisations/delete/{org['id']}", "errors": {
                                  "id": ["The organisation still has 1 user(s): delete them or "
                                         "move them to another organisation first."]}}
    await publish([deleted(user)])
    await eventually(lambda: _equals(user_count(client, admin, org["id"]), 0))
    done = await client.post(f"/admin/organisations/delete/{org['id']}", headers=auth(admin))
    assert done.status_code == 200


async def test_a_user_added_while_the_organisation_was_deleted_brings_it_back(
        client: httpx.AsyncClient, keys: dict[str, str], orgs_engine: AsyncEngine,
        running_consumer: ConsumerRunner, publish: Publish) -> None:
    admin = keys["site_admin"]
    org = await add(client, admin)
    assert (await client.post(f"/admin/organisations/delete/{org['id']}",
                              headers=auth(admin))).status_code == 200
    # Identity had not seen the delete yet and accepted a user in the organisation.
    await publish([created(new_user(int(org["id"])))])
    await eventually(lambda: _equals(user_count(client, admin, org["id"]), 1))
    back = (await client.get(f"/organisations/view/{org['id']}", headers=auth(admin))).json()
    assert back["Organisation"]["uuid"] == org["uuid"]
    assert back["Organisation"]["name"] == org["name"]
    rows = await stream_types(orgs_engine, org["id"])
    assert [r.type for r in rows] == ["misp.orgs.organisation.created.v1",
                                      "misp.orgs.organisation.deleted.v1",
                                      "misp.orgs.organisation.created.v1"]
    assert rows[2].data["reason"] == "restored"


async def test_delete_and_a_new_user_racing_in_the_database_never_leave_the_user_orphaned(
        client: httpx.AsyncClient, keys: dict[str, str], orgs_engine: AsyncEngine,
        orgs_settings: OrgsSettings) -> None:
    """The delete and the projection of a new user, released at once, many times: either the
    delete is refused or the organisation comes back; never a user in a deleted organisation."""
    admin = keys["site_admin"]
    apply_user = handlers(orgs_settings)[UserCreated.type]
    outcomes: list[str] = []
    for _ in range(10):
        org = await add(client, admin)
        user = new_user(int(org["id"]))
        envelope = Envelope(source="/identity", type=UserCreated.type, subject=user.uuid,
                            data=UserCreated(user=user).model_dump(mode="json"))

        async def project(envelope: Envelope = envelope) -> None:
            async with orgs_engine.begin() as conn:
                await apply_user(conn, envelope)

        async def remove(org_id: str = org["id"]) -> int | OrganisationInUseError:
            try:
                return await delete_organisation(SqlUnitOfWork(orgs_engine), key=org_id,
                                                 actor=_actor())
            except OrganisationInUseError as refusal:  # the only refusal this race may give
                return refusal

        _, removed = await asyncio.gather(project(), remove())
        types = [r.type for r in await stream_types(orgs_engine, org["id"])]
        if isinstance(removed, OrganisationInUseError):
            assert removed.errors == {"id": [
                "The organisation still has 1 user(s): delete them or move them to another "
                "organisation first."]}
            assert types == [CREATED]
            outcomes.append("refused")
        else:
            assert removed == int(org["id"])
            restored = await stream_types(orgs_engine, org["id"])
            assert types == [CREATED, DELETED, CREATED] and restored[2].data["reason"] == "restored"
            outcomes.append("restored")
        async with orgs_engine.connect() as conn:
            status = (await conn.execute(text("SELECT status FROM organisation WHERE id = :id"),
                                         {"id": int(org["id"])})).scalar()
        assert status == "active"
        assert await user_count(client, admin, org["id"]) == 1
    assert len(outcomes) == 10, outcomes


async def test_a_late_user_of_a_merging_source_holds_the_merge_until_identity_moves_it(
        client: httpx.AsyncClient, keys: dict[str, str], running_consumer: ConsumerRunner,
        publish: Publish) -> None:
    admin = keys["site_admin"]
    source, target = await add(client, admin), await add(client, admin)
    first = new_user(int(source["id"]))
    await publish([created(first)])
    await eventually(lambda: _equals(user_count(client, admin, source["id"]), 1))
    started = await client.post(f"/admin/organisations/merge/{source['id']}",
                                headers=auth(admin), json={"target_id": target["uuid"]})
    assert started.status_code == 200
    late = new_user(int(source["id"]))  # accepted by identity before it saw the merge start
    await publish([created(late)])
    await eventually(lambda: _equals(user_count(client, admin, source["id"]), 2))
    await publish([moved(first, int(target["id"]))])
    await eventually(lambda: _equals(user_count(client, admin, target["id"]), 1))
    # The move and the merge's completion (had the source been empty) are one transaction:
    # once the target counts `first`, the merge has surely not completed.
    assert await user_count(client, admin, source["id"]) == 1  # still merging: `late` is there
    status = (await client.get(started.json()["status_url"], headers=auth(admin))).json()
    assert status["Merge"]["status"] == "running"
    await publish([moved(late, int(target["id"]))])  # identity's sweep moves it too
    await eventually(lambda: _equals(user_count(client, admin, source["id"]), None))
    assert await user_count(client, admin, target["id"]) == 2


def _actor() -> Any:
    from misp_contracts.envelope import Actor

    return Actor(user_id=1, email=f"{uuid.uuid4().hex[:6]}@example.test")
