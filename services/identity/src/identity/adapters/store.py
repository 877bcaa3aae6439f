"""The unit of work: one transaction holds the events, identity's read models and the outbox.

`record` appends through the platform's event store and evolves the read models (and identity's
own principals projection) in the same transaction; `write` runs a command's transaction and
retries it once after a concurrency error, then answers 409.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from psycopg import errors as pg_errors
from sqlalchemy.exc import DBAPIError, IntegrityError
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

SERVICE = "identity"
EVENTS = EventStore(SERVICE)

T = TypeVar("T")

# Two requests creating the same row (a user's setting of one name): the loser decides again.
_RACED_INDEXES = ("ux_user_setting_user_setting",)
# Two writers crossing (a request and the merge saga's consumer on the same user) may deadlock
# on the event table's unique index: the loser is retried like a concurrency error.
_RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)

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
    """Run `work` in a transaction; after a concurrency error retry once, then 409."""
    for attempt in (1, 2):
        try:
            async with engine.begin() as conn:
                return await work(conn)
        except ConcurrencyError:
            if attempt == 2:
                raise Conflict() from None
        except IntegrityError as exc:
            text = str(exc.orig)
            if any(index in text for index in _RACED_INDEXES):
                if attempt == 1:
                    continue  # another request created the same row first: decide again
                raise Conflict() from None
            for index, (field, message) in _UNIQUE_VIOLATIONS.items():
                if index in text:
                    raise InvalidFieldsError({field: [message]}) from None
            raise
        except DBAPIError as exc:
            if not isinstance(exc.orig, _RETRYABLE):
                raise
            if attempt == 2:
                raise Conflict() from None
    raise AssertionError("unreachable")
