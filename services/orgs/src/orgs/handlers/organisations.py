"""The commands on organisations: add, edit, delete, logo, merge start, and the first run.

Each runs in one transaction: events appended (with their outbox rows) and the read model saved
together; the organisation's read-model row is locked first, so a delete or a merge and the
user projection (consumer.py) never decide on a stale count.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from misp_contracts.envelope import Actor
from misp_platform.eventstore import ConcurrencyError
from misp_platform.server_settings import setting as get_setting
from orgs.adapters import store
from orgs.adapters.tables import DELETED, org_member, org_merge, organisation
from orgs.domain.errors import (
    OrganisationNotFoundError,
    OrganisationRefusedError,
    OrganisationValidationError,
)
from orgs.domain.logo import check_png
from orgs.domain.model import (
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
from orgs.projections.organisations import save

log = structlog.get_logger(__name__)


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class LogoLimits:
    max_bytes: int
    max_width: int
    max_height: int


async def lock(conn: AsyncConnection, *org_ids: int) -> None:
    """Row locks on organisations, in id order (no deadlock between two such callers)."""
    await conn.execute(select(organisation.c.id).where(organisation.c.id.in_(sorted(org_ids)))
                       .order_by(organisation.c.id).with_for_update())


async def user_count(conn: AsyncConnection, org_id: int) -> int:
    return int((await conn.execute(select(func.count()).select_from(org_member).where(
        org_member.c.org_id == org_id, org_member.c.deleted.is_(False)))).scalar_one())


async def _require(conn: AsyncConnection, key: str | int) -> tuple[int, Organisation]:
    org_id = await store.find_id(conn, key)
    if org_id is None:
        raise OrganisationNotFoundError("Invalid organisation")
    await lock(conn, org_id)
    org = await store.load(conn, org_id)
    if org is None or org.status == DELETED:
        raise OrganisationNotFoundError("Invalid organisation")
    return org_id, org


async def _check_unique(conn: AsyncConnection, fields: dict[str, Any],
                        exclude_id: int | None) -> None:
    """Friendly messages before the unique indexes (which remain the guarantee)."""
    errors: dict[str, list[str]] = {}
    live = organisation.c.status != DELETED
    others = organisation.c.id != (exclude_id if exclude_id is not None else -1)
    if "name" in fields:
        taken = (await conn.execute(select(organisation.c.id).where(
            live, others, func.lower(organisation.c.name) == fields["name"].lower()))).first()
        if taken:
            errors["name"] = [NAME_TAKEN]
    if fields.get("uuid"):
        taken = (await conn.execute(select(organisation.c.id).where(
            live, others, organisation.c.uuid == fields["uuid"]))).first()
        if taken:
            errors["uuid"] = [UUID_TAKEN]
    if errors:
        raise OrganisationValidationError(errors)


async def add_organisation(engine: AsyncEngine, *, body: dict[str, Any], actor: Actor,
                           created_by: int) -> Organisation:
    fields = clean_fields(body, creating=True)

    async def work(conn: AsyncConnection) -> Organisation:
        await _check_unique(conn, fields, None)
        org_id = await store.next_id(conn)
        event = decide_create(fields, org_id=org_id, created_by=created_by, now=now())
        org = evolve(None, event)
        assert org is not None
        await store.append(conn, org_id, 0, [event], actor)
        await save(conn, org)
        return org

    return await in_transaction(engine, work)


async def edit_organisation(engine: AsyncEngine, *, key: str, body: dict[str, Any],
                            actor: Actor) -> Organisation:
    fields = clean_fields(body, creating=False)

    async def work(conn: AsyncConnection) -> Organisation:
        org_id, org = await _require(conn, key)
        events = decide_edit(org, fields, now=now())
        if not events:
            return org
        await _check_unique(conn, {k: v for k, v in fields.items() if k in ("name", "uuid")},
                            org_id)
        await store.append(conn, org_id, org.version, events, actor)
        new = replay_from(org, events)
        await save(conn, new)
        return new

    return await in_transaction(engine, work)


def replay_from(org: Organisation, events: list[Any]) -> Organisation:
    out: Organisation | None = org
    for event in events:
        out = evolve(out, event)
    assert out is not None
    return out


async def delete_organisation(engine: AsyncEngine, *, key: str, actor: Actor) -> int:
    async def work(conn: AsyncConnection) -> int:
        org_id, org = await _require(conn, key)
        target_of_merge = (await conn.execute(select(org_merge.c.merge_id).where(
            org_merge.c.target_id == org_id, org_merge.c.status == "running"))).first()
        event = decide_delete(org, user_count=await user_count(conn, org_id),
                              target_of_running_merge=target_of_merge is not None)
        await store.append(conn, org_id, org.version, [event], actor)
        await save(conn, replay_from(org, [event]))
        return org_id

    return await in_transaction(engine, work)


async def set_logo(engine: AsyncEngine, *, key: str, data: bytes | None, actor: Actor,
                   limits: LogoLimits) -> Organisation:
    """Store (bytes) or remove (None) an organisation's logo."""
    logo = None if data is None else check_png(
        data, max_bytes=limits.max_bytes, max_width=limits.max_width,
        max_height=limits.max_height)

    async def work(conn: AsyncConnection) -> Organisation:
        org_id, org = await _require(conn, key)
        events = decide_logo(org, logo.sha256 if logo else None, now=now())
        if not events:
            return org
        await store.append(conn, org_id, org.version, events, actor)
        new = replay_from(org, events)
        await save(conn, new, logo=logo.data if logo else None)
        return new

    return await in_transaction(engine, work)


@dataclass(frozen=True)
class MergeStarted:
    merge_id: str
    source_id: int
    target_id: int


async def start_merge(engine: AsyncEngine, *, source_key: str, target_key: str | int | None,
                      actor: Actor, requested_by: int,
                      correlation_id: str | None = None) -> MergeStarted:
    """Close the source and ask identity to move its users (the saga's first step)."""
    if target_key is None or str(target_key).strip() == "":
        raise OrganisationRefusedError("Could not merge Organisation",
                                       {"target": ["Invalid target organisation."]})

    async def work(conn: AsyncConnection) -> MergeStarted:
        source_id = await store.find_id(conn, source_key)
        if source_id is None:
            raise OrganisationNotFoundError("Invalid organisation")
        target_id = await store.find_id(conn, str(target_key))
        await lock(conn, source_id, *([target_id] if target_id is not None else []))
        source = await store.load(conn, source_id)
        target = await store.load(conn, target_id) if target_id is not None else None
        merge_id = str(uuid.uuid4())
        event = decide_start_merge(source, target, merge_id=merge_id)
        assert source is not None and target_id is not None
        await store.append(conn, source_id, source.version, [event], actor,
                           correlation_id=correlation_id or merge_id)
        await save(conn, replay_from(source, [event]))
        await conn.execute(pg_insert(org_merge).values(
            merge_id=merge_id, source_id=source_id, target_id=target_id, status="running",
            requested_by=requested_by, actor=actor.model_dump(mode="json"),
            correlation_id=correlation_id or merge_id))
        return MergeStarted(merge_id=merge_id, source_id=source_id, target_id=target_id)

    return await in_transaction(engine, work)


async def ensure_host_organisation(engine: AsyncEngine) -> bool:
    """First run: create organisation 1 (named by MISP.org) unless it exists; True if created.

    Exactly once across restarts and concurrent processes: organisation 1's stream id is fixed,
    so a second creator's append collides on (stream, version 1) and finds it made.
    """
    async with engine.begin() as conn:
        if await store.load(conn, HOST_ORG_ID) is not None:
            return False
        name = str(await get_setting(conn, "MISP.org") or "ORGNAME")
        taken = (await conn.execute(select(organisation.c.id).where(
            organisation.c.status != DELETED,
            func.lower(organisation.c.name) == name.lower()))).first()
        if taken:
            name = f"{name} ({HOST_ORG_ID})"
        event = decide_create({"name": name, "local": True, "type": "ADMIN"},
                              org_id=HOST_ORG_ID, created_by=0, now=now(),
                              reason="first-run")
        org = replay([event])
        assert org is not None
        try:
            async with conn.begin_nested():
                await store.append(conn, HOST_ORG_ID, 0, [event], Actor.system())
        except ConcurrencyError:
            log.info("orgs.host_org_exists", org_id=HOST_ORG_ID)
            return False
        await save(conn, org)
    log.info("orgs.host_org_created", org_id=HOST_ORG_ID, name=name, uuid=org.state.uuid)
    return True
