"""Identity's side of the organisation merge saga (services/orgs/README.md, step 2).

On `OrganisationMergeStarted` one transaction of identity's database closes the source to new
users and moves every user of the source to the target through identity's own event store (one
`UserUpdated` per user, `changes: {"org_id": [source, target]}`); the consumer's processed mark
is written in that same transaction, so a redelivery does nothing, and a replay without the mark
finds no user left to move. `OrganisationMerged` and `OrganisationDeleted{merged_into}` sweep once
more (users that arrived in a window identity could not see) and mark the source deleted.
"""

from __future__ import annotations

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from identity.adapters import queries
from identity.adapters.store import close_organisation, record
from identity.handlers.users import STREAM
from identity.projections.project import when_organisation_deleted_project
from misp_contracts.envelope import Envelope
from misp_contracts.events.identity import UserUpdated
from misp_contracts.events.orgs import (
    OrganisationDeleted,
    OrganisationMerged,
    OrganisationMergeStarted,
    OrganisationRef,
)
from misp_platform.eventstore import Append

log = structlog.get_logger(__name__)


async def move_users(conn: AsyncConnection, source_id: int, target_id: int,
                     cause: Envelope) -> int:
    """Move every user of `source_id` to `target_id`, one `UserUpdated` each; how many moved."""
    rows = await queries.users_of_org(conn, source_id)
    if not rows:
        return 0
    correlation = cause.correlationid or str(cause.data.get("merge_id") or cause.id)
    appends = []
    for row in rows:
        moved = row.state.model_copy(update={"org_id": target_id})
        appends.append(Append(
            stream_id=row.stream_id, stream_type=STREAM, expected_version=row.version,
            events=(UserUpdated(user=moved, changes={"org_id": (source_id, target_id)}),),
            actor=cause.actor, correlation_id=correlation, causation_id=cause.id))
    await record(conn, appends)
    log.info("identity.merge.users_moved", source_id=source_id, target_id=target_id,
             users=len(appends), correlation_id=correlation)
    return len(appends)


async def when_merge_started_move_users(conn: AsyncConnection, envelope: Envelope) -> None:
    event = OrganisationMergeStarted.model_validate(envelope.data)
    await close_organisation(conn, event.source, event.target.id, event.merge_id)
    await move_users(conn, event.source.id, event.target.id, envelope)


async def when_merged_sweep(conn: AsyncConnection, envelope: Envelope) -> None:
    event = OrganisationMerged.model_validate(envelope.data)
    await close_organisation(conn, event.source, event.target.id, event.merge_id)
    await move_users(conn, event.source.id, event.target.id, envelope)


async def when_organisation_deleted_sweep(conn: AsyncConnection, envelope: Envelope) -> None:
    """A deletion ends a merge: users still in the source go to `merged_into`; then the
    organisation is deleted in identity's projection (no user may join it any more)."""
    event = OrganisationDeleted.model_validate(envelope.data)
    if event.merged_into is not None:
        source = OrganisationRef(id=event.org_id, uuid=event.uuid, name=event.name)
        await close_organisation(conn, source, event.merged_into, None)
        await move_users(conn, event.org_id, event.merged_into, envelope)
    await when_organisation_deleted_project(conn, envelope)
