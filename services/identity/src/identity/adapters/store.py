"""The unit of work: one transaction holds the events, identity's read models and the outbox.

`record` appends through the platform's event store and evolves the read models (and identity's
own principals projection) in the same transaction; `write` runs a command's transaction
through the platform's `in_transaction` (once more after a lost race, then 409).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from identity.domain.errors import InvalidFieldsError
from identity.domain.roles import NAME_TAKEN
from identity.domain.users import EMAIL_TAKEN
from identity.projections.project import project
from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.base import DomainEvent
from misp_platform import outbox
from misp_platform.eventstore import Append, ConcurrencyError, EventStore
from misp_platform.misp.errors import Conflict
from misp_platform.transaction import in_transaction

SERVICE = "identity"
EVENTS = EventStore(SERVICE)

T = TypeVar("T")

# Two requests creating the same row (a user's setting of one name): the loser decides again.
_RACED_INDEXES = ("ux_user_setting_user_setting",)

# Unique indexes whose violation is a user's mistake, not a bug: index -> (field, message).
_UNIQUE_VIOLATIONS = {
    "ux_user_account_email": ("email", EMAIL_TAKEN),
    "ux_role_name": ("name", NAME_TAKEN),
}


async def record(conn: AsyncConnection, appends: Sequence[Append]) -> list[Envelope]:
    """Append (events + outbox rows) and evolve the read models, in the caller's transaction."""
    envelopes = await EVENTS.append_many(conn, appends)
    await project(conn, envelopes)
    return envelopes


async def record_one(conn: AsyncConnection, *, stream_id: str, stream_type: str,
                     expected_version: int, events: Sequence[DomainEvent],
                     actor: Actor) -> list[Envelope]:
    return await record(conn, [Append(stream_id=stream_id, stream_type=stream_type,
                                      expected_version=expected_version, events=tuple(events),
                                      actor=actor)])


async def publish_only(conn: AsyncConnection, event: DomainEvent, *, actor: Actor,
                       key: str | None = None) -> Envelope:
    """An event that changes no aggregate (a failed login, a logout): outbox only."""
    envelope = Envelope(source=f"/{SERVICE}", type=event.type, subject=key, actor=actor,
                        correlationid=actor.request_id, data=event.model_dump(mode="json"))
    await outbox.enqueue(conn, envelope, topic=event.topic, key=key)
    return envelope


async def write(engine: AsyncEngine, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run `work` in a transaction, again once after a lost race (a raced index included),
    then 409; a taken email or role name is the caller's mistake."""
    try:
        return await in_transaction(engine, work, raced=_raced)
    except ConcurrencyError:
        raise Conflict() from None
    except IntegrityError as exc:
        text = str(exc.orig)
        for index, (field, message) in _UNIQUE_VIOLATIONS.items():
            if index in text:
                raise InvalidFieldsError({field: [message]}) from None
        raise


def _raced(exc: IntegrityError) -> bool:
    """Another request created the same row first: deciding again is enough."""
    return any(index in str(exc.orig) for index in _RACED_INDEXES)
