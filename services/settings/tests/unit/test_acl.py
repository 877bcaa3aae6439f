"""MISP's queryACL answers from the routed paths and the ACL entries (domain.acl)."""

from settings.domain import acl

PATHS = ["/admin/users/view/{user_id}", "/users/registrations/index", "/auth_keys/add",
         "/api/v1/settings/import-rules/apply", "/_svc/settings/health", "/gpg.asc", "/health"]


def test_paths_are_named_as_misp_names_its_functions() -> None:
    assert acl.functions(PATHS) == {"authKeys": ["add"],
                                    "users": ["admin_view", "registrations"]}


def test_a_function_with_a_route_but_no_acl_entry_is_reported() -> None:
    routed = acl.functions([*PATHS, "/users/notAnAction", "/newThings/index"])
    assert acl.missing(routed) == {"users": ["notAnAction"], "newThings": ["index"]}


def test_nothing_is_missing_when_every_routed_function_has_an_entry() -> None:
    assert acl.missing(acl.functions(PATHS)) == []


def test_entries_are_passed_as_misp_checks_them() -> None:
    assert acl.allows(acl.ANY, {})
    assert not acl.allows(acl.SITE_ADMIN, {"perm_admin": True})
    assert acl.allows(acl.SITE_ADMIN, {"perm_site_admin": True})
    assert acl.allows(("perm_audit", "perm_admin"), {"perm_admin": True})
    assert not acl.allows({"AND": ("perm_add", "perm_sync")}, {"perm_add": True})


def test_role_access_lists_both_spellings_of_a_camel_case_controller() -> None:
    urls = acl.role_urls({}, {"authKeys": {"index": acl.ANY, "add": acl.SITE_ADMIN}})
    assert urls == ["/authKeys/index", "/auth_keys/index"]
