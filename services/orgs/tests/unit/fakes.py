"""In-memory fakes of the orgs ports (adapters/ports.py), for the handlers' unit tests: they
subclass the ports, so a port that grows an operation breaks them until they have it too.

FakeOrgsStore keeps the streams, the read model (the projection's rows), the user projection
and the merges in dicts, with the SQL store's rules that a handler can tell: optimistic
concurrency on append, live-only lookups, the read model's unique names and uuids.
FakeUnitOfWork snapshots the store when it opens and puts the snapshot back unless committed.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Self

from misp_contracts.envelope import Actor
from misp_contracts.events.base import DomainEvent
from misp_platform.eventstore import ConcurrencyError
from orgs.adapters.ports import Keep, Listed, Member, Merge, OrgsStore, UnitOfWork
from orgs.domain.errors import OrganisationValidationError
from orgs.domain.model import (
    DELETED,
    NAME_TAKEN,
    UUID_RE,
    UUID_TAKEN,
    Organisation,
    replay,
)
from orgs.projections.organisations import read_model_row


@dataclass(frozen=True)
class Appended:
    """One append, as the outbox would publish it."""

    org_id: int
    expected_version: int
    events: tuple[DomainEvent, ...]
    actor: Actor
    correlation_id: str | None
    causation_id: str | None

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.events]


@dataclass
class FakeData:
    """What a transaction changes (and a rollback puts back)."""

    streams: dict[int, list[DomainEvent]] = field(default_factory=dict)
    published: list[Appended] = field(default_factory=list)
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    members: dict[int, tuple[Member, str]] = field(default_factory=dict)
    merges: dict[str, Merge] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    last_id: int = 1  # 1 is the host organisation's


class FakeOrgsStore(OrgsStore):
    def __init__(self) -> None:
        self.data = FakeData()
        self.locked: list[tuple[int, ...]] = []
        # Appends still to lose to another writer (each raises a ConcurrencyError).
        self.lose_races = 0

    # ---- test helpers -------------------------------------------------------------------------

    def events_of(self, org_id: int) -> list[DomainEvent]:
        return list(self.data.streams.get(org_id, []))

    def row(self, org_id: int) -> dict[str, Any]:
        return self.data.rows[org_id]

    @property
    def published(self) -> list[Appended]:
        return self.data.published

    # ---- the organisation streams -------------------------------------------------------------

    def _live(self) -> list[dict[str, Any]]:
        return [r for r in self.data.rows.values() if r["status"] != DELETED]

    async def find_id(self, key: str | int) -> int | None:
        text = str(key).strip()
        for row in self._live():
            if text.isdigit() and len(text) < 19:
                if row["id"] == int(text):
                    return int(row["id"])
            elif UUID_RE.fullmatch(text) and row["uuid"] == text.lower():
                return int(row["id"])
        return None

    async def lock(self, *org_ids: int) -> None:
        self.locked.append(tuple(sorted(org_ids)))

    async def load(self, org_id: int) -> Organisation | None:
        return replay(self.data.streams.get(org_id, []))

    async def append(self, org_id: int, expected_version: int, events: Sequence[DomainEvent],
                     actor: Actor, *, correlation_id: str | None = None,
                     causation_id: str | None = None) -> None:
        if self.lose_races:
            self.lose_races -= 1
            raise ConcurrencyError(f"organisation {org_id} moved (another writer)")
        stream = self.data.streams.setdefault(org_id, [])
        if len(stream) != expected_version:
            raise ConcurrencyError(
                f"organisation {org_id} is at {len(stream)}, not {expected_version}")
        stream.extend(events)
        self.data.published.append(Appended(org_id, expected_version, tuple(events), actor,
                                            correlation_id, causation_id))

    async def next_id(self) -> int:
        self.data.last_id += 1
        return self.data.last_id

    # ---- the read model -----------------------------------------------------------------------

    async def save(self, org: Organisation, *, logo: bytes | Keep | None = Keep.LOGO) -> None:
        if isinstance(logo, Keep):
            row = read_model_row(org, logo=None, keep_logo=True)
        else:
            row = read_model_row(org, logo=logo, keep_logo=False)
        if row["status"] != DELETED:  # the unique indexes of the read model
            for other in self._live():
                if other["id"] == row["id"]:
                    continue
                if other["name"].lower() == row["name"].lower():
                    raise OrganisationValidationError({"name": [NAME_TAKEN]})
                if other["uuid"] == row["uuid"]:
                    raise OrganisationValidationError({"uuid": [UUID_TAKEN]})
        before = self.data.rows.get(org.state.id, {})
        self.data.rows[org.state.id] = {"logo": before.get("logo"), **row}

    async def listed(self, org_id: int) -> Listed | None:
        row = self.data.rows.get(org_id)
        if row is None:
            return None
        return Listed(id=row["id"], uuid=row["uuid"], name=row["name"], status=row["status"],
                      merged_into=row["merged_into"])

    async def name_taken(self, name: str, *, other_than: int | None = None) -> bool:
        return any(r["name"].lower() == name.lower() and r["id"] != other_than
                   for r in self._live())

    async def uuid_taken(self, uuid: str, *, other_than: int | None = None) -> bool:
        return any(r["uuid"] == uuid and r["id"] != other_than for r in self._live())

    async def setting(self, name: str) -> Any:
        return self.data.settings.get(name)

    # ---- identity's users ---------------------------------------------------------------------

    async def user_count(self, org_id: int) -> int:
        return sum(1 for m, _ in self.data.members.values()
                   if m.org_id == org_id and not m.deleted)

    async def member(self, user_id: int) -> Member | None:
        held = self.data.members.get(user_id)
        return held[0] if held else None

    async def put_member(self, user_id: int, *, org_id: int, email: str,
                         version: int | None) -> None:
        self.data.members[user_id] = (Member(user_id, org_id, version, deleted=False), email)

    async def tombstone_member(self, user_id: int, *, org_id: int, email: str,
                               version: int | None) -> None:
        held = self.data.members.get(user_id)
        if held is not None:
            org_id, email = held[0].org_id, held[1]
        self.data.members[user_id] = (Member(user_id, org_id, version, deleted=True), email)

    # ---- merges -------------------------------------------------------------------------------

    async def add_merge(self, merge: Merge) -> None:
        if merge.merge_id in self.data.merges or await self._running(merge.source_id):
            raise AssertionError(f"a second running merge of {merge.source_id}")
        self.data.merges[merge.merge_id] = merge

    async def _running(self, source_id: int) -> Merge | None:
        return next((m for m in self.data.merges.values()
                     if m.source_id == source_id and m.status == "running"), None)

    async def running_merge(self, source_id: int) -> Merge | None:
        return await self._running(source_id)

    async def merging_into(self, target_id: int) -> bool:
        return any(m.target_id == target_id and m.status == "running"
                   for m in self.data.merges.values())

    async def count_moved_user(self, source_id: int, target_id: int) -> None:
        merge = await self._running(source_id)
        if merge is not None and merge.target_id == target_id:
            self.data.merges[merge.merge_id] = replace(merge,
                                                       users_moved=merge.users_moved + 1)

    async def complete_merge(self, merge_id: str) -> None:
        self.data.merges[merge_id] = replace(self.data.merges[merge_id], status="completed")

    async def running_merge_sources(self) -> list[int]:
        return [m.source_id for m in self.data.merges.values() if m.status == "running"]


class FakeUnitOfWork(UnitOfWork):
    """A transaction on a FakeOrgsStore: what it did is undone unless committed."""

    store: FakeOrgsStore

    def __init__(self, store: FakeOrgsStore | None = None) -> None:
        self.store = store if store is not None else FakeOrgsStore()
        self.opened = 0
        self.commits = 0
        self.rollbacks = 0
        self._before: FakeData | None = None
        self._committed = False

    async def __aenter__(self) -> Self:
        assert self._before is None, "this unit of work is already open"
        self.opened += 1
        self._committed = False
        self._before = copy.deepcopy(self.store.data)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if not self._committed:
            await self.rollback()
        self._before = None

    async def commit(self) -> None:
        assert self._before is not None, "commit inside `async with uow:`"
        self._committed = True
        self.commits += 1

    async def rollback(self) -> None:
        if self._before is not None and not self._committed:
            self.store.data = copy.deepcopy(self._before)
            self.rollbacks += 1
