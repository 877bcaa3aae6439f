"""MISP's queryACL through the gateway with PyMISP: every routed function has an ACL entry, and
the listing names them (issue 17, item 1)."""

from __future__ import annotations

import httpx
import pytest
from pymisp import PyMISP

from .support import GATEWAY, admin_key


@pytest.fixture(scope="module")
def misp() -> PyMISP:
    return PyMISP(GATEWAY, admin_key(), ssl=False, timeout=30)


def test_remote_acl_finds_no_routed_function_without_an_acl_entry(misp: PyMISP) -> None:
    assert misp.remote_acl() == []
    assert misp.remote_acl("findMissingFunctionNames") == []


def test_all_function_names_list_the_routed_functions_of_every_service(misp: PyMISP) -> None:
    functions = misp.remote_acl("printAllFunctionNames")
    assert isinstance(functions, dict)
    for controller, action in (("users", "admin_index"), ("organisations", "view"),
                               ("logs", "admin_index"), ("jobs", "index"),
                               ("servers", "serverSettings"), ("events", "queryACL")):
        assert action in functions[controller], (controller, action)
    servers = httpx.get(f"{GATEWAY}/servers/queryACL/printAllFunctionNames",
                        headers={"Authorization": admin_key(), "Accept": "application/json"})
    assert servers.json() == functions
    # PyMISP returns the last path only (its own quirk); it is one of the listed functions.
    last = misp.get_all_functions()
    assert len(last) == 1
    controller, action = last[0].removeprefix("admin/").split("/")
    assert (("admin_" if last[0].startswith("admin/") else "") + action) in functions[controller]


def test_role_access_names_what_each_role_may_call(misp: PyMISP) -> None:
    access = misp.remote_acl("printRoleAccess")
    assert "/servers/queryACL" in access["1"]["urls"]
    assert "/users/view" in access["3"]["urls"]
    assert "/users/admin_index" not in access["3"]["urls"]
    assert "/events/queryACL" not in access["3"]["urls"]


def test_only_site_admins_may_query_the_acl(misp: PyMISP) -> None:
    anonymous = httpx.get(f"{GATEWAY}/events/queryACL/findMissingFunctionNames",
                     headers={"Accept": "application/json"})
    assert anonymous.status_code == 403
    bad = httpx.get(f"{GATEWAY}/events/queryACL/nosuchCommand",
                    headers={"Authorization": admin_key(), "Accept": "application/json"})
    assert bad.status_code == 405
    assert bad.json()["message"] == "Invalid function call."
