"""The orgs consumer's reactions: identity's users moving in and out of organisations complete
merges (the saga's last step) and undo a deletion that raced with a new user (README: races).

A reaction runs in the consumer's transaction for its message: it takes the store on that
transaction (adapters/ports.py), and never commits."""

from __future__ import annotations

import structlog

from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.identity import UserCreated, UserDeleted, UserState, UserUpdated
from misp_contracts.events.orgs import OrganisationMergeStarted
from misp_platform import failpoints
from orgs.adapters.ports import OrgsStore, UnitOfWork
from orgs.domain.model import DELETED, decide_complete_merge, decide_restore
from orgs.handlers.organisations import now, replay_from

log = structlog.get_logger(__name__)


async def complete_merge_if_done(store: OrgsStore, source_id: int, *,
                                 cause: Envelope | None = None) -> bool:
    """The last step: once no user is left in the source, it is merged and deleted. Idempotent:
    nothing happens without a running merge of `source_id`, or while users are left."""
    merge = await store.running_merge(source_id)
    if merge is None:
        return False
    await store.lock(source_id, merge.target_id)
    left = await store.user_count(source_id)
    if left:
        return False
    source = await store.load(source_id)
    target = await store.listed(merge.target_id)
    if source is None or target is None:
        return False
    events = decide_complete_merge(source, target.ref, merge_id=merge.merge_id, users_left=left,
                                   users_moved=merge.users_moved)
    if not events:
        return False
    failpoints.hit("orgs.merge.before_complete")
    await store.append(source_id, source.version, events, merge.actor or Actor.system(),
                       correlation_id=merge.correlation_id,
                       causation_id=cause.id if cause else None)
    await store.save(replay_from(source, events))
    await store.complete_merge(merge.merge_id)
    log.info("orgs.merge_completed", merge_id=merge.merge_id, source_id=source_id,
             target_id=merge.target_id, users_moved=merge.users_moved)
    return True


async def _restore_if_deleted(store: OrgsStore, org_id: int, user: UserState,
                              cause: Envelope) -> None:
    """A user landed in an organisation deleted meanwhile (identity had not seen the delete):
    the deletion is undone, so that no user belongs to a deleted organisation."""
    listed = await store.listed(org_id)
    if listed is None or listed.status != DELETED:
        return
    if listed.merged_into is not None:
        # Identity moves late users of a merged organisation itself (README: merge contract).
        log.warning("orgs.user_in_merged_org", org_id=org_id, user_id=user.id,
                    merged_into=listed.merged_into)
        return
    org = await store.load(org_id)
    name = listed.name
    if await store.name_taken(name, other_than=org_id):
        name = f"{name} (restored {org_id})"
    event = decide_restore(org, name=name, now=now())
    if org is None or event is None:
        return
    await store.append(org_id, org.version, [event], Actor.system(),
                       correlation_id=cause.correlationid or cause.id, causation_id=cause.id)
    await store.save(replay_from(org, [event]), logo=None)
    log.warning("orgs.org_restored", org_id=org_id, user_id=user.id,
                reason="a user was added while it was being deleted")


async def when_user_saved_track_member(store: OrgsStore, envelope: Envelope) -> None:
    model = UserCreated if envelope.type == UserCreated.type else UserUpdated
    user = model.model_validate(envelope.data).user
    held = await store.member(user.id)
    if held is not None and _older(envelope.streamversion, held.version):
        return  # a replay of an older state: the row (or its tombstone) already knows better
    before = held.org_id if held is not None and not held.deleted else None
    involved = {user.org_id, *([before] if before is not None else [])}
    await store.lock(*involved)
    await store.put_member(user.id, org_id=user.org_id, email=user.email,
                           version=envelope.streamversion)
    if before is not None and before != user.org_id:
        await store.count_moved_user(before, user.org_id)
        await complete_merge_if_done(store, before, cause=envelope)
    await _restore_if_deleted(store, user.org_id, user, envelope)


async def when_user_deleted_untrack_member(store: OrgsStore, envelope: Envelope) -> None:
    """A tombstone, so that a replayed creation of the user cannot count them again."""
    event = UserDeleted.model_validate(envelope.data)
    held = await store.member(event.user_id)
    if held is not None and _older(envelope.streamversion, held.version):
        return
    await store.tombstone_member(event.user_id, org_id=event.org_id, email=event.email,
                                 version=envelope.streamversion)
    if held is not None and not held.deleted:
        await complete_merge_if_done(store, held.org_id, cause=envelope)


def _older(version: int | None, held: int | None) -> bool:
    """Whether an event of stream version `version` is older than (or the same as) the row's
    (unversioned events and rows are always applied)."""
    return version is not None and held is not None and version <= held


async def when_merge_started_complete_if_empty(store: OrgsStore, envelope: Envelope) -> None:
    event = OrganisationMergeStarted.model_validate(envelope.data)
    await complete_merge_if_done(store, event.source.id, cause=envelope)


async def complete_pending_merges(uow: UnitOfWork) -> int:
    """At start-up, in one transaction: finish any running merge whose source is already
    empty."""
    done = 0
    async with uow:
        for source_id in await uow.store.running_merge_sources():
            done += await complete_merge_if_done(uow.store, source_id)
        await uow.commit()
    return done
