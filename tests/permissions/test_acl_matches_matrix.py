"""The settings service's ACL_LIST (what queryACL reports) held against the permission matrix
(what the services enforce): for every MISP function both cover, the entry passes exactly the
callers the matrix allows. Pure: no service is started."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from settings.domain.acl import ACL_LIST, allows, function_of

from .conftest import ANONYMOUS, ROLE_OF, SERVICES, SITE_ADMIN, role_flags
from .test_permission_matrix import Rule, split_key, table

# The callers with a role; the site admin's read-only key is no role of its own (the matrix
# derives it from the anonymous caller and the Read Only role), and an anonymous caller never
# reaches MISP's ACL check.
FLAGS = {caller: role_flags(role_id) for caller, role_id in ROLE_OF.items()}

# What the product serves without credentials; MISP lets these through Auth->allow(), before
# and outside the ACL, whose entry is then "*".
WITHOUT_CREDENTIALS = {
    ("users", "login"), ("users", "logout"), ("users", "forgot"), ("users", "register"),
    ("users", "password_reset"), ("users", "heartbeat"), ("users", "otp"),
}

# Matrix routes whose refusals are no ACL decision, and why.
NOT_ACL = {
    # MISP refuses a GET "Invalid Role." whoever asks; the ACL entry governs the POST.
    "GET /admin/roles/set_default": "MISP's action refuses a GET, not its ACL",
    "GET /admin/roles/set_default/{role_id}": "MISP's action refuses a GET, not its ACL",
}


def misp_routes() -> Iterator[tuple[str, str, tuple[str, str], Rule]]:
    """`(service, matrix key, (controller, action), rule)` of every MISP path of the matrix."""
    for service in SERVICES:
        for key, rule in table(service).items():
            function = function_of(split_key(key)[1])
            if function is not None:
                yield service, key, function, rule


ROUTES = list(misp_routes())


def test_the_matrix_declares_misp_routes() -> None:
    # Guards the comparison below against a function_of that stops naming the matrix's paths.
    assert len(ROUTES) > 50


def test_every_misp_route_of_the_matrix_has_an_acl_entry() -> None:
    missing = sorted(f"{service}: {key} -> {controller}/{action}"
                     for service, key, (controller, action), _ in ROUTES
                     if action not in ACL_LIST.get(controller, {}))
    assert not missing, "no entry in settings.domain.acl.ACL_LIST:\n" + "\n".join(missing)


def test_no_exception_names_a_route_the_matrix_has_not() -> None:
    keys = {key for _, key, _, _ in ROUTES}
    assert set(NOT_ACL) <= keys
    assert {function for _, _, function, _ in ROUTES} >= WITHOUT_CREDENTIALS


def acl_allowed(function: tuple[str, str]) -> set[str]:
    controller, action = function
    entry = ACL_LIST[controller][action]
    passed = {caller for caller, flags in FLAGS.items() if allows(entry, flags)}
    return passed | ({ANONYMOUS} if function in WITHOUT_CREDENTIALS else set())


def cases() -> Iterator[Any]:
    for service, key, function, rule in ROUTES:
        if key in NOT_ACL or function[1] not in ACL_LIST.get(function[0], {}):
            continue
        yield pytest.param(key, function, rule, id=f"{service}: {key}")


@pytest.mark.parametrize(("key", "function", "rule"), cases())
def test_the_acl_entry_allows_exactly_the_callers_the_matrix_allows(
        key: str, function: tuple[str, str], rule: Rule) -> None:
    controller, action = function
    assert acl_allowed(function) == set(rule.allowed), (
        f"{key}: ACL_LIST[{controller!r}][{action!r}] = {ACL_LIST[controller][action]!r}")


def test_site_admins_pass_every_entry_and_other_roles_not_a_site_admin_one() -> None:
    for controller, actions in ACL_LIST.items():
        for action, entry in actions.items():
            assert allows(entry, FLAGS[SITE_ADMIN]), f"{controller}/{action}"
    assert not any(allows((), flags) for caller, flags in FLAGS.items()
                   if caller != SITE_ADMIN)
