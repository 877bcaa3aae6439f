"""The ports of the orgs handlers: what a command or a reaction reads and writes, in the domain's
terms (no SQLAlchemy here), and the unit of work that makes one command one transaction.

`store.py` implements them on PostgreSQL; the unit tests' fakes (tests/unit/fakes.py) in memory.
They sit in adapters/ beside their implementations, so that imports only go downwards:
handlers -> adapters.ports <- adapters.store, and nothing in adapters imports a handler.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Any, Self

from misp_contracts.envelope import Actor
from misp_contracts.events.base import DomainEvent
from misp_contracts.events.orgs import OrganisationRef
from orgs.domain.model import Organisation


class Keep(Enum):
    """`OrgsStore.save(..., logo=KEEP_LOGO)`: leave the stored image as it is."""

    LOGO = "keep"


KEEP_LOGO = Keep.LOGO


@dataclass(frozen=True)
class Listed:
    """An organisation as the read model lists it (what the saga and a restore look at)."""

    id: int
    uuid: str
    name: str
    status: str
    merged_into: int | None

    @property
    def ref(self) -> OrganisationRef:
        return OrganisationRef(id=self.id, uuid=self.uuid, name=self.name)


@dataclass(frozen=True)
class Member:
    """Where identity's user is, as the user projection has it (`deleted`: a tombstone), and
    the version of the user's stream that said so (None: unversioned)."""

    user_id: int
    org_id: int
    version: int | None
    deleted: bool


@dataclass(frozen=True)
class Merge:
    """A merge saga: the source's users move to the target, then the source is closed."""

    merge_id: str
    source_id: int
    target_id: int
    requested_by: int
    actor: Actor | None
    correlation_id: str | None
    users_moved: int = 0
    status: str = "running"  # running | completed


class OrgsStore(abc.ABC):
    """The organisations' streams, their read model, the user projection and the merges, as
    seen from inside one transaction.

    A taken name or uuid (the read model's unique indexes) ends the unit of work with an
    OrganisationValidationError; a stream moved since it was loaded, with a ConcurrencyError.
    """

    # ---- the organisation streams -------------------------------------------------------------

    @abc.abstractmethod
    async def find_id(self, key: str | int) -> int | None:
        """The id of the live organisation an URL names (an integer id or a uuid), or None."""

    @abc.abstractmethod
    async def lock(self, *org_ids: int) -> None:
        """Hold these organisations until the transaction ends (taken in id order)."""

    @abc.abstractmethod
    async def load(self, org_id: int) -> Organisation | None:
        """The organisation as its stream makes it (deleted ones included), or None."""

    @abc.abstractmethod
    async def append(self, org_id: int, expected_version: int, events: Sequence[DomainEvent],
                     actor: Actor, *, correlation_id: str | None = None,
                     causation_id: str | None = None) -> None:
        """Append after `expected_version` (0: a new stream), published through the outbox;
        ConcurrencyError when the stream has moved."""

    @abc.abstractmethod
    async def next_id(self) -> int:
        """A fresh organisation id (1 is the host organisation's)."""

    # ---- the read model -----------------------------------------------------------------------

    @abc.abstractmethod
    async def save(self, org: Organisation, *, logo: bytes | Keep | None = KEEP_LOGO) -> None:
        """Write the read model's row of `org` after its new events; `logo`: the image to
        store, None to remove it, KEEP_LOGO to leave it. A deleted organisation has none."""

    @abc.abstractmethod
    async def listed(self, org_id: int) -> Listed | None:
        """The read model's row of the organisation (deleted ones included), or None."""

    @abc.abstractmethod
    async def name_taken(self, name: str, *, other_than: int | None = None) -> bool:
        """Whether a live organisation (not `other_than`) has this name, whatever its case."""

    @abc.abstractmethod
    async def uuid_taken(self, uuid: str, *, other_than: int | None = None) -> bool:
        """Whether a live organisation (not `other_than`) has this uuid."""

    @abc.abstractmethod
    async def setting(self, name: str) -> Any:
        """A server setting's value, as last published by the settings service."""

    # ---- identity's users ---------------------------------------------------------------------

    @abc.abstractmethod
    async def user_count(self, org_id: int) -> int:
        """How many users the user projection has in the organisation."""

    @abc.abstractmethod
    async def member(self, user_id: int) -> Member | None:
        """The user projection's row of the user (a tombstone included), or None."""

    @abc.abstractmethod
    async def put_member(self, user_id: int, *, org_id: int, email: str,
                         version: int | None) -> None:
        """The user is (now) in `org_id`, as of their stream's `version`."""

    @abc.abstractmethod
    async def tombstone_member(self, user_id: int, *, org_id: int, email: str,
                               version: int | None) -> None:
        """The user was deleted (a row that stays, so that a replay cannot count them again;
        a known user keeps their last organisation and email)."""

    # ---- merges -------------------------------------------------------------------------------

    @abc.abstractmethod
    async def add_merge(self, merge: Merge) -> None:
        """Record a running merge (one per source at a time)."""

    @abc.abstractmethod
    async def running_merge(self, source_id: int) -> Merge | None:
        """The running merge of this source, held until the transaction ends, or None."""

    @abc.abstractmethod
    async def merging_into(self, target_id: int) -> bool:
        """Whether a running merge has this organisation as its target."""

    @abc.abstractmethod
    async def count_moved_user(self, source_id: int, target_id: int) -> None:
        """One more user moved from the source to the target of a running merge (if any)."""

    @abc.abstractmethod
    async def complete_merge(self, merge_id: str) -> None:
        """The merge is done."""

    @abc.abstractmethod
    async def running_merge_sources(self) -> list[int]:
        """The sources of every running merge."""


class UnitOfWork(abc.ABC):
    """One transaction: `async with uow:` opens it, `await uow.commit()` keeps its work, and
    leaving the block without committing rolls it back. Entered again, it opens a new one (a
    handler retries a lost race so).

    An adapter translates its own failures: a lost race (another writer, a deadlock) leaves the
    block as a ConcurrencyError, a taken name or uuid as an OrganisationValidationError.
    """

    store: OrgsStore

    @abc.abstractmethod
    async def __aenter__(self) -> Self: ...

    @abc.abstractmethod
    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None: ...

    @abc.abstractmethod
    async def commit(self) -> None: ...

    @abc.abstractmethod
    async def rollback(self) -> None: ...
