"""The commands on organisations: add, edit, delete, logo, merge start, and the first run.

Each takes the unit of work it runs in (adapters/ports.py; the composition root gives the SQL
one, the unit tests a fake) and runs in one transaction of it: events appended (with their
outbox rows) and the read model saved together; the organisation is locked first, so a delete
or a merge and the user projection (reactions.py) never decide on a stale count.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from misp_contracts.envelope import Actor
from misp_platform.eventstore import ConcurrencyError
from orgs.adapters.ports import Merge, OrgsStore, UnitOfWork
from orgs.domain.errors import (
    OrganisationNotFoundError,
    OrganisationRefusedError,
    OrganisationValidationError,
)
from orgs.domain.logo import check_png
from orgs.domain.model import (
    DELETED,
    HOST_ORG_ID,
    NAME_TAKEN,
    UUID_TAKEN,
    Organisation,
    clean_fields,
    decide_create,
    decide_delete,
    decide_edit,
    decide_logo,
    decide_start_merge,
    evolve,
    replay,
)
from orgs.handlers.transaction import in_transaction

log = structlog.get_logger(__name__)


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class LogoLimits:
    max_bytes: int
    max_width: int
    max_height: int


async def _require(store: OrgsStore, key: str | int) -> tuple[int, Organisation]:
    """The live organisation `key` names, locked."""
    org_id = await store.find_id(key)
    if org_id is None:
        raise OrganisationNotFoundError("Invalid organisation")
    await store.lock(org_id)
    org = await store.load(org_id)
    if org is None or org.status == DELETED:
        raise OrganisationNotFoundError("Invalid organisation")
    return org_id, org


async def _check_unique(store: OrgsStore, fields: dict[str, Any],
                        exclude_id: int | None) -> None:
    """Friendly messages before the unique indexes (which remain the guarantee)."""
    errors: dict[str, list[str]] = {}
    if "name" in fields and await store.name_taken(fields["name"], other_than=exclude_id):
        errors["name"] = [NAME_TAKEN]
    if fields.get("uuid") and await store.uuid_taken(fields["uuid"], other_than=exclude_id):
        errors["uuid"] = [UUID_TAKEN]
    if errors:
        raise OrganisationValidationError(errors)


def replay_from(org: Organisation, events: list[Any]) -> Organisation:
    out: Organisation | None = org
    for event in events:
        out = evolve(out, event)
    assert out is not None
    return out


async def add_organisation(uow: UnitOfWork, *, body: dict[str, Any], actor: Actor,
                           created_by: int) -> Organisation:
    fields = clean_fields(body, creating=True)

    async def work(store: OrgsStore) -> Organisation:
        await _check_unique(store, fields, None)
        org_id = await store.next_id()
        event = decide_create(fields, org_id=org_id, created_by=created_by, now=now())
        org = evolve(None, event)
        assert org is not None
        await store.append(org_id, 0, [event], actor)
        await store.save(org)
        return org

    return await in_transaction(uow, work)


async def edit_organisation(uow: UnitOfWork, *, key: str, body: dict[str, Any],
                            actor: Actor) -> Organisation:
    fields = clean_fields(body, creating=False)

    async def work(store: OrgsStore) -> Organisation:
        org_id, org = await _require(store, key)
        events = decide_edit(org, fields, now=now())
        if not events:
            return org
        await _check_unique(store, {k: v for k, v in fields.items() if k in ("name", "uuid")},
                            org_id)
        await store.append(org_id, org.version, events, actor)
        new = replay_from(org, events)
        await store.save(new)
        return new

    return await in_transaction(uow, work)


async def delete_organisation(uow: UnitOfWork, *, key: str, actor: Actor) -> int:
    async def work(store: OrgsStore) -> int:
        org_id, org = await _require(store, key)
        event = decide_delete(org, user_count=await store.user_count(org_id),
                              target_of_running_merge=await store.merging_into(org_id))
        await store.append(org_id, org.version, [event], actor)
        await store.save(replay_from(org, [event]))
        return org_id

    return await in_transaction(uow, work)


async def set_logo(uow: UnitOfWork, *, key: str, data: bytes | None, actor: Actor,
                   limits: LogoLimits) -> Organisation:
    """Store (bytes) or remove (None) an organisation's logo."""
    logo = None if data is None else check_png(
        data, max_bytes=limits.max_bytes, max_width=limits.max_width,
        max_height=limits.max_height)

    async def work(store: OrgsStore) -> Organisation:
        org_id, org = await _require(store, key)
        events = decide_logo(org, logo.sha256 if logo else None, now=now())
        if not events:
            return org
        await store.append(org_id, org.version, events, actor)
        new = replay_from(org, events)
        await store.save(new, logo=logo.data if logo else None)
        return new

    return await in_transaction(uow, work)


@dataclass(frozen=True)
class MergeStarted:
    merge_id: str
    source_id: int
    target_id: int


async def start_merge(uow: UnitOfWork, *, source_key: str, target_key: str | int | None,
                      actor: Actor, requested_by: int,
                      correlation_id: str | None = None) -> MergeStarted:
    """Close the source and ask identity to move its users (the saga's first step)."""
    if target_key is None or str(target_key).strip() == "":
        raise OrganisationRefusedError("Could not merge Organisation",
                                       {"target": ["Invalid target organisation."]})

    async def work(store: OrgsStore) -> MergeStarted:
        source_id = await store.find_id(source_key)
        if source_id is None:
            raise OrganisationNotFoundError("Invalid organisation")
        target_id = await store.find_id(str(target_key))
        await store.lock(source_id, *([target_id] if target_id is not None else []))
        source = await store.load(source_id)
        target = await store.load(target_id) if target_id is not None else None
        merge_id = str(uuid.uuid4())
        event = decide_start_merge(source, target, merge_id=merge_id)
        assert source is not None and target_id is not None
        await store.append(source_id, source.version, [event], actor,
                           correlation_id=correlation_id or merge_id)
        await store.save(replay_from(source, [event]))
        await store.add_merge(Merge(
            merge_id=merge_id, source_id=source_id, target_id=target_id,
            requested_by=requested_by, actor=actor, correlation_id=correlation_id or merge_id))
        return MergeStarted(merge_id=merge_id, source_id=source_id, target_id=target_id)

    return await in_transaction(uow, work)


async def ensure_host_organisation(uow: UnitOfWork) -> bool:
    """First run: create organisation 1 (named by MISP.org) unless it exists; True if created.

    Exactly once across restarts and concurrent processes: organisation 1's stream id is fixed,
    so a second creator's append collides on (stream, version 1) and finds it made.
    """
    async with uow:
        store = uow.store
        if await store.load(HOST_ORG_ID) is not None:
            return False
        name = str(await store.setting("MISP.org") or "ORGNAME")
        if await store.name_taken(name):
            name = f"{name} ({HOST_ORG_ID})"
        event = decide_create({"name": name, "local": True, "type": "ADMIN"},
                              org_id=HOST_ORG_ID, created_by=0, now=now(),
                              reason="first-run")
        org = replay([event])
        assert org is not None
        try:
            await store.append(HOST_ORG_ID, 0, [event], Actor.system())
        except ConcurrencyError:
            log.info("orgs.host_org_exists", org_id=HOST_ORG_ID)
            return False  # another process made it: this transaction is rolled back
        await store.save(org)
        await uow.commit()
    log.info("orgs.host_org_created", org_id=HOST_ORG_ID, name=name, uuid=org.state.uuid)
    return True
