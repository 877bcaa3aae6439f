"""PyMISP's users_statistics, update_misp and get_sync_config through the gateway (issue 17,
item 2): MISP's shapes from this product's own data, and MISP's refusals."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest
from pymisp import MISPOrganisation, MISPUser, PyMISP, PyMISPError

from misp_platform.misp.errors import NO_PERMISSION

from .support import GATEWAY, admin_key, until

SYNC_ROLE, USER_ROLE = 5, 3
STATS = ["user_count", "user_count_pgp", "org_count", "local_org_count", "average_user_per_org"]


@pytest.fixture(scope="module")
def misp() -> PyMISP:
    return PyMISP(GATEWAY, admin_key(), ssl=False, timeout=30)


@pytest.fixture
def undo() -> Iterator[ExitStack]:
    """The deletions a test registers as it makes things, run at its end whatever happens (the
    last registered first)."""
    with ExitStack() as stack:
        yield stack


def _deleted(answer: dict) -> None:
    assert answer.get("success") is True, answer


def _user(misp: PyMISP, undo: ExitStack, role_id: int,
          org_id: int = 1) -> tuple[MISPUser, PyMISP]:
    """A new user with `role_id`, and a PyMISP of theirs; deleted at the end of the test."""
    user = MISPUser()
    user.email = f"stats-sync-{secrets.token_hex(4)}@example.test"
    user.org_id = org_id
    user.role_id = role_id
    created = misp.add_user(user, pythonify=True)
    assert isinstance(created, MISPUser), created
    undo.callback(lambda: _deleted(misp.delete_user(created)))
    connector = until(lambda: _connect(created.authkey), f"{user.email}'s key to work")
    return created, connector


def _connect(key: str) -> PyMISP | None:
    try:
        return PyMISP(GATEWAY, key, ssl=False, timeout=30)
    except PyMISPError:  # the key is not known everywhere yet (PyMISP wraps every failure)
        return None


def _get(path: str, key: str | None) -> httpx.Response:
    headers = {"Accept": "application/json", **({"Authorization": key} if key else {})}
    return httpx.get(f"{GATEWAY}{path}", headers=headers, timeout=30)


def test_users_statistics_count_this_products_users_and_organisations(misp: PyMISP,
                                                                       undo: ExitStack) -> None:
    before = misp.users_statistics(context="data")
    assert list(before["stats"]) == STATS  # no event, attribute or thread figure: none is held
    assert all(isinstance(v, str) for v in before["stats"].values())  # strings, as MISP's
    org = MISPOrganisation()
    org.name = f"stats-org-{secrets.token_hex(4)}"
    added = misp.add_organisation(org, pythonify=True)
    assert isinstance(added, MISPOrganisation), added
    undo.callback(lambda: _deleted(misp.delete_organisation(added)))  # after its user
    user, as_user = _user(misp, undo, USER_ROLE, int(added.id))

    def grown() -> dict[str, str] | None:
        stats = misp.users_statistics(context="data")["stats"]
        return stats if (int(stats["user_count"]) > int(before["stats"]["user_count"])
                         and int(stats["local_org_count"])
                         > int(before["stats"]["local_org_count"])) else None

    after = until(grown, "the new user and organisation to be counted")
    assert int(after["org_count"]) >= int(after["local_org_count"])
    users = as_user.users_statistics(context="users")  # every user may call it
    assert list(users) == ["user", "org_local", "org_external"]
    for scope in users.values():
        assert set(scope["data"]) == {"total", "month", "year"}
        assert scope["data"]["total"] >= scope["data"]["year"] >= scope["data"]["month"]
    assert users["user"]["data"]["month"] >= 1  # the user made above
    orgs = misp.users_statistics(context="orgs")
    assert "ORGNAME" in orgs  # PyMISP's own test
    assert orgs[added.name]["userCount"] == "1" and orgs[added.name]["local"] is True
    assert "eventCount" not in orgs[added.name]
    external = _get("/users/statistics/orgs/scope:external", user.authkey).json()
    assert added.name not in external and all(not o["local"] for o in external.values())
    bare = _get("/users/statistics", user.authkey)
    assert bare.status_code == 200 and list(bare.json()["stats"]) == STATS


def test_users_statistics_pages_of_event_data_are_not_answered_with_made_up_figures(
        misp: PyMISP) -> None:
    tags = misp.users_statistics(context="tags")
    assert tags["errors"][0] == 404
    assert "events" in tags["errors"][1]["message"]
    unknown = _get("/users/statistics/nosuchpage", admin_key())
    assert unknown.status_code == 404 and unknown.json()["message"] == "Invalid page"
    anonymous = _get("/users/statistics/data", None)
    assert anonymous.status_code == 403


def test_update_misp_answers_as_an_up_to_date_misp_for_site_admins_only(
        misp: PyMISP, undo: ExitStack) -> None:
    answer = misp.update_misp()
    assert isinstance(answer, dict) and "errors" not in answer, answer
    [result] = answer["results"]
    assert set(result) == {"input", "output", "status"} and result["status"] == 0
    assert result["output"][0].startswith("Already up to date.")
    _, as_user = _user(misp, undo, USER_ROLE)
    refused = as_user.update_misp()
    assert refused["errors"][0] == 403
    assert refused["errors"][1]["message"] == NO_PERMISSION


def test_get_sync_config_gives_a_sync_user_a_new_working_key(misp: PyMISP,
                                                             undo: ExitStack) -> None:
    sync_user, as_sync = _user(misp, undo, SYNC_ROLE)
    config = as_sync.get_sync_config()
    assert isinstance(config, dict) and "errors" not in config, config
    server = config["Server"]
    assert set(server) == {"url", "uuid", "authkey", "Organisation"}
    host = misp.get_organisation(1, pythonify=True)
    assert server["Organisation"] == {"name": host.name, "uuid": host.uuid}
    settings = {n: misp.get_server_setting(n)["value"]
                for n in ("MISP.external_baseurl", "MISP.baseurl", "MISP.uuid")}
    assert server["uuid"] == settings["MISP.uuid"]
    expected = settings["MISP.external_baseurl"] or settings["MISP.baseurl"]
    assert server["url"] == expected if expected else server["url"].startswith("http")
    key = server["authkey"]
    assert len(key) == 40 and key != sync_user.authkey
    me = until(lambda: (r := _get("/users/view/me", key)).status_code == 200 and r.json(),
               "the sync key to work")
    assert me["User"]["email"] == sync_user.email
    keys = as_sync.direct_call(f"auth_keys/index/{sync_user.id}")
    assert any(k["AuthKey"]["comment"].startswith("Auto generated sync key - ")
               and k["AuthKey"]["authkey_end"] == key[-4:] for k in keys)


def test_get_sync_config_refuses_site_admins_and_users_without_perm_sync(
        misp: PyMISP, undo: ExitStack) -> None:
    refused = misp.get_sync_config()
    assert refused["errors"][0] == 405
    assert refused["errors"][1]["message"] == ("Site admin accounts cannot be used to create "
                                              "server sync configurations.")
    _, as_user = _user(misp, undo, USER_ROLE)
    plain = as_user.get_sync_config()
    assert plain["errors"][0] == 403
    assert plain["errors"][1]["message"] == NO_PERMISSION
