"""MISP's ACL in this product: who may call each MISP function (controller/action) that has a
route, and the answers of `queryACL` (printAllFunctionNames, findMissingFunctionNames,
printRoleAccess) computed from the routes the services serve and these entries."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

# An entry, as MISP's ACLComponent writes it: () site admins only; ("*",) every user; a tuple of
# perm_* flags: any of them; {"AND": (...)}: all of them. Site admins pass every entry.
Entry = tuple[str, ...] | Mapping[str, tuple[str, ...]]
SITE_ADMIN: Entry = ()
ANY: Entry = ("*",)
ADMIN: Entry = ("perm_admin",)

ACL_LIST: dict[str, dict[str, Entry]] = {
    "attributes": {"describeTypes": ANY},
    "auditLogs": {"admin_index": ("perm_audit",)},
    "authKeys": dict.fromkeys(("add", "delete", "edit", "index", "view"), ANY),
    "allowedlists": {"index": ANY, **dict.fromkeys(
        ("admin_add", "admin_delete", "admin_edit", "admin_index"), ("perm_regexp_access",))},
    "eventBlocklists": dict.fromkeys(("add", "delete", "edit", "index"), SITE_ADMIN),
    "events": {"contact": ANY, "queryACL": SITE_ADMIN},
    "jobs": dict.fromkeys(("getProgress", "index"), SITE_ADMIN),
    "logs": {"admin_index": ("perm_audit",), "event_index": ANY},
    "orgBlocklists": dict.fromkeys(("add", "delete", "edit", "index"), SITE_ADMIN),
    "organisations": {"index": ANY, "view": ANY, **dict.fromkeys(
        ("admin_add", "admin_delete", "admin_edit", "admin_merge"), SITE_ADMIN)},
    "regexp": {"admin_clean": SITE_ADMIN, **dict.fromkeys(
        ("admin_add", "admin_delete", "admin_edit", "admin_index", "admin_view"),
        ("perm_regexp_access",))},
    "roles": {"index": ANY, "view": ANY, **dict.fromkeys(
        ("admin_add", "admin_delete", "admin_edit", "admin_set_default"), SITE_ADMIN)},
    "servers": {"createSync": ("perm_sync",), "getPyMISPVersion": ANY, "getVersion": ANY,
                **dict.fromkeys(("dbSchemaDiagnostic", "getSetting", "getWorkers",
                                 "killAllWorkers", "purgeSessions", "queryACL",
                                 "restartDeadWorkers",
                                 "restartWorkers", "serverSettings", "serverSettingsEdit",
                                 "startWorker", "stopWorker", "update"), SITE_ADMIN)},
    "tasks": dict.fromkeys(("index", "setTask"), SITE_ADMIN),
    "userSettings": dict.fromkeys(("delete", "getSetting", "index", "setSetting"), ANY),
    "users": {
        **dict.fromkeys(("change_pw", "edit", "forgot", "heartbeat", "login", "logout", "otp",
                         "password_reset", "register", "resetauthkey", "statistics",
                         "totp_new", "view"), ANY),
        "totp_delete": ADMIN,
        **dict.fromkeys(("admin_add", "admin_delete", "admin_edit", "admin_email",
                         "admin_index", "admin_quickEmail", "admin_view"), ADMIN),
        **dict.fromkeys(("fetchGpgKey", "fetchPGPKey", "searchGpgKey"), ADMIN),
        **dict.fromkeys(("acceptRegistrations", "discardRegistrations", "registrations"),
                           SITE_ADMIN),
    },
}

DEBUG_TYPES = ("printAllFunctionNames", "findMissingFunctionNames", "printRoleAccess")
_SEGMENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# Paths that are no MISP function: this product's own API and the operator endpoints.
_NOT_MISP = ("/api/", "/_svc/", "/docs/")


def controller_name(segment: str) -> str:
    """MISP's name of the controller behind a URL segment: `auth_keys` -> `authKeys`."""
    head, *rest = segment.split("_")
    return head[:1].lower() + head[1:] + "".join(part[:1].upper() + part[1:] for part in rest)


def function_of(path: str) -> tuple[str, str] | None:
    """The MISP function (controller, action) a path template serves, or None:
    `/admin/users/view/{user_id}` -> (`users`, `admin_view`)."""
    if path.startswith(_NOT_MISP):
        return None
    parts = [p for p in path.split("/") if p]
    prefix = ""
    if parts[:1] == ["admin"]:
        prefix, parts = "admin_", parts[1:]
    if len(parts) < 2 or not (_SEGMENT.match(parts[0]) and _SEGMENT.match(parts[1])):
        return None
    return controller_name(parts[0]), prefix + parts[1]


def functions(paths: Iterable[str]) -> dict[str, list[str]]:
    """printAllFunctionNames: `{controller: [action, ...]}`, controllers and actions sorted."""
    out: dict[str, set[str]] = {}
    for path in paths:
        found = function_of(path)
        if found:
            out.setdefault(found[0], set()).add(found[1])
    return {controller: sorted(actions) for controller, actions in sorted(out.items())}


def missing(routed: Mapping[str, Iterable[str]],
            acl: Mapping[str, Mapping[str, Entry]] = ACL_LIST) -> dict[str, list[str]] | list[Any]:
    """findMissingFunctionNames: the routed functions without an ACL entry, `{controller:
    [action, ...]}`; `[]` when there is none (what PHP's empty array encodes to)."""
    out = {controller: [a for a in actions if a not in acl.get(controller, {})]
           for controller, actions in routed.items()}
    return {c: actions for c, actions in out.items() if actions} or []


def allows(entry: Entry, flags: Mapping[str, Any]) -> bool:
    """Whether a role with these perm_* flags passes an entry (MISP's ACLComponent rule)."""
    if flags.get("perm_site_admin"):
        return True
    if isinstance(entry, Mapping):
        if "AND" in entry:
            return all(bool(flags.get(p)) for p in entry["AND"])
        return any(bool(flags.get(p)) for p in entry.get("OR", ()))
    return "*" in entry or any(bool(flags.get(p)) for p in entry)


def role_urls(flags: Mapping[str, Any],
              acl: Mapping[str, Mapping[str, Entry]] = ACL_LIST) -> list[str]:
    """printRoleAccess's `urls` of one role: `/<controller>/<action>` of every entry it passes,
    under MISP's name of the controller and, where it differs, its underscored one."""
    urls = []
    for controller, actions in acl.items():
        underscored = re.sub(r"(?<!^)([A-Z])", r"_\1", controller).lower()
        names = [controller] if underscored == controller else [controller, underscored]
        for name in names:
            urls += [f"/{name}/{action}" for action, entry in actions.items()
                     if allows(entry, flags)]
    return urls
