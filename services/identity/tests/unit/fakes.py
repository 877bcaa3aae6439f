"""In-memory fakes of identity's ports (identity.adapters.ports), for the handlers' unit tests.

`World` is what the database would hold: the read models as the projections leave them, the
server settings, password hashes, session counts, stream versions and every recorded event.
`FakeUnitOfWork.transaction` works on a copy of it and keeps the copy only when the work
committed and returned, as the SQL unit of work keeps a transaction; a stale expected version
(at the append, or at the commit when another writer came first) is a lost race: the work runs
again once, then Conflict (409).
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from identity.adapters.ports import (
    Counted,
    Figures,
    IdentityQueries,
    IdentityStore,
    KeyRow,
    LoadedKey,
    LoadedRegistration,
    LoadedRole,
    LoadedSetting,
    LoadedUser,
    SettingRow,
    UnitOfWork,
    UserRow,
    UserViewParts,
)
from identity.domain.errors import InvalidFieldsError
from identity.domain.roles import NAME_TAKEN, seeded_roles
from identity.domain.users import EMAIL_TAKEN
from identity.handlers.roles import DEFAULT_ROLE_STREAM, role_stream
from misp_contracts.envelope import Actor
from misp_contracts.events import identity as ev
from misp_contracts.events.base import DomainEvent
from misp_contracts.events.identity import AuthKeyState, RegistrationState, RoleState, UserState
from misp_contracts.events.orgs import OrganisationState
from misp_contracts.settings_catalogue import definition
from misp_platform.eventstore import Append, ConcurrencyError
from misp_platform.misp.errors import Conflict

T = TypeVar("T")


def _window(rows: list[T], offset: int, limit: int | None) -> list[T]:
    return rows[offset:] if limit is None else rows[offset:offset + limit]


@dataclass
class World:
    users: dict[int, LoadedUser] = field(default_factory=dict)
    roles: dict[int, LoadedRole] = field(default_factory=dict)
    keys: dict[int, LoadedKey] = field(default_factory=dict)
    orgs: dict[int, OrganisationState] = field(default_factory=dict)
    deleted_orgs: set[int] = field(default_factory=set)
    merging_orgs: set[int] = field(default_factory=set)
    registrations: dict[int, LoadedRegistration] = field(default_factory=dict)  # open ones
    user_settings: dict[int, LoadedSetting] = field(default_factory=dict)
    default_role: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    passwords: dict[int, str | None] = field(default_factory=dict)
    sessions: dict[int, int] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    events: list[tuple[str, DomainEvent]] = field(default_factory=list)
    sequences: dict[str, int] = field(
        default_factory=lambda: {"user": 100, "role": 100, "key": 100, "registration": 100,
                                 "setting": 100})


class FakeQueries(IdentityQueries):
    def __init__(self, world: World) -> None:
        self.world = world

    async def user(self, user_id: int) -> LoadedUser | None:
        return self.world.users.get(user_id)

    async def users(self, *, org_ids: Sequence[int] | None = None, offset: int = 0,
                    limit: int | None = None) -> list[UserRow]:
        rows = []
        for user_id in sorted(self.world.users):
            user = self.world.users[user_id].state
            if org_ids is not None and user.org_id not in org_ids:
                continue
            role = self.world.roles.get(user.role_id)
            organisation = self.world.orgs.get(user.org_id)
            rows.append(UserRow(user=user, role=role.state if role else None,
                                org_name=organisation.name if organisation else None))
        return _window(rows, offset, limit)

    async def email_taken(self, email: str, *, except_id: int | None = None) -> bool:
        wanted = email.strip().lower()
        return any(u.state.email.lower() == wanted and u.state.id != except_id
                   for u in self.world.users.values())

    async def password_hash(self, user_id: int) -> str | None:
        return self.world.passwords.get(user_id)

    async def view_parts(self, user: UserState) -> UserViewParts:
        role = self.world.roles.get(user.role_id)
        return UserViewParts(role=role.state if role else None,
                             default_role_id=self.world.default_role,
                             settings={s.state.setting: s.state.value
                                       for s in sorted(self.world.user_settings.values(),
                                                       key=lambda s: s.state.setting)
                                       if s.state.user_id == user.id},
                             org=await self.organisation(user.org_id))

    async def org_admins(self, org_id: int) -> dict[str, str]:
        out = {}
        for loaded in self.world.users.values():
            role = self.world.roles.get(loaded.state.role_id)
            if loaded.state.org_id == org_id and role and role.state.perm_admin:
                out[str(loaded.state.id)] = loaded.state.email
        return out

    async def role(self, role_id: int) -> LoadedRole | None:
        return self.world.roles.get(role_id)

    async def roles(self, *, name_contains: str | None = None, offset: int = 0,
                    limit: int | None = None) -> list[RoleState]:
        wanted = (name_contains or "").lower()
        return _window([self.world.roles[r].state for r in sorted(self.world.roles)
                        if wanted in self.world.roles[r].state.name.lower()], offset, limit)

    async def role_in_use(self, role_id: int) -> bool:
        return any(u.state.role_id == role_id for u in self.world.users.values())

    async def default_role_id(self) -> int | None:
        return self.world.default_role

    async def organisation(self, org_id: int) -> OrganisationState | None:
        if org_id in self.world.deleted_orgs:
            return None
        return self.world.orgs.get(org_id)

    async def organisation_id(self, uuid: str) -> int | None:
        return next((o.id for o in self.world.orgs.values() if o.uuid == uuid), None)

    async def organisation_open_for_users(self, org_id: int) -> OrganisationState | None:
        if org_id in self.world.merging_orgs:
            return None
        return await self.organisation(org_id)

    async def key(self, key_id: int) -> LoadedKey | None:
        return self.world.keys.get(key_id)

    async def keys_of(self, user_id: int) -> list[LoadedKey]:
        return [self.world.keys[k] for k in sorted(self.world.keys)
                if self.world.keys[k].state.user_id == user_id]

    async def keys(self, *, user_id: int | None = None, org_id: int | None = None,
                   offset: int = 0, limit: int | None = None) -> list[KeyRow]:
        rows = []
        for key_id in sorted(self.world.keys):
            key = self.world.keys[key_id].state
            owner = self.world.users.get(key.user_id)
            if owner is None or (user_id is not None and key.user_id != user_id) or (
                    org_id is not None and owner.state.org_id != org_id):
                continue
            rows.append(KeyRow(key=key, owner=owner.state))
        return _window(rows, offset, limit)

    async def user_setting(self, *, setting_id: int | None = None, user_id: int | None = None,
                           name: str | None = None) -> LoadedSetting | None:
        rows = await self.user_settings(setting_id=setting_id, user_id=user_id, name=name)
        return self.world.user_settings[rows[0].setting.id] if rows else None

    async def user_settings(self, *, setting_id: int | None = None, user_id: int | None = None,
                            name: str | None = None, org_id: int | None = None,
                            offset: int = 0, limit: int | None = None) -> list[SettingRow]:
        rows = []
        for key in sorted(self.world.user_settings):
            setting = self.world.user_settings[key].state
            owner = self.world.users.get(setting.user_id)
            if owner is None or any(wanted is not None and wanted != actual for wanted, actual in (
                    (setting_id, setting.id), (user_id, setting.user_id),
                    (name, setting.setting), (org_id, owner.state.org_id))):
                continue
            rows.append(SettingRow(setting=setting, owner=owner.state))
        return _window(rows, offset, limit)

    async def open_registrations(self, *, offset: int = 0,
                                 limit: int | None = None) -> list[RegistrationState]:
        return _window([self.world.registrations[r].state
                        for r in sorted(self.world.registrations)], offset, limit)

    async def open_registration(self, key: int | str) -> LoadedRegistration | None:
        return next((r for r in self.world.registrations.values()
                     if key in (r.state.id, r.state.uuid)), None)

    async def organisations_with_user_counts(
            self, *, local: bool | None) -> list[tuple[OrganisationState, int]]:
        return [(o, sum(1 for u in self.world.users.values() if u.state.org_id == i))
                for i, o in sorted(self.world.orgs.items())
                if i not in self.world.deleted_orgs and local in (None, o.local)]

    async def figures(self, *, month: datetime, year: datetime) -> Figures:
        def counted(created: list[datetime | None]) -> Counted:
            return Counted(len(created), sum(1 for c in created if c and c >= month),
                           sum(1 for c in created if c and c >= year))

        users = [u.state for u in self.world.users.values()]
        orgs = [o for i, o in self.world.orgs.items() if i not in self.world.deleted_orgs]
        return Figures(users=counted([u.date_created for u in users]),
                       users_with_gpgkey=sum(1 for u in users if u.gpgkey),
                       local_orgs=counted([o.date_created for o in orgs if o.local]),
                       external_orgs=counted([o.date_created for o in orgs if not o.local]))

    async def settings(self, names: Sequence[str]) -> dict[str, Any]:
        return {name: self.world.settings.get(name, definition(name).default) for name in names}

    async def stream_version(self, stream_id: str) -> int:
        return self.world.versions.get(stream_id, 0)


class FakeStore(FakeQueries, IdentityStore):
    def __init__(self, world: World) -> None:
        super().__init__(world)
        self.committed = False
        self.read_versions: dict[str, int] = {}  # stream -> the version this work appended to

    def _next(self, sequence: str) -> int:
        self.world.sequences[sequence] += 1
        return self.world.sequences[sequence]

    async def next_user_id(self) -> int:
        return self._next("user")

    async def next_role_id(self) -> int:
        return self._next("role")

    async def next_key_id(self) -> int:
        return self._next("key")

    async def next_registration_id(self) -> int:
        return self._next("registration")

    async def next_setting_id(self) -> int:
        return self._next("setting")

    async def record(self, appends: Sequence[Append]) -> None:
        for append in appends:
            current = self.world.versions.get(append.stream_id, 0)
            if append.expected_version != current:
                raise ConcurrencyError(f"{append.stream_id}: at {current}, "
                                       f"expected {append.expected_version}")
            self.read_versions.setdefault(append.stream_id, current)
            for offset, event in enumerate(append.events, start=1):
                self.world.events.append((append.stream_id, event))
                _project(self.world, append.stream_id, current + offset, event)
            self.world.versions[append.stream_id] = current + len(append.events)

    async def set_password(self, user_id: int, password_hash: str | None) -> None:
        self.world.passwords[user_id] = password_hash

    async def forget_password(self, user_id: int) -> None:
        self.world.passwords.pop(user_id, None)

    async def end_sessions(self, user_id: int, *, reason: str, actor: Actor,
                           stream_id: str | None) -> int:
        return self.world.sessions.pop(user_id, 0)

    async def commit(self) -> None:
        self.committed = True


def _project(world: World, stream_id: str, version: int, event: DomainEvent) -> None:
    """What identity's projections (identity.projections.project) do with each event; the
    unique indexes on a user's e-mail and a role's name included."""
    if isinstance(event, ev.UserCreated | ev.UserUpdated):
        user = event.user
        if any(u.state.email.lower() == user.email.lower() and u.state.id != user.id
               for u in world.users.values()):
            raise InvalidFieldsError({"email": [EMAIL_TAKEN]})
        world.users[user.id] = LoadedUser(stream_id, version, user)
    elif isinstance(event, ev.UserPasswordChanged | ev.UserPasswordReset):
        for user_id, loaded in world.users.items():
            if loaded.stream_id == stream_id:
                world.users[user_id] = LoadedUser(stream_id, version, loaded.state)
    elif isinstance(event, ev.UserDeleted):
        world.users.pop(event.user_id, None)
        for key_id in [k for k, key in world.keys.items() if key.state.user_id == event.user_id]:
            del world.keys[key_id]
        for setting_id in [s for s, setting in world.user_settings.items()
                           if setting.state.user_id == event.user_id]:
            del world.user_settings[setting_id]
    elif isinstance(event, ev.RoleCreated | ev.RoleUpdated):
        role = event.role
        if any(r.state.name.lower() == role.name.lower() and r.state.id != role.id
               for r in world.roles.values()):
            raise InvalidFieldsError({"name": [NAME_TAKEN]})
        world.roles[role.id] = LoadedRole(stream_id, version, role)
    elif isinstance(event, ev.RoleDeleted):
        world.roles.pop(event.role_id, None)
    elif isinstance(event, ev.DefaultRoleChanged):
        world.default_role = event.role_id
    elif isinstance(event, ev.AuthKeyCreated | ev.AuthKeyUpdated):
        world.keys[event.authkey.id] = LoadedKey(stream_id, version, event.authkey)
    elif isinstance(event, ev.AuthKeyDeleted):
        world.keys.pop(event.authkey_id, None)
    elif isinstance(event, ev.UserSettingSet):
        setting = event.user_setting
        if any(s.state.id != setting.id and (s.state.user_id, s.state.setting) ==
               (setting.user_id, setting.setting) for s in world.user_settings.values()):
            raise ConcurrencyError("ux_user_setting_user_setting")  # raced: decide again
        world.user_settings[setting.id] = LoadedSetting(stream_id, version, setting)
    elif isinstance(event, ev.UserSettingDeleted):
        world.user_settings.pop(event.id, None)
    elif isinstance(event, ev.RegistrationSubmitted):
        world.registrations[event.registration.id] = LoadedRegistration(
            stream_id, version, event.registration)
    elif isinstance(event, ev.RegistrationAccepted | ev.RegistrationDiscarded):
        world.registrations.pop(event.registration_id, None)
    else:
        raise NotImplementedError(f"the fake does not project {type(event).__name__}")


class FakeUnitOfWork(UnitOfWork):
    def __init__(self, world: World | None = None) -> None:
        self.world = world if world is not None else World()
        self.commits = 0
        self.attempts = 0

    def reads(self) -> AbstractAsyncContextManager[IdentityQueries]:
        @asynccontextmanager
        async def view() -> AsyncIterator[IdentityQueries]:
            yield FakeQueries(copy.deepcopy(self.world))  # nothing a read does is kept

        return view()

    async def transaction(self, work: Callable[[IdentityStore], Awaitable[T]]) -> T:
        for _attempt in range(2):
            self.attempts += 1
            store = FakeStore(copy.deepcopy(self.world))
            try:
                answer = await work(store)
                self.before_commit(self.attempts)
                if store.committed:
                    for stream_id, version in store.read_versions.items():
                        if self.world.versions.get(stream_id, 0) != version:
                            raise ConcurrencyError(f"{stream_id} moved")
                    self.world = store.world
                    self.commits += 1
            except ConcurrencyError:
                continue
            return answer
        raise Conflict()

    def before_commit(self, attempt: int) -> None:
        """A test's hook: another writer that commits between this work's reads and its
        commit (changing `self.world`)."""

    # ---- building a world ----------------------------------------------------------------------

    def seed(self, *, now: datetime | None = None) -> FakeUnitOfWork:
        """MISP's six roles (the User role, 3, as default) and the host organisation 1."""
        now = now or datetime.now(UTC)
        for role in seeded_roles(now):
            self.world.roles[role.id] = LoadedRole(role_stream(role.id), 1, role)
            self.world.versions[role_stream(role.id)] = 1
        self.world.default_role = 3
        self.world.versions[DEFAULT_ROLE_STREAM] = 1
        self.add_org(1, "ORGNAME")
        return self

    def add_org(self, org_id: int, name: str | None = None, **fields: Any) -> OrganisationState:
        state = OrganisationState(id=org_id, uuid=str(uuid.uuid4()), name=name or f"org-{org_id}",
                                  **fields)
        self.world.orgs[org_id] = state
        return state

    def add_user(self, user_id: int, email: str, *, org_id: int = 1, role_id: int = 3,
                 password_hash: str | None = None, sessions: int = 0,
                 **fields: Any) -> UserState:
        stream_id = str(uuid.uuid4())
        state = UserState(id=user_id, uuid=stream_id, email=email, org_id=org_id,
                          role_id=role_id, **fields)
        self.world.users[user_id] = LoadedUser(stream_id, 1, state)
        self.world.versions[stream_id] = 1
        self.world.passwords[user_id] = password_hash
        if sessions:
            self.world.sessions[user_id] = sessions
        return state

    def add_key(self, key_id: int, user_id: int, **fields: Any) -> AuthKeyState:
        stream_id = str(uuid.uuid4())
        state = AuthKeyState(id=key_id, uuid=stream_id, user_id=user_id,
                             key_hmac=f"{key_id:064x}", authkey_start="abcd",
                             authkey_end="wxyz", **fields)
        self.world.keys[key_id] = LoadedKey(stream_id, 1, state)
        self.world.versions[stream_id] = 1
        return state

    def events_of_type(self, *types: type[DomainEvent]) -> list[DomainEvent]:
        return [e for _, e in self.world.events if isinstance(e, types)]
