"""The ports of identity's handlers: what a handler reads and writes, in the domain's terms (no
SQLAlchemy here), and the unit of work that makes one command one transaction.

A handler receives a `UnitOfWork` as an argument. It reads through `IdentityQueries`
(`async with uow.reads() as q`), and changes things in one transaction,
`await uow.transaction(work)`: `work` gets an `IdentityStore` (the reads, the writes and
`commit`), and the transaction is kept only if `work` called `commit()` and returned; a work
that raises, or never commits, is rolled back. A transaction that lost a race (another writer
moved the stream, a deadlock, a raced unique index) runs `work` once more, then answers 409
(misp_platform.transaction.in_transaction, as before), so `work` decides on what it reads,
every time; this is why the unit of work takes the work as a function rather than being an
`async with` block.

`queries.py` (SqlQueries) and `store.py` (SqlStore, SqlUnitOfWork) implement them on
PostgreSQL; the unit tests' fakes (tests/unit/fakes.py) in memory. They sit in adapters/ beside
their implementations (as in orgs), so that imports only go downwards:
handlers -> adapters.ports <- adapters.store, and nothing in adapters imports a handler
(lint-imports forbids a cycle between identity's subpackages).
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from misp_contracts.envelope import Actor
from misp_contracts.events.identity import (
    AuthKeyState,
    RegistrationState,
    RoleState,
    UserSettingState,
    UserState,
)
from misp_contracts.events.orgs import OrganisationState
from misp_platform.eventstore import Append

T = TypeVar("T")


# ---- what the reads give back ------------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    """An aggregate's state as its read model holds it, with the stream position."""

    stream_id: str
    version: int


@dataclass(frozen=True)
class LoadedUser(Loaded):
    state: UserState


@dataclass(frozen=True)
class LoadedRole(Loaded):
    state: RoleState


@dataclass(frozen=True)
class LoadedKey(Loaded):
    state: AuthKeyState


@dataclass(frozen=True)
class LoadedRegistration(Loaded):
    state: RegistrationState


@dataclass(frozen=True)
class Counted:
    """How many rows there are, and how many of them were created since two dates."""

    total: int
    month: int
    year: int


@dataclass(frozen=True)
class Figures:
    """The user and organisation counts of MISP's statistics pages (not deleted organisations)."""

    users: Counted
    users_with_gpgkey: int
    local_orgs: Counted
    external_orgs: Counted


@dataclass(frozen=True)
class LoadedSetting(Loaded):
    state: UserSettingState


@dataclass(frozen=True)
class SettingRow:
    """A row of `userSettings/index`: the setting and its owner."""

    setting: UserSettingState
    owner: UserState


@dataclass(frozen=True)
class UserRow:
    """A row of `admin/users/index`: the user, its role (None: unknown) and its org's name."""

    user: UserState
    role: RoleState | None
    org_name: str | None


@dataclass(frozen=True)
class KeyRow:
    """A row of `auth_keys/index`: the key and its owner."""

    key: AuthKeyState
    owner: UserState


@dataclass(frozen=True)
class UserViewParts:
    """What a user's MISP view shows beside the user."""

    role: RoleState | None
    default_role_id: int | None
    settings: dict[str, Any]
    org: OrganisationState | None


# ---- the ports ---------------------------------------------------------------------------------


class IdentityQueries(abc.ABC):
    """Reads of identity's read models and of the server settings it follows."""

    @abc.abstractmethod
    async def user(self, user_id: int) -> LoadedUser | None: ...

    @abc.abstractmethod
    async def users(self, *, org_ids: Sequence[int] | None = None, offset: int = 0,
                    limit: int | None = None) -> list[UserRow]:
        """Every user (of `org_ids` only, when given), by id; `offset`/`limit` slice them."""

    @abc.abstractmethod
    async def email_taken(self, email: str, *, except_id: int | None = None) -> bool:
        """Whether another user has this address (case-insensitive)."""

    @abc.abstractmethod
    async def password_hash(self, user_id: int) -> str | None: ...

    @abc.abstractmethod
    async def view_parts(self, user: UserState) -> UserViewParts: ...

    @abc.abstractmethod
    async def org_admins(self, org_id: int) -> dict[str, str]:
        """`{user id: email}` of the organisation's users whose role has perm_admin."""

    @abc.abstractmethod
    async def role(self, role_id: int) -> LoadedRole | None: ...

    @abc.abstractmethod
    async def roles(self, *, name_contains: str | None = None, offset: int = 0,
                    limit: int | None = None) -> list[RoleState]:
        """Every role (whose name holds `name_contains`, case-insensitive), by id; `offset` and
        `limit` slice them."""

    @abc.abstractmethod
    async def role_in_use(self, role_id: int) -> bool: ...

    @abc.abstractmethod
    async def default_role_id(self) -> int | None: ...

    @abc.abstractmethod
    async def organisation(self, org_id: int) -> OrganisationState | None:
        """The organisation unless deleted."""

    @abc.abstractmethod
    async def organisation_id(self, uuid: str) -> int | None:
        """The id of the organisation with this uuid (deleted ones included), or None."""

    @abc.abstractmethod
    async def organisation_open_for_users(self, org_id: int) -> OrganisationState | None:
        """The organisation if it may take users (not deleted, not being merged), else None.
        In a transaction, a merge start waits for this one (it cannot start across it)."""

    @abc.abstractmethod
    async def key(self, key_id: int) -> LoadedKey | None: ...

    @abc.abstractmethod
    async def keys_of(self, user_id: int) -> list[LoadedKey]:
        """The user's authkeys, by id."""

    @abc.abstractmethod
    async def keys(self, *, user_id: int | None = None, org_id: int | None = None,
                   offset: int = 0, limit: int | None = None) -> list[KeyRow]:
        """Authkeys with their owners, by key id: of one user, of one organisation's users,
        or all of them; `offset`/`limit` slice them."""

    @abc.abstractmethod
    async def user_setting(self, *, setting_id: int | None = None, user_id: int | None = None,
                           name: str | None = None) -> LoadedSetting | None:
        """A user's setting, by its id or by its user and name."""

    @abc.abstractmethod
    async def user_settings(self, *, setting_id: int | None = None, user_id: int | None = None,
                            name: str | None = None, org_id: int | None = None,
                            offset: int = 0, limit: int | None = None) -> list[SettingRow]:
        """User settings with their owners, by id; each given filter narrows them (`org_id`:
        of that organisation's users); `offset`/`limit` slice them."""

    @abc.abstractmethod
    async def open_registrations(self, *, offset: int = 0,
                                 limit: int | None = None) -> list[RegistrationState]:
        """The registrations neither accepted nor discarded, by id; `offset`/`limit` slice
        them."""

    @abc.abstractmethod
    async def open_registration(self, key: int | str) -> LoadedRegistration | None:
        """The open registration of this id (an int) or uuid (a str), held until the
        transaction ends (a second accept waits, then finds it closed)."""

    @abc.abstractmethod
    async def organisations_with_user_counts(
            self, *, local: bool | None) -> list[tuple[OrganisationState, int]]:
        """The organisations that are not deleted (local or external ones only, unless `local`
        is None), each with how many users it has, in id order."""

    @abc.abstractmethod
    async def figures(self, *, month: datetime, year: datetime) -> Figures:
        """Users and organisations counted; `month` and `year` are where their created-since
        counts start."""

    @abc.abstractmethod
    async def settings(self, names: Sequence[str]) -> dict[str, Any]:
        """`{name: value}` of server settings: the published value, else the catalogue's
        default."""

    @abc.abstractmethod
    async def stream_version(self, stream_id: str) -> int:
        """The version of an event stream (0: no event yet)."""


class IdentityStore(IdentityQueries):
    """One transaction: the reads, the writes, and the decision to keep them."""

    @abc.abstractmethod
    async def next_user_id(self) -> int: ...

    @abc.abstractmethod
    async def next_role_id(self) -> int: ...

    @abc.abstractmethod
    async def next_key_id(self) -> int: ...

    @abc.abstractmethod
    async def next_registration_id(self) -> int: ...

    @abc.abstractmethod
    async def next_setting_id(self) -> int: ...

    @abc.abstractmethod
    async def record(self, appends: Sequence[Append]) -> None:
        """Append events (and their outbox messages) and evolve the read models; a stream
        that moved since it was read is a lost race (the transaction runs again, then 409)."""

    @abc.abstractmethod
    async def set_password(self, user_id: int, password_hash: str | None) -> None:
        """The user's password hash (None: no usable password)."""

    @abc.abstractmethod
    async def forget_password(self, user_id: int) -> None: ...

    @abc.abstractmethod
    async def end_sessions(self, user_id: int, *, reason: str, actor: Actor,
                           stream_id: str | None) -> int:
        """End the user's login sessions, each published as ended for `reason` (in this
        transaction); how many there were."""

    @abc.abstractmethod
    async def commit(self) -> None:
        """Keep this transaction's changes (committed when the work returns)."""


class UnitOfWork(abc.ABC):
    """Where handlers read and write: a read-only view, or one transaction at a time."""

    @abc.abstractmethod
    def reads(self) -> AbstractAsyncContextManager[IdentityQueries]:
        """A read-only view of the read models (nothing it does is kept)."""

    @abc.abstractmethod
    async def transaction(self, work: Callable[[IdentityStore], Awaitable[T]]) -> T:
        """`work`'s answer, in one transaction kept only if `work` committed; run again once
        after a lost race, then Conflict (409). A taken email or role name that only the
        database's unique index caught is the caller's mistake (InvalidFieldsError)."""
