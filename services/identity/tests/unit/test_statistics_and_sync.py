"""MISP's users/statistics pages and servers/createSync on the in-memory unit of work: the figures
identity counts, and the sync configuration with its new key."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from identity.domain.errors import NotAllowedError, NotFoundError
from identity.domain.roles import seeded_roles
from identity.handlers import authkeys, statistics
from misp_contracts.events.identity import AuthKeyCreated
from misp_platform.auth import Principal, authkey_hmac

from .fakes import FakeUnitOfWork

PEPPER = "pepper-for-the-unit-tests"
ROLES = {r.id: r for r in seeded_roles(datetime.now(UTC))}
SITE_ADMIN, USER, SYNC_USER = 1, 3, 5
NOW = datetime(2026, 7, 15, 12, tzinfo=UTC)


def caller(user_id: int, role_id: int, org_id: int = 1) -> Principal:
    return Principal(user_id=user_id, email=f"caller-{user_id}@example.test", org_id=org_id,
                     org_name=f"org-{org_id}", role=ROLES[role_id], authkey_id=None,
                     read_only=False, client_ip="203.0.113.9")


@pytest.fixture
def uow() -> FakeUnitOfWork:
    """Host organisation 1 (local, old), 2 (local, this month), 3 (external, this year), 4
    (deleted); users: one old with a GnuPG key, one of this month, one of this year."""
    fake = FakeUnitOfWork().seed()
    fake.world.orgs[1] = fake.world.orgs[1].model_copy(
        update={"date_created": datetime(2020, 1, 1, tzinfo=UTC)})
    fake.add_org(2, date_created=datetime(2026, 7, 2, tzinfo=UTC))
    fake.add_org(3, local=False, date_created=datetime(2026, 3, 1, tzinfo=UTC))
    fake.add_org(4)
    fake.world.deleted_orgs.add(4)
    fake.add_user(1, "admin@admin.test", role_id=SITE_ADMIN, gpgkey="-----BEGIN PGP...",
                  date_created=datetime(2021, 5, 1, tzinfo=UTC))
    fake.add_user(21, "user@two.test", org_id=2, role_id=USER,
                  date_created=datetime(2026, 7, 1, tzinfo=UTC))
    fake.add_user(30, "sync@one.test", role_id=SYNC_USER,
                  date_created=datetime(2026, 2, 1, tzinfo=UTC))
    return fake


async def test_the_data_page_counts_users_and_organisations_as_strings(
        uow: FakeUnitOfWork) -> None:
    out = await statistics.statistics(uow, caller(21, USER, 2), "data", now=NOW)
    assert out == {"stats": {"user_count": "3", "user_count_pgp": "1", "org_count": "3",
                             "local_org_count": "2", "average_user_per_org": "1.5"}}


async def test_a_hidden_organisation_index_counts_the_callers_organisation_only(
        uow: FakeUnitOfWork) -> None:
    uow.world.settings["Security.hide_organisation_index_from_users"] = True
    out = await statistics.statistics(uow, caller(21, USER, 2), "data", now=NOW)
    assert (out["stats"]["org_count"], out["stats"]["local_org_count"]) == ("1", "1")
    admin = await statistics.statistics(uow, caller(1, SITE_ADMIN), "data", now=NOW)
    assert admin["stats"]["org_count"] == "3"


async def test_the_users_page_counts_what_was_created_this_month_and_year(
        uow: FakeUnitOfWork) -> None:
    out = await statistics.statistics(uow, caller(21, USER, 2), "users", now=NOW)
    assert out == {"user": {"data": {"total": 3, "month": 1, "year": 2}},
                   "org_local": {"data": {"total": 2, "month": 1, "year": 1}},
                   "org_external": {"data": {"total": 1, "month": 0, "year": 1}}}


async def test_the_orgs_page_lists_organisations_by_name_with_their_user_counts(
        uow: FakeUnitOfWork) -> None:
    uow.add_org(5, "alpha", logo_sha256="ab" * 32)
    local = await statistics.statistics(uow, caller(21, USER, 2), "orgs", {})
    assert list(local) == ["alpha", "org-2", "ORGNAME"]  # case-insensitively, 4 is deleted
    assert local["ORGNAME"] == {"id": "1", "name": "ORGNAME", "description": "", "local": True,
                                "contacts": "", "type": "", "sector": "", "nationality": "",
                                "userCount": "2"}
    assert "userCount" not in local["alpha"] and local["alpha"]["logo"] is True
    external = await statistics.statistics(uow, caller(21, USER, 2), "orgs",
                                           {"scope": "external"})
    assert list(external) == ["org-3"]
    every = await statistics.statistics(uow, caller(21, USER, 2), "orgs", {"scope": "all"})
    assert len(every) == 4


async def test_a_hidden_organisation_index_closes_the_orgs_page_to_users(
        uow: FakeUnitOfWork) -> None:
    uow.world.settings["Security.hide_organisation_index_from_users"] = True
    with pytest.raises(NotAllowedError) as error:
        await statistics.statistics(uow, caller(21, USER, 2), "orgs", {})
    assert error.value.message == statistics.DISABLED
    assert "ORGNAME" in await statistics.statistics(uow, caller(1, SITE_ADMIN), "orgs", {})


@pytest.mark.parametrize("page", ["tags", "sightings", "galaxyMatrix", "nosuchpage"])
async def test_pages_of_event_data_and_unknown_pages_are_not_found(
        uow: FakeUnitOfWork, page: str) -> None:
    with pytest.raises(NotFoundError) as error:
        await statistics.statistics(uow, caller(21, USER, 2), page, now=NOW)
    assert error.value.message == (statistics.INVALID_PAGE if page == "nosuchpage"
                                   else statistics.not_held(page))


async def test_create_sync_gives_the_sync_user_a_new_key_and_the_host_organisation(
        uow: FakeUnitOfWork) -> None:
    uow.world.settings.update({"MISP.baseurl": "https://misp.example.test",
                               "MISP.uuid": "5f3c7a2e-0000-4000-8000-000000000001"})
    out = await authkeys.create_sync(uow, caller(30, SYNC_USER), pepper=PEPPER,
                                     request_base="http://127.0.0.1:8080/")
    host = uow.world.orgs[1]
    server = out["Server"]
    assert (server["url"], server["uuid"]) == ("https://misp.example.test",
                                               "5f3c7a2e-0000-4000-8000-000000000001")
    assert server["Organisation"] == {"name": host.name, "uuid": host.uuid}
    [event] = uow.events_of_type(AuthKeyCreated)
    assert isinstance(event, AuthKeyCreated)
    assert event.authkey.user_id == 30
    assert event.authkey.key_hmac == authkey_hmac(PEPPER, server["authkey"])
    assert event.authkey.comment.startswith("Auto generated sync key - ")


async def test_create_sync_prefers_the_external_baseurl_then_the_requests_address(
        uow: FakeUnitOfWork) -> None:
    sync = caller(30, SYNC_USER)
    plain = await authkeys.create_sync(uow, sync, pepper=PEPPER, request_base="http://gw/")
    assert plain["Server"]["url"] == "http://gw/"
    uow.world.settings.update({"MISP.baseurl": "https://in.test",
                               "MISP.external_baseurl": "https://out.test"})
    external = await authkeys.create_sync(uow, sync, pepper=PEPPER, request_base="http://gw/")
    assert external["Server"]["url"] == "https://out.test"


async def test_create_sync_is_refused_to_site_admins_and_without_a_host_organisation(
        uow: FakeUnitOfWork) -> None:
    with pytest.raises(NotAllowedError) as error:
        await authkeys.create_sync(uow, caller(1, SITE_ADMIN), pepper=PEPPER, request_base="")
    assert error.value.message == authkeys.SITE_ADMIN_SYNC
    uow.world.settings["MISP.host_org_id"] = 99
    with pytest.raises(NotAllowedError) as error:
        await authkeys.create_sync(uow, caller(30, SYNC_USER), pepper=PEPPER, request_base="")
    assert error.value.message == authkeys.HOST_ORG_NOT_FOUND
    uow.world.settings["MISP.host_org_id"] = 0
    with pytest.raises(NotAllowedError) as error:
        await authkeys.create_sync(uow, caller(30, SYNC_USER), pepper=PEPPER, request_base="")
    assert error.value.message == authkeys.NO_HOST_ORG
    assert uow.commits == 0
