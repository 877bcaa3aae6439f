"""Identity's user, role and authkey handlers on the in-memory unit of work (tests/unit/fakes.py):
their rules and the events they record, without a database."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from identity.domain.errors import (
    BadRequestError,
    ForbiddenError,
    InvalidFieldsError,
    NotAllowedError,
    NotFoundError,
    UnknownOrganisationError,
)
from identity.domain.roles import ROLE_IN_USE, seeded_roles
from identity.handlers import (
    authkeys,
    first_run,
    jobs,
    login,
    merge,
    password_reset,
    registrations,
    roles,
    user_settings,
    users,
    views,
)
from identity.handlers.roles import DEFAULT_ROLE_STREAM
from misp_contracts.events.identity import (
    AuthKeyDeleted,
    AuthKeyUpdated,
    DefaultRoleChanged,
    RoleDeleted,
    RoleState,
    RoleUpdated,
    UserSettingSet,
    UserUpdated,
)
from misp_platform.auth import Principal, authkey_hmac
from misp_platform.misp.errors import Conflict

from .fakes import FakeUnitOfWork

PEPPER = "pepper-for-the-unit-tests"
ROLES = {r.id: r for r in seeded_roles(datetime.now(UTC))}
SITE_ADMIN, ORG_ADMIN, USER, PUBLISHER, SYNC_USER = 1, 2, 3, 4, 5


def caller(user_id: int, role_id: int, org_id: int = 1, role: RoleState | None = None
           ) -> Principal:
    return Principal(user_id=user_id, email=f"caller-{user_id}@example.test", org_id=org_id,
                     org_name=f"org-{org_id}", role=role or ROLES[role_id], authkey_id=None,
                     read_only=False, client_ip="203.0.113.9")


@pytest.fixture
def uow() -> FakeUnitOfWork:
    """The seeded roles, the host organisation 1 and organisation 2; the site admin (1), an
    org admin of organisation 2 (20) and a user of organisation 2 (21)."""
    fake = FakeUnitOfWork().seed()
    fake.add_org(2, "Other org")
    fake.add_user(1, "admin@admin.test", role_id=SITE_ADMIN)
    fake.add_user(20, "orgadmin@two.test", org_id=2, role_id=ORG_ADMIN)
    fake.add_user(21, "user@two.test", org_id=2, role_id=USER, sessions=2)
    return fake


ADMIN = caller(1, SITE_ADMIN)
ORG2_ADMIN = caller(20, ORG_ADMIN, org_id=2)
ORG2_USER = caller(21, USER, org_id=2)


def nothing_changed(uow: FakeUnitOfWork, before: Any) -> bool:
    return uow.commits == 0 and uow.world == before


# ---- users: add --------------------------------------------------------------------------------


async def test_adding_a_user_records_the_user_and_a_working_key(uow: FakeUnitOfWork) -> None:
    out = await users.add_user(uow, ADMIN, {"email": "New@Example.test", "org_id": 2},
                               pepper=PEPPER)

    user = uow.world.users[int(out["id"])].state
    assert (user.email, user.org_id, user.role_id) == ("New@Example.test", 2, USER)  # default
    assert user.invited_by == 1 and user.change_pw
    [key] = uow.world.keys.values()
    assert key.state.user_id == user.id
    assert key.state.key_hmac == authkey_hmac(PEPPER, out["authkey"])  # the raw key works
    assert [type(e).__name__ for _, e in uow.world.events] == ["UserCreated", "AuthKeyCreated"]
    assert user.id in uow.world.passwords and uow.world.passwords[user.id] is None
    assert out["password"] == "******"


async def test_adding_a_user_to_an_unknown_organisation_is_refused(uow: FakeUnitOfWork) -> None:
    before = uow.world
    with pytest.raises(UnknownOrganisationError) as error:
        await users.add_user(uow, ADMIN, {"email": "x@example.test", "org_id": 99},
                             pepper=PEPPER)
    assert error.value.custom_message == "Could not add User"
    assert nothing_changed(uow, before)


async def test_an_organisation_being_merged_takes_no_new_user(uow: FakeUnitOfWork) -> None:
    uow.world.merging_orgs.add(2)
    with pytest.raises(UnknownOrganisationError):
        await users.add_user(uow, ADMIN, {"email": "x@example.test", "org_id": 2},
                             pepper=PEPPER)
    assert uow.commits == 0


async def test_an_email_taken_in_any_case_is_refused(uow: FakeUnitOfWork) -> None:
    before = uow.world
    with pytest.raises(InvalidFieldsError) as error:
        await users.add_user(uow, ADMIN, {"email": "USER@two.TEST", "org_id": 2}, pepper=PEPPER)
    assert "email" in error.value.errors
    assert nothing_changed(uow, before)


async def test_an_org_admin_adds_users_to_their_own_org_only(uow: FakeUnitOfWork) -> None:
    out = await users.add_user(uow, ORG2_ADMIN, {"email": "mine@two.test", "org_id": 1},
                               pepper=PEPPER)
    assert uow.world.users[int(out["id"])].state.org_id == 2


@pytest.mark.parametrize("role_id", [SITE_ADMIN, SYNC_USER])
async def test_an_org_admin_cannot_hand_out_admin_or_sync_roles(uow: FakeUnitOfWork,
                                                                 role_id: int) -> None:
    with pytest.raises(ForbiddenError):
        await users.add_user(uow, ORG2_ADMIN, {"email": "boss@two.test", "role_id": role_id},
                             pepper=PEPPER)
    assert uow.commits == 0


async def test_disabled_user_add_stops_org_admins_but_not_the_site_admin(
        uow: FakeUnitOfWork) -> None:
    uow.world.settings["MISP.disable_user_add"] = True
    with pytest.raises(ForbiddenError):
        await users.add_user(uow, ORG2_ADMIN, {"email": "a@two.test"}, pepper=PEPPER)
    await users.add_user(uow, ADMIN, {"email": "b@two.test", "org_id": 2}, pepper=PEPPER)
    assert uow.commits == 1


async def test_site_admins_may_be_limited_to_the_host_org(uow: FakeUnitOfWork) -> None:
    uow.world.settings["Security.limit_site_admins_to_host_org"] = True
    with pytest.raises(InvalidFieldsError) as error:
        await users.add_user(uow, ADMIN, {"email": "sa@two.test", "org_id": 2,
                                          "role_id": SITE_ADMIN}, pepper=PEPPER)
    assert "role_id" in error.value.errors
    await users.add_user(uow, ADMIN, {"email": "sa@one.test", "org_id": 1,
                                      "role_id": SITE_ADMIN}, pepper=PEPPER)


# ---- users: edit -------------------------------------------------------------------------------


async def test_editing_a_user_records_the_change(uow: FakeUnitOfWork) -> None:
    new = await users.edit_user(uow, ORG2_ADMIN, 21, {"email": "renamed@two.test"},
                                self_service=False)

    assert new.email == "renamed@two.test"
    loaded = uow.world.users[21]
    assert loaded.state.email == "renamed@two.test" and loaded.version == 2
    [event] = uow.events_of_type(UserUpdated)
    assert isinstance(event, UserUpdated)
    assert event.changes["email"] == ("user@two.test", "renamed@two.test")


async def test_an_edit_that_changes_nothing_records_nothing(uow: FakeUnitOfWork) -> None:
    before = uow.world
    current = await users.edit_user(uow, ADMIN, 21, {"email": "user@two.test"},
                                    self_service=False)
    assert current.email == "user@two.test"
    assert nothing_changed(uow, before)


async def test_disabling_a_user_ends_their_sessions(uow: FakeUnitOfWork) -> None:
    await users.edit_user(uow, ADMIN, 21, {"disabled": True}, self_service=False)
    assert uow.world.users[21].state.disabled
    assert 21 not in uow.world.sessions


async def test_an_org_admin_cannot_edit_users_of_another_org(uow: FakeUnitOfWork) -> None:
    uow.add_user(30, "elsewhere@one.test", org_id=1)
    with pytest.raises(NotFoundError):
        await users.edit_user(uow, ORG2_ADMIN, 30, {"disabled": True}, self_service=False)
    assert not uow.world.users[30].state.disabled


async def test_an_edit_to_a_taken_email_is_refused(uow: FakeUnitOfWork) -> None:
    with pytest.raises(InvalidFieldsError):
        await users.edit_user(uow, ADMIN, 21, {"email": "OrgAdmin@two.test"},
                              self_service=False)
    assert uow.world.users[21].state.email == "user@two.test"


async def test_a_user_cannot_change_their_own_role(uow: FakeUnitOfWork) -> None:
    with pytest.raises(ForbiddenError):
        await users.edit_user(uow, ORG2_ADMIN, 20, {"role_id": USER}, self_service=False)
    # Self-service ignores fields outside its list (the role among them).
    new = await users.edit_user(uow, ORG2_USER, 21, {"role_id": SITE_ADMIN, "autoalert": True},
                                self_service=True)
    assert (new.role_id, new.autoalert) == (USER, True)


async def test_an_edit_that_lost_a_race_decides_again_on_the_new_state(
        uow: FakeUnitOfWork) -> None:
    def another_writer(attempt: int) -> None:
        if attempt == 1:  # someone else's edit commits first
            loaded = uow.world.users[21]
            uow.world.users[21] = type(loaded)(loaded.stream_id, 2, loaded.state.model_copy(
                update={"contactalert": True}))
            uow.world.versions[loaded.stream_id] = 2

    uow.before_commit = another_writer  # type: ignore[method-assign]
    new = await users.edit_user(uow, ADMIN, 21, {"autoalert": True}, self_service=False)

    assert uow.attempts == 2
    assert new.autoalert and new.contactalert  # the other writer's change is kept
    assert uow.world.users[21].version == 3


async def test_a_race_lost_twice_is_a_conflict(uow: FakeUnitOfWork) -> None:
    def writer_each_time(attempt: int) -> None:
        stream_id = uow.world.users[21].stream_id
        uow.world.versions[stream_id] += 1

    uow.before_commit = writer_each_time  # type: ignore[method-assign]
    with pytest.raises(Conflict):
        await users.edit_user(uow, ADMIN, 21, {"autoalert": True}, self_service=False)
    assert uow.commits == 0 and not uow.world.users[21].state.autoalert


# ---- users: delete -----------------------------------------------------------------------------


async def test_deleting_a_user_deletes_their_keys_password_and_sessions(
        uow: FakeUnitOfWork) -> None:
    uow.add_key(7, 21)
    uow.world.passwords[21] = "hash"

    await users.delete_user(uow, ORG2_ADMIN, 21)

    assert 21 not in uow.world.users and 7 not in uow.world.keys
    assert 21 not in uow.world.passwords and 21 not in uow.world.sessions
    assert [type(e).__name__ for _, e in uow.world.events] == ["AuthKeyDeleted", "UserDeleted"]


async def test_an_org_admin_cannot_delete_a_site_admin_of_their_org(
        uow: FakeUnitOfWork) -> None:
    uow.add_user(22, "root@two.test", org_id=2, role_id=SITE_ADMIN)
    with pytest.raises(NotFoundError):
        await users.delete_user(uow, ORG2_ADMIN, 22)
    assert 22 in uow.world.users and uow.commits == 0


async def test_the_index_of_an_org_admin_is_their_org(uow: FakeUnitOfWork) -> None:
    listed = await users.index(uow, ORG2_ADMIN, {})
    assert sorted(r["User"]["email"] for r in listed) == ["orgadmin@two.test", "user@two.test"]
    everyone = await users.index(uow, ADMIN, {"searchemail": "two.test"})
    assert len(everyone) == 2


# ---- roles -------------------------------------------------------------------------------------


async def test_adding_a_role_records_it(uow: FakeUnitOfWork) -> None:
    out = await roles.add(uow, ADMIN.actor(), {"name": "Analyst", "perm_tagger": True})

    role_id = int(out["Role"]["id"])
    assert uow.world.roles[role_id].state.name == "Analyst"
    assert uow.world.roles[role_id].state.perm_tagger
    assert [type(e).__name__ for _, e in uow.world.events] == ["RoleCreated"]


async def test_a_role_name_is_unique_in_any_case(uow: FakeUnitOfWork) -> None:
    with pytest.raises(InvalidFieldsError):
        await roles.add(uow, ADMIN.actor(), {"name": "publisher"})
    assert uow.commits == 0


async def test_a_new_default_role_takes_the_flag_from_the_previous_one(
        uow: FakeUnitOfWork) -> None:
    out = await roles.add(uow, ADMIN.actor(), {"name": "Newcomer", "default_role": True})

    assert uow.world.roles[int(out["Role"]["id"])].state.default_role
    assert not uow.world.roles[USER].state.default_role
    [cleared] = uow.events_of_type(RoleUpdated)
    assert isinstance(cleared, RoleUpdated) and cleared.role.id == USER


async def test_editing_a_role_records_only_real_changes(uow: FakeUnitOfWork) -> None:
    await roles.edit(uow, ADMIN.actor(), PUBLISHER, {"name": "Publisher"})
    assert uow.commits == 0
    await roles.edit(uow, ADMIN.actor(), PUBLISHER, {"name": "Publishers"})
    assert uow.world.roles[PUBLISHER].state.name == "Publishers"
    [event] = uow.events_of_type(RoleUpdated)
    assert isinstance(event, RoleUpdated) and event.changes["name"] == ("Publisher", "Publishers")
    with pytest.raises(NotFoundError):
        await roles.edit(uow, ADMIN.actor(), 99, {"name": "Ghost"})


async def test_a_role_in_use_cannot_be_deleted(uow: FakeUnitOfWork) -> None:
    with pytest.raises(InvalidFieldsError) as error:
        await roles.delete(uow, ADMIN.actor(), USER)
    assert error.value.errors == ROLE_IN_USE
    assert USER in uow.world.roles and uow.commits == 0


async def test_deleting_the_default_role_unsets_the_default(uow: FakeUnitOfWork) -> None:
    uow.world.default_role = PUBLISHER
    await roles.delete(uow, ADMIN.actor(), PUBLISHER)

    assert PUBLISHER not in uow.world.roles and uow.world.default_role is None
    deleted, changed = (e for _, e in uow.world.events)
    assert isinstance(deleted, RoleDeleted) and deleted.role_id == PUBLISHER
    assert isinstance(changed, DefaultRoleChanged) and changed.previous_role_id == PUBLISHER
    assert uow.world.versions[DEFAULT_ROLE_STREAM] == 2


async def test_setting_the_default_role(uow: FakeUnitOfWork) -> None:
    with pytest.raises(InvalidFieldsError):
        await roles.set_default(uow, ADMIN.actor(), 99)
    await roles.set_default(uow, ADMIN.actor(), PUBLISHER)
    assert uow.world.default_role == PUBLISHER
    await roles.set_default(uow, ADMIN.actor(), None)
    assert uow.world.default_role is None
    assert uow.world.versions[DEFAULT_ROLE_STREAM] == 3


# ---- authkeys ----------------------------------------------------------------------------------


async def test_a_user_adds_a_key_for_themself(uow: FakeUnitOfWork) -> None:
    out = await authkeys.add_key(uow, ORG2_USER, 21, {"comment": "ci"}, pepper=PEPPER)

    key = uow.world.keys[out["id"]].state
    assert key.user_id == 21 and key.comment == "ci"
    assert key.key_hmac == authkey_hmac(PEPPER, out["authkey_raw"])
    assert "key_hmac" not in out


async def test_keys_of_others_are_out_of_reach(uow: FakeUnitOfWork) -> None:
    with pytest.raises(NotFoundError):  # a user, for another user
        await authkeys.add_key(uow, ORG2_USER, 20, {}, pepper=PEPPER)
    with pytest.raises(NotFoundError):  # an org admin, for another org's user
        await authkeys.add_key(uow, ORG2_ADMIN, 1, {}, pepper=PEPPER)
    await authkeys.add_key(uow, ORG2_ADMIN, 21, {}, pepper=PEPPER)  # their org's plain user
    assert uow.commits == 1


async def test_a_key_cannot_outlive_the_longest_validity(uow: FakeUnitOfWork) -> None:
    uow.world.settings["Security.advanced_authkeys_validity"] = 30
    far = int((datetime.now(UTC) + timedelta(days=60)).timestamp())
    with pytest.raises(InvalidFieldsError) as error:
        await authkeys.add_key(uow, ORG2_USER, 21, {"expiration": far}, pepper=PEPPER)
    assert "expiration" in error.value.errors
    out = await authkeys.add_key(uow, ORG2_USER, 21, {}, pepper=PEPPER)
    assert 0 < out["expiration"] <= int((datetime.now(UTC) + timedelta(days=30)).timestamp())


async def test_expiring_a_key_records_the_change(uow: FakeUnitOfWork) -> None:
    uow.add_key(7, 21)
    soon = int((datetime.now(UTC) + timedelta(days=1)).timestamp())

    out = await authkeys.edit_key(uow, ORG2_USER, 7, {"expiration": soon, "user_id": 1})

    assert out["AuthKey"]["expiration"] == soon
    assert uow.world.keys[7].state.expiration == soon and uow.world.keys[7].state.user_id == 21
    [event] = uow.events_of_type(AuthKeyUpdated)
    assert isinstance(event, AuthKeyUpdated) and event.changes == {"expiration": (0, soon)}


async def test_deleting_a_key(uow: FakeUnitOfWork) -> None:
    uow.add_key(7, 21)
    uow.add_key(8, 1)
    with pytest.raises(NotFoundError):
        await authkeys.delete_key(uow, ORG2_USER, 8)
    await authkeys.delete_key(uow, ORG2_USER, 7)
    assert list(uow.world.keys) == [8]
    [event] = uow.events_of_type(AuthKeyDeleted)
    assert isinstance(event, AuthKeyDeleted) and event.authkey_id == 7


async def test_resetting_replaces_every_key_of_the_user(uow: FakeUnitOfWork) -> None:
    uow.add_key(7, 21)
    uow.add_key(8, 21)
    raw = await authkeys.reset_key(uow, ADMIN, 21, pepper=PEPPER)
    [key] = uow.world.keys.values()
    assert key.state.user_id == 21 and key.state.key_hmac == authkey_hmac(PEPPER, raw)


async def test_a_users_key_index_shows_their_own_keys(uow: FakeUnitOfWork) -> None:
    uow.add_key(7, 21)
    uow.add_key(8, 20)
    uow.add_key(9, 1)
    assert [r["AuthKey"]["id"] for r in await authkeys.index_keys(uow, ORG2_USER, None)] == [7]
    assert await authkeys.index_keys(uow, ORG2_USER, 20) == []
    # An org admin: their own keys and their org's plain users'.
    assert [r["AuthKey"]["id"] for r in await authkeys.index_keys(uow, ORG2_ADMIN, None)] == \
        [7, 8]


# ---- registrations -----------------------------------------------------------------------------


async def register(uow: FakeUnitOfWork, email: str = "visitor@example.test") -> int:
    return await registrations.register(uow, {"email": email}, ip="198.51.100.1",
                                        user_agent="ua", request_id=None)


async def test_registering_needs_self_registration_allowed(uow: FakeUnitOfWork) -> None:
    with pytest.raises(NotAllowedError):
        await register(uow)
    uow.world.settings["Security.allow_self_registration"] = True
    registration_id = await register(uow)
    [row] = await registrations.index(uow)
    assert row["Inbox"]["id"] == str(registration_id)
    assert row["Inbox"]["data"]["email"] == "visitor@example.test"


async def test_accepting_a_registration_creates_the_user_and_closes_it(
        uow: FakeUnitOfWork) -> None:
    uow.world.settings["Security.allow_self_registration"] = True
    registration_id = await register(uow)
    org_uuid = uow.world.orgs[2].uuid

    number, user_id = await registrations.accept(uow, ADMIN, registration_id,
                                                 {"org_id": org_uuid})

    user = uow.world.users[user_id].state
    assert (number, user.email, user.org_id, user.role_id) == \
        (registration_id, "visitor@example.test", 2, USER)
    assert user.change_pw and uow.world.passwords[user_id] is None
    assert await registrations.index(uow) == []
    with pytest.raises(NotFoundError):  # accepted once only
        await registrations.accept(uow, ADMIN, registration_id, {"org_id": 2})


async def test_a_registration_without_organisation_or_with_a_taken_email_stays_open(
        uow: FakeUnitOfWork) -> None:
    uow.world.settings["Security.allow_self_registration"] = True
    registration_id = await register(uow, "user@two.test")
    with pytest.raises(BadRequestError):
        await registrations.accept(uow, ADMIN, registration_id, {})
    with pytest.raises(InvalidFieldsError):
        await registrations.accept(uow, ADMIN, registration_id, {"org_id": 2})
    assert len(await registrations.index(uow)) == 1
    await registrations.discard(uow, ADMIN, registration_id)
    assert await registrations.index(uow) == []


# ---- user settings -----------------------------------------------------------------------------


async def test_a_user_sets_and_changes_their_own_setting(uow: FakeUnitOfWork) -> None:
    first = await user_settings.set_setting(uow, ORG2_USER, {"setting": "homepage",
                                                             "value": {"path": "/a"}})
    again = await user_settings.set_setting(uow, ORG2_USER, {"setting": "homepage",
                                                             "value": {"path": "/b"}})

    assert first["UserSetting"]["id"] == again["UserSetting"]["id"]  # one row per name
    got = await user_settings.get_setting(uow, ORG2_USER, {"setting": "homepage"})
    assert got["value"] == {"path": "/b"} and got["user_id"] == "21"
    set_events = uow.events_of_type(UserSettingSet)
    assert [e.changes for e in set_events if isinstance(e, UserSettingSet)][1] == \
        {"value": ({"path": "/a"}, {"path": "/b"})}
    view = await users.view_self_or_any(uow, ORG2_USER, 21)
    assert view["UserSetting"] == {"homepage": {"path": "/b"}}


async def test_a_setting_for_someone_out_of_reach_is_the_callers_own(
        uow: FakeUnitOfWork) -> None:
    """As MISP: a user_id the caller may not act for falls back to the caller."""
    await user_settings.set_setting(uow, ORG2_ADMIN, {"setting": "dashboard", "value": "x",
                                                      "user_id": 21})
    await user_settings.set_setting(uow, ORG2_ADMIN, {"setting": "homepage", "value": "y",
                                                      "user_id": 1})
    owners = {s.state.setting: s.state.user_id for s in uow.world.user_settings.values()}
    assert owners == {"dashboard": 21, "homepage": 20}


async def test_restricted_settings_and_unknown_names_are_refused(uow: FakeUnitOfWork) -> None:
    with pytest.raises(NotAllowedError):
        await user_settings.set_setting(uow, ORG2_USER, {"setting": "dashboard_access",
                                                         "value": True})
    with pytest.raises(NotAllowedError):
        await user_settings.set_setting(uow, ORG2_USER, {"setting": "nope", "value": 1})
    await user_settings.set_setting(uow, ADMIN, {"setting": "dashboard_access", "value": True})
    assert uow.commits == 1


async def test_deleting_a_setting_and_the_index_scope(uow: FakeUnitOfWork) -> None:
    mine = await user_settings.set_setting(uow, ORG2_USER, {"setting": "homepage",
                                                            "value": "/me"})
    await user_settings.set_setting(uow, ADMIN, {"setting": "homepage", "value": "/root"})
    assert [r["User"]["id"] for r in await user_settings.index(uow, ORG2_USER, {})] == ["21"]
    assert len(await user_settings.index(uow, ADMIN, {})) == 2

    setting_id = int(mine["UserSetting"]["id"])
    with pytest.raises(NotFoundError):  # not theirs to delete
        await user_settings.delete_setting(uow, ORG2_ADMIN, int(
            (await user_settings.index(uow, ADMIN, {"user_id": "1"}))[0]["UserSetting"]["id"]),
            {})
    assert await user_settings.delete_setting(uow, ORG2_USER, setting_id, {}) == setting_id
    assert await user_settings.index(uow, ORG2_USER, {}) == []


# ---- the skeleton ------------------------------------------------------------------------------


@pytest.mark.parametrize("module", [users, roles, authkeys, views, registrations,
                                    user_settings])
def test_these_handlers_hold_no_sql(module: ModuleType) -> None:
    """Their storage is the unit of work: no SQLAlchemy, no tables, no queries of their own."""
    tree = ast.parse(Path(str(module.__file__)).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
    assert not {m for m in imported if m and (
        m.startswith("sqlalchemy") or m in ("identity.adapters.tables",
                                            "identity.adapters.queries"))}


@pytest.mark.parametrize("module", [login, jobs, first_run, merge, password_reset])
def test_the_handlers_on_a_connection_leave_their_sql_to_the_adapters(module: ModuleType) -> None:
    """They still run on a connection of their own, but every statement is a function of
    adapters/store.py or adapters/queries.py: SQLAlchemy only for the connection's type."""
    tree = ast.parse(Path(str(module.__file__)).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
    assert not {m for m in imported if m and (
        (m.startswith("sqlalchemy") and m != "sqlalchemy.ext.asyncio")
        or m in ("identity.adapters.tables", "misp_platform.db"))}
