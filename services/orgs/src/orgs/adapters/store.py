"""The orgs store on PostgreSQL (the writes): the organisation streams in the event store (their
outbox rows with them), the `organisation` read model, the user projection and the merges, and
the unit of work that runs a command in one transaction. The reads of the API are queries.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any, Self

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction

from misp_contracts.envelope import Actor
from misp_contracts.events.base import DomainEvent, decode
from misp_platform.eventstore import ConcurrencyError, EventStore
from misp_platform.server_settings import setting as get_setting
from misp_platform.transaction import RETRYABLE_SQLSTATES, sqlstate
from orgs.adapters import queries
from orgs.adapters.ports import Keep, Listed, Member, Merge, OrgsStore, UnitOfWork
from orgs.adapters.tables import DELETED, org_member, org_merge, organisation, organisation_id_seq
from orgs.domain.errors import OrganisationValidationError
from orgs.domain.model import NAME_TAKEN, UUID_TAKEN, Organisation, replay, stream_id_of
from orgs.projections.organisations import read_model_row

STREAM_TYPE = "organisation"
RUNNING = "running"
event_store = EventStore("orgs")


class SqlOrgsStore(OrgsStore):
    """The store on one connection, inside the transaction its caller opened (a unit of work,
    or the consumer's for a message)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    # ---- the organisation streams -------------------------------------------------------------

    async def find_id(self, key: str | int) -> int | None:
        return await queries.find_id(self.conn, key)

    async def lock(self, *org_ids: int) -> None:
        """Row locks on the read model, in id order (no deadlock between two such callers)."""
        await self.conn.execute(select(organisation.c.id)
                                .where(organisation.c.id.in_(sorted(org_ids)))
                                .order_by(organisation.c.id).with_for_update())

    async def load(self, org_id: int) -> Organisation | None:
        stored = await event_store.load(self.conn, stream_id_of(org_id))
        org = replay(e for e in (decode(s.type, s.data) for s in stored) if e is not None)
        if org is not None and stored:
            # Unknown event types still count for the version (optimistic concurrency).
            org = replace(org, version=stored[-1].version)
        return org

    async def append(self, org_id: int, expected_version: int, events: Sequence[DomainEvent],
                     actor: Actor, *, correlation_id: str | None = None,
                     causation_id: str | None = None) -> None:
        await event_store.append(
            self.conn, stream_id=stream_id_of(org_id), stream_type=STREAM_TYPE,
            expected_version=expected_version, events=events, actor=actor,
            correlation_id=correlation_id, causation_id=causation_id)

    async def next_id(self) -> int:
        return int((await self.conn.execute(select(organisation_id_seq.next_value())))
                   .scalar_one())

    # ---- the read model -----------------------------------------------------------------------

    async def save(self, org: Organisation, *, logo: bytes | Keep | None = Keep.LOGO) -> None:
        if isinstance(logo, Keep):
            row = read_model_row(org, logo=None, keep_logo=True)
        else:
            row = read_model_row(org, logo=logo, keep_logo=False)
        stmt = pg_insert(organisation).values(**row)
        await self.conn.execute(stmt.on_conflict_do_update(
            index_elements=[organisation.c.id],
            set_={k: stmt.excluded[k] for k in row if k != "id"}))

    async def listed(self, org_id: int) -> Listed | None:
        row = (await self.conn.execute(select(
            organisation.c.id, organisation.c.uuid, organisation.c.name, organisation.c.status,
            organisation.c.merged_into).where(organisation.c.id == org_id))).first()
        if row is None:
            return None
        return Listed(id=int(row.id), uuid=row.uuid, name=row.name, status=row.status,
                      merged_into=row.merged_into)

    async def _taken(self, condition: Any, other_than: int | None) -> bool:
        return (await self.conn.execute(select(organisation.c.id).where(
            organisation.c.status != DELETED,
            organisation.c.id != (other_than if other_than is not None else -1),
            condition).limit(1))).first() is not None

    async def name_taken(self, name: str, *, other_than: int | None = None) -> bool:
        return await self._taken(func.lower(organisation.c.name) == name.lower(), other_than)

    async def uuid_taken(self, uuid: str, *, other_than: int | None = None) -> bool:
        return await self._taken(organisation.c.uuid == uuid, other_than)

    async def setting(self, name: str) -> Any:
        return await get_setting(self.conn, name)

    # ---- identity's users ---------------------------------------------------------------------

    async def user_count(self, org_id: int) -> int:
        return int((await self.conn.execute(select(func.count()).select_from(org_member).where(
            org_member.c.org_id == org_id, org_member.c.deleted.is_(False)))).scalar_one())

    async def member(self, user_id: int) -> Member | None:
        row = (await self.conn.execute(select(
            org_member.c.org_id, org_member.c.version, org_member.c.deleted).where(
            org_member.c.user_id == user_id))).first()
        if row is None:
            return None
        return Member(user_id=user_id, org_id=int(row.org_id), version=row.version,
                      deleted=bool(row.deleted))

    async def put_member(self, user_id: int, *, org_id: int, email: str,
                         version: int | None) -> None:
        stmt = pg_insert(org_member).values(user_id=user_id, org_id=org_id, email=email,
                                            version=version, deleted=False)
        await self.conn.execute(stmt.on_conflict_do_update(
            index_elements=[org_member.c.user_id],
            set_={"org_id": stmt.excluded.org_id, "email": stmt.excluded.email,
                  "version": stmt.excluded.version, "deleted": False,
                  "updated_at": func.now()}))

    async def tombstone_member(self, user_id: int, *, org_id: int, email: str,
                               version: int | None) -> None:
        stmt = pg_insert(org_member).values(user_id=user_id, org_id=org_id, email=email,
                                            version=version, deleted=True)
        await self.conn.execute(stmt.on_conflict_do_update(
            index_elements=[org_member.c.user_id],
            set_={"deleted": True, "version": stmt.excluded.version, "updated_at": func.now()}))

    # ---- merges -------------------------------------------------------------------------------

    async def add_merge(self, merge: Merge) -> None:
        await self.conn.execute(pg_insert(org_merge).values(
            merge_id=merge.merge_id, source_id=merge.source_id, target_id=merge.target_id,
            status=merge.status, users_moved=merge.users_moved,
            requested_by=merge.requested_by,
            actor=merge.actor.model_dump(mode="json") if merge.actor else {},
            correlation_id=merge.correlation_id))

    async def running_merge(self, source_id: int) -> Merge | None:
        row = (await self.conn.execute(select(org_merge).where(
            org_merge.c.source_id == source_id, org_merge.c.status == RUNNING)
            .with_for_update())).first()
        if row is None:
            return None
        return Merge(merge_id=str(row.merge_id), source_id=int(row.source_id),
                     target_id=int(row.target_id), requested_by=int(row.requested_by),
                     actor=Actor.model_validate(row.actor) if row.actor else None,
                     correlation_id=row.correlation_id, users_moved=int(row.users_moved),
                     status=row.status)

    async def merging_into(self, target_id: int) -> bool:
        return (await self.conn.execute(select(org_merge.c.merge_id).where(
            org_merge.c.target_id == target_id, org_merge.c.status == RUNNING))).first() \
            is not None

    async def count_moved_user(self, source_id: int, target_id: int) -> None:
        await self.conn.execute(update(org_merge).where(
            org_merge.c.source_id == source_id, org_merge.c.target_id == target_id,
            org_merge.c.status == RUNNING).values(users_moved=org_merge.c.users_moved + 1))

    async def complete_merge(self, merge_id: str) -> None:
        await self.conn.execute(update(org_merge).where(org_merge.c.merge_id == merge_id)
                                .values(status="completed", completed_at=func.now()))

    async def running_merge_sources(self) -> list[int]:
        return [int(s) for s in (await self.conn.execute(
            select(org_merge.c.source_id).where(org_merge.c.status == RUNNING))).scalars()]


def unique_violation(exc: IntegrityError) -> OrganisationValidationError | None:
    """The validation error a unique index of the read model stands for, if it is one."""
    text = str(exc.orig)
    if "ux_organisation_name" in text:
        return OrganisationValidationError({"name": [NAME_TAKEN]})
    if "ux_organisation_uuid" in text:
        return OrganisationValidationError({"uuid": [UUID_TAKEN]})
    return None


def translated(exc: BaseException | None) -> Exception | None:
    """What a database failure means to a handler: a taken name or uuid (the read model's
    unique indexes) is a validation error; a deadlock or a serialization failure, a lost race
    (a ConcurrencyError, as another writer's append is); None for anything else."""
    if isinstance(exc, IntegrityError):
        return unique_violation(exc)
    if isinstance(exc, DBAPIError) and sqlstate(exc) in RETRYABLE_SQLSTATES:
        return ConcurrencyError(str(exc))
    return None


class SqlUnitOfWork(UnitOfWork):
    """A transaction on a connection of `engine`, per `async with` (not shared between
    concurrent callers: make one per request or command)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._conn: AsyncConnection | None = None
        self._tx: AsyncTransaction | None = None

    async def __aenter__(self) -> Self:
        if self._conn is not None:
            raise RuntimeError("this unit of work is already open")
        self._conn = await self.engine.connect()
        try:
            self._tx = await self._conn.begin()
        except BaseException:
            await self._conn.close()
            self._conn = None
            raise
        self.store = SqlOrgsStore(self._conn)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        conn, self._conn = self._conn, None
        try:
            await self.rollback()  # nothing left to undo after a commit
        finally:
            self._tx = None
            if conn is not None:
                await conn.close()
        mapped = translated(exc)
        if mapped is not None:
            raise mapped from exc

    async def commit(self) -> None:
        if self._tx is None:
            raise RuntimeError("no transaction: commit inside `async with uow:`")
        await self._tx.commit()

    async def rollback(self) -> None:
        if self._tx is not None and self._tx.is_active:
            await self._tx.rollback()
