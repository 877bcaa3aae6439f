"""The orgs consumer's reactions: identity's users moving in and out of organisations complete
merges (the saga's last step) and undo a deletion that raced with a new user (README: races)."""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.identity import UserCreated, UserDeleted, UserUpdated
from misp_contracts.events.orgs import OrganisationMergeStarted, OrganisationRef
from misp_platform import failpoints
from orgs.adapters import store
from orgs.adapters.tables import DELETED, org_member, org_merge, organisation
from orgs.domain.model import decide_complete_merge, decide_restore
from orgs.handlers.organisations import lock, now, replay_from, user_count
from orgs.projections.organisations import save

log = structlog.get_logger(__name__)


async def complete_merge_if_done(conn: AsyncConnection, source_id: int, *,
                                 cause: Envelope | None = None) -> bool:
    """The last step: once no user is left in the source, it is merged and deleted. Idempotent:
    nothing happens without a running merge of `source_id`, or while users are left."""
    merge = (await conn.execute(select(org_merge).where(
        org_merge.c.source_id == source_id, org_merge.c.status == "running")
        .with_for_update())).first()
    if merge is None:
        return False
    await lock(conn, source_id, merge.target_id)
    left = await user_count(conn, source_id)
    if left:
        return False
    source = await store.load(conn, source_id)
    target_row = (await conn.execute(select(organisation.c.id, organisation.c.uuid,
                                            organisation.c.name)
                                     .where(organisation.c.id == merge.target_id))).first()
    if source is None or target_row is None:
        return False
    target = OrganisationRef(id=target_row.id, uuid=target_row.uuid, name=target_row.name)
    events = decide_complete_merge(source, target, merge_id=str(merge.merge_id), users_left=left,
                                   users_moved=merge.users_moved)
    if not events:
        return False
    failpoints.hit("orgs.merge.before_complete")
    actor = Actor.model_validate(merge.actor) if merge.actor else Actor.system()
    await store.append(conn, source_id, source.version, events, actor,
                       correlation_id=merge.correlation_id,
                       causation_id=cause.id if cause else None)
    await save(conn, replay_from(source, events))
    await conn.execute(update(org_merge).where(org_merge.c.merge_id == merge.merge_id)
                       .values(status="completed", completed_at=func.now()))
    log.info("orgs.merge_completed", merge_id=str(merge.merge_id), source_id=source_id,
             target_id=merge.target_id, users_moved=merge.users_moved)
    return True


async def _restore_if_deleted(conn: AsyncConnection, org_id: int, user: Any,
                              cause: Envelope) -> None:
    """A user landed in an organisation deleted meanwhile (identity had not seen the delete):
    the deletion is undone, so that no user belongs to a deleted organisation."""
    row = (await conn.execute(select(organisation.c.status, organisation.c.merged_into,
                                     organisation.c.name)
                              .where(organisation.c.id == org_id))).first()
    if row is None or row.status != DELETED:
        return
    if row.merged_into is not None:
        # Identity moves late users of a merged organisation itself (README: merge contract).
        log.warning("orgs.user_in_merged_org", org_id=org_id, user_id=user.id,
                    merged_into=row.merged_into)
        return
    org = await store.load(conn, org_id)
    name = row.name
    clash = (await conn.execute(select(organisation.c.id).where(
        organisation.c.status != DELETED, organisation.c.id != org_id,
        func.lower(organisation.c.name) == name.lower()))).first()
    if clash:
        name = f"{name} (restored {org_id})"
    event = decide_restore(org, name=name, now=now())
    if org is None or event is None:
        return
    await store.append(conn, org_id, org.version, [event], Actor.system(),
                       correlation_id=cause.correlationid or cause.id, causation_id=cause.id)
    await save(conn, replay_from(org, [event]), logo=None)
    log.warning("orgs.org_restored", org_id=org_id, user_id=user.id,
                reason="a user was added while it was being deleted")


async def when_user_saved_track_member(conn: AsyncConnection, envelope: Envelope) -> None:
    model = UserCreated if envelope.type == UserCreated.type else UserUpdated
    user = model.model_validate(envelope.data).user
    held = (await conn.execute(select(org_member.c.org_id, org_member.c.version,
                                      org_member.c.deleted).where(
        org_member.c.user_id == user.id))).first()
    if held is not None and _older(envelope.streamversion, held.version):
        return  # a replay of an older state: the row (or its tombstone) already knows better
    before = held.org_id if held is not None and not held.deleted else None
    involved = {user.org_id, *([before] if before is not None else [])}
    await lock(conn, *involved)
    stmt = pg_insert(org_member).values(user_id=user.id, org_id=user.org_id, email=user.email,
                                        version=envelope.streamversion, deleted=False)
    await conn.execute(stmt.on_conflict_do_update(
        index_elements=[org_member.c.user_id],
        set_={"org_id": stmt.excluded.org_id, "email": stmt.excluded.email,
              "version": stmt.excluded.version, "deleted": False, "updated_at": func.now()}))
    if before is not None and before != user.org_id:
        await conn.execute(update(org_merge).where(
            org_merge.c.source_id == before, org_merge.c.target_id == user.org_id,
            org_merge.c.status == "running").values(users_moved=org_merge.c.users_moved + 1))
        await complete_merge_if_done(conn, before, cause=envelope)
    await _restore_if_deleted(conn, user.org_id, user, envelope)


async def when_user_deleted_untrack_member(conn: AsyncConnection, envelope: Envelope) -> None:
    """A tombstone, so that a replayed creation of the user cannot count them again."""
    event = UserDeleted.model_validate(envelope.data)
    held = (await conn.execute(select(org_member.c.org_id, org_member.c.version,
                                      org_member.c.deleted).where(
        org_member.c.user_id == event.user_id))).first()
    if held is not None and _older(envelope.streamversion, held.version):
        return
    stmt = pg_insert(org_member).values(user_id=event.user_id, org_id=event.org_id,
                                        email=event.email, version=envelope.streamversion,
                                        deleted=True)
    await conn.execute(stmt.on_conflict_do_update(
        index_elements=[org_member.c.user_id],
        set_={"deleted": True, "version": stmt.excluded.version, "updated_at": func.now()}))
    if held is not None and not held.deleted:
        await complete_merge_if_done(conn, held.org_id, cause=envelope)


def _older(version: int | None, held: int | None) -> bool:
    """Whether an event of stream version `version` is older than (or the same as) the row's
    (unversioned events and rows are always applied)."""
    return version is not None and held is not None and version <= held


async def when_merge_started_complete_if_empty(conn: AsyncConnection,
                                               envelope: Envelope) -> None:
    event = OrganisationMergeStarted.model_validate(envelope.data)
    await complete_merge_if_done(conn, event.source.id, cause=envelope)


async def complete_pending_merges(conn: AsyncConnection) -> int:
    """At start-up: finish any running merge whose source is already empty."""
    done = 0
    sources = (await conn.execute(select(org_merge.c.source_id)
                                  .where(org_merge.c.status == "running"))).scalars().all()
    for source_id in sources:
        done += await complete_merge_if_done(conn, int(source_id))
    return done
