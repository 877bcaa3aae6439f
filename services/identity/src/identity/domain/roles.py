"""Roles: MISP's six seeded roles, permission levels, and the rules of add / edit / delete."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from identity.domain.errors import InvalidFieldsError
from identity.domain.values import to_bool, to_int
from misp_contracts.events.identity import LEVEL_FLAGS, PERM_FLAGS, RoleState

# Role::PERMISSION_CONSTANTS: value -> (constant, name)
PERMISSION_LEVELS: dict[int, tuple[str, str]] = {
    0: ("read_only", "Read Only"),
    1: ("manage_own", "Manage Own Events"),
    2: ("manage_org", "Manage Organisation Events"),
    3: ("publish", "Manage and Publish Organisation Events"),
}
LEVEL_BY_CONSTANT = {constant: value for value, (constant, _) in PERMISSION_LEVELS.items()}
# The four level flags each permission level sets.
LEVEL_TO_FLAGS: dict[int, dict[str, bool]] = {
    0: {"perm_add": False, "perm_modify": False, "perm_modify_org": False, "perm_publish": False},
    1: {"perm_add": True, "perm_modify": True, "perm_modify_org": False, "perm_publish": False},
    2: {"perm_add": True, "perm_modify": True, "perm_modify_org": True, "perm_publish": False},
    3: {"perm_add": True, "perm_modify": True, "perm_modify_org": True, "perm_publish": True},
}

NAME_TAKEN = "A role with this name already exists."
ROLE_IN_USE = "It is not possible to delete role that is assigned to users."
_MEMORY_LIMIT = re.compile(r"^\d+[MG]$")
MAX_NAME = 100

_USER_FLAGS = ("perm_add", "perm_modify", "perm_modify_org", "perm_audit", "perm_auth",
               "perm_tagger", "perm_sighting", "perm_decaying", "perm_galaxy_editor",
               "perm_analyst_data")
_PUBLISHER = ("perm_add", "perm_modify", "perm_modify_org", "perm_publish", "perm_publish_zmq",
              "perm_publish_kafka", "perm_audit", "perm_auth", "perm_tagger", "perm_delegate",
              "perm_sighting", "perm_decaying", "perm_galaxy_editor", "perm_analyst_data")


def _flags(names: tuple[str, ...] | list[str]) -> dict[str, bool]:
    return dict.fromkeys(names, True)


def seeded_roles(now: datetime) -> list[RoleState]:
    """MISP's INSTALL/MYSQL.sql roles 1..6 with their ids, names and flags."""
    admin_flags = [f for f in PERM_FLAGS if f != "perm_skip_otp"] + list(LEVEL_FLAGS)
    specs: list[tuple[int, str, int, dict[str, bool]]] = [
        (1, "admin", 3, {**_flags(admin_flags), "perm_full": True}),
        (2, "Org Admin", 3, _flags([
            "perm_add", "perm_modify", "perm_modify_org", "perm_publish", "perm_publish_zmq",
            "perm_publish_kafka", "perm_admin", "perm_audit", "perm_auth", "perm_tagger",
            "perm_template", "perm_sharing_group", "perm_tag_editor", "perm_delegate",
            "perm_sighting", "perm_decaying", "perm_galaxy_editor", "perm_analyst_data"])),
        (3, "User", 2, {**_flags(_USER_FLAGS), "default_role": True}),
        (4, "Publisher", 3, _flags(_PUBLISHER)),
        (5, "Sync user", 3, _flags([*_PUBLISHER, "perm_sync", "perm_sharing_group",
                                     "perm_tag_editor"])),
        (6, "Read Only", 0, _flags(["perm_audit", "perm_auth"])),
    ]
    return [RoleState(id=i, name=name, permission=level, created=now, modified=now, **flags)
            for i, name, level, flags in specs]


def permission_of(flags: dict[str, Any]) -> int:
    """Role::permission: 3 if add+modify+publish, else 2 if add+modify_org, else 1 if add."""
    if flags.get("perm_add") and flags.get("perm_modify") and flags.get("perm_publish"):
        return 3
    if flags.get("perm_add") and flags.get("perm_modify_org"):
        return 2
    if flags.get("perm_add"):
        return 1
    return 0


def parse_permission(value: Any) -> int | None:
    """A level given as a number or its constant name (`"publish"`); None if not one."""
    if isinstance(value, str) and value in LEVEL_BY_CONSTANT:
        return LEVEL_BY_CONSTANT[value]
    number = to_int(value)
    return number if number is not None and number in PERMISSION_LEVELS else None


def apply_role_fields(current: RoleState | None, body: dict[str, Any], *, role_id: int,
                      now: datetime) -> RoleState:
    """The role after an add (current None: unset flags are false) or an edit."""
    errors: dict[str, list[str]] = {}
    base: dict[str, Any] = current.model_dump() if current else {"id": role_id, "created": now}
    if current is None or "name" in body:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            errors.setdefault("name", []).append("A name is required.")
        elif len(name) > MAX_NAME:
            errors.setdefault("name", []).append(f"The name can be at most {MAX_NAME} characters.")
        else:
            base["name"] = name.strip()
    for flag in (*PERM_FLAGS, "perm_full", "default_role", "restricted_to_site_admin",
                 "enforce_rate_limit"):
        if flag in body:
            value = to_bool(body[flag])
            if value is None:
                errors.setdefault(flag, []).append("Value is not a boolean.")
            else:
                base[flag] = value
    if "rate_limit_count" in body:
        count = to_int(body["rate_limit_count"])
        if count is None or count < 0:
            errors.setdefault("rate_limit_count", []).append("Please enter a numeric value.")
        else:
            base["rate_limit_count"] = count
    if "memory_limit" in body:
        limit = body["memory_limit"]
        text = "" if limit is None else str(limit)
        base["memory_limit"] = text if (text == "-1" or _MEMORY_LIMIT.fullmatch(text)) else ""
    if "max_execution_time" in body:
        seconds = body["max_execution_time"]
        number = to_int(seconds)
        base["max_execution_time"] = "" if number is None else str(number)
    # MISP rewrites the four level flags from `permission` on every save; when an edit omits it
    # (PyMISP re-sends it anyway) the current level is kept.
    level: int | None
    if "permission" in body:
        level = parse_permission(body["permission"])
        if level is None:
            errors.setdefault("permission", []).append("Invalid permission level.")
    else:
        level = current.permission if current else 0
    if errors:
        raise InvalidFieldsError(errors)
    assert level is not None
    base.update(LEVEL_TO_FLAGS[level])
    base["permission"] = level
    base["modified"] = now
    return RoleState.model_validate(base)


def role_fields(state: RoleState, *, default_role_id: int | None,
                include_full: bool = True) -> dict[str, Any]:
    """A role as MISP renders it: every column, `permission`, its description and `default`."""
    data = state.model_dump()
    if not include_full:
        data.pop("perm_full", None)
    level = state.permission
    data["permission"] = str(level)
    data["permission_description"] = PERMISSION_LEVELS[level][0]
    data["default"] = default_role_id is not None and state.id == default_role_id
    return data
