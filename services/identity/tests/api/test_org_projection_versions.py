"""Identity's projection of organisations never goes back in time: a replayed (older)
creation or update after a deletion leaves the organisation deleted, so users/add with it is
still refused; updates delivered out of order end in the newest name."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select

from identity.adapters.tables import org
from identity.bootstrap import spec
from identity.settings import IdentitySettings
from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.base import DomainEvent
from misp_contracts.events.orgs import (
    OrganisationCreated,
    OrganisationDeleted,
    OrganisationState,
    OrganisationUpdated,
)
from misp_platform.testing import with_principal_handlers

from ..conftest import Identity


async def apply(identity: Identity, event: DomainEvent, version: int, subject: str) -> None:
    envelope = Envelope(source="/orgs", type=event.type, subject=subject, streamversion=version,
                        actor=Actor.system(), data=event.model_dump(mode="json"))
    handlers = with_principal_handlers(spec.handlers(IdentitySettings()))
    async with identity.engine.begin() as conn:
        await handlers[event.type](conn, envelope)


def state(org_id: int, name: str, stream: str) -> OrganisationState:
    return OrganisationState(id=org_id, uuid=stream, name=name, date_created=datetime.now(UTC))


async def test_a_replayed_creation_cannot_bring_a_deleted_organisation_back(
        identity: Identity) -> None:
    stream = str(uuid.uuid4())
    created = OrganisationCreated(organisation=state(77, "Seventy-seven", stream))
    await apply(identity, created, 1, stream)
    assert (await identity.call("POST", "/admin/users/add", identity.admin_key, json={
        "email": f"a-{uuid.uuid4().hex[:8]}@example.test", "org_id": 77,
        "role_id": 3})).status_code == 200
    await apply(identity, OrganisationDeleted(org_id=77, uuid=stream, name="Seventy-seven"), 3,
                stream)
    await apply(identity, created, 1, stream)  # a DLQ replay, or a redelivery
    await apply(identity, OrganisationUpdated(organisation=state(77, "Renamed", stream),
                                              changes={}), 2, stream)
    refused = await identity.call("POST", "/admin/users/add", identity.admin_key, json={
        "email": f"b-{uuid.uuid4().hex[:8]}@example.test", "org_id": 77, "role_id": 3})
    assert refused.status_code == 403 and refused.json()["errors"] == ["Invalid organisation"]


async def test_updates_out_of_order_end_in_the_newest_state(identity: Identity) -> None:
    stream = str(uuid.uuid4())
    await apply(identity, OrganisationCreated(organisation=state(78, "v1", stream)), 1, stream)
    for version in (4, 2, 3):
        await apply(identity, OrganisationUpdated(organisation=state(78, f"v{version}", stream),
                                                  changes={}), version, stream)
    async with identity.engine.connect() as conn:
        row = (await conn.execute(select(org.c.name, org.c.version).where(
            org.c.org_id == 78))).one()
    assert (row.name, row.version) == ("v4", 4)
