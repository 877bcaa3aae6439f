"""Who may act on whom (MISP's rules, API reference §1 and §2.1)."""

from __future__ import annotations

from typing import Protocol

from misp_contracts.events.identity import RoleState, UserState


class Caller(Protocol):
    @property
    def user_id(self) -> int: ...
    @property
    def org_id(self) -> int: ...
    @property
    def is_site_admin(self) -> bool: ...
    @property
    def is_org_admin(self) -> bool: ...


def _site_admin(role: RoleState | None) -> bool:
    return bool(role and role.perm_site_admin)


def can_see_user(caller: Caller, user: UserState, role: RoleState | None) -> bool:
    """Admin views: a site admin sees everyone; an org admin their own org, never site admins."""
    if caller.is_site_admin:
        return True
    return caller.is_org_admin and user.org_id == caller.org_id and not _site_admin(role)


def can_manage_user(caller: Caller, user: UserState, role: RoleState | None) -> bool:
    """Edit or delete: as `can_see_user`."""
    return can_see_user(caller, user, role)


def can_manage_keys_of(caller: Caller, user: UserState, role: RoleState | None) -> bool:
    """Authkeys: a site admin for anyone; an org admin for themself and their org's plain users
    (not admins); a user for themself only."""
    if caller.is_site_admin or user.id == caller.user_id:
        return True
    plain = role is not None and not (role.perm_admin or role.perm_site_admin)
    return caller.is_org_admin and user.org_id == caller.org_id and plain
