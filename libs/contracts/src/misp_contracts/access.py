"""Who may act on whom among users (MISP's rules, API reference §1 and §2.1): the one authority
that identity (its API, and the passwords the mailer issues) and the mailer (whom an admin may
mail) both apply. Pure: no I/O, so any service's domain may import it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class Caller(Protocol):
    """Who acts: a request's principal, or the actor of an event as its service knows it."""

    @property
    def user_id(self) -> int: ...
    @property
    def org_id(self) -> int: ...
    @property
    def is_site_admin(self) -> bool: ...
    @property
    def is_org_admin(self) -> bool: ...


class Target(Protocol):
    """The user acted on (identity's `UserState` is one)."""

    @property
    def id(self) -> int: ...
    @property
    def org_id(self) -> int: ...


class Role(Protocol):
    """The target's role, as far as these rules look (identity's `RoleState` is one)."""

    @property
    def perm_site_admin(self) -> bool: ...
    @property
    def perm_admin(self) -> bool: ...


@dataclass(frozen=True)
class Rights:
    """A caller known by its flags rather than by an authenticated request."""

    user_id: int
    org_id: int
    is_site_admin: bool = False
    is_org_admin: bool = False

    @classmethod
    def of(cls, user_id: int, org_id: int, role: Role | None) -> Rights:
        """As the auth dependency derives them: an org admin is perm_admin without
        perm_site_admin; no role, no rights."""
        site = bool(role and role.perm_site_admin)
        return cls(user_id=user_id, org_id=org_id, is_site_admin=site,
                   is_org_admin=bool(role and role.perm_admin) and not site)


@dataclass(frozen=True)
class TargetUser:
    """A target known by its id and org only (the mailer's recipients)."""

    id: int
    org_id: int


@dataclass(frozen=True)
class RoleFlags:
    """A role known by its two admin flags only (a projection of `RoleState`)."""

    perm_site_admin: bool = False
    perm_admin: bool = False


def _site_admin(role: Role | None) -> bool:
    return bool(role and role.perm_site_admin)


def can_see_user(caller: Caller, user: Target, role: Role | None) -> bool:
    """Admin views: a site admin sees everyone; an org admin their own org, never site admins."""
    if caller.is_site_admin:
        return True
    return caller.is_org_admin and user.org_id == caller.org_id and not _site_admin(role)


def can_manage_user(caller: Caller, user: Target, role: Role | None) -> bool:
    """Edit or delete: as `can_see_user`."""
    return can_see_user(caller, user, role)


def can_manage_credentials_of(caller: Caller, user: Target, role: Role | None) -> bool:
    """Authkeys and passwords: a site admin for anyone; an org admin for themself and their
    org's plain users (not admins, and not a user whose role is unknown); a user for themself."""
    if caller.is_site_admin or user.id == caller.user_id:
        return True
    plain = role is not None and not (role.perm_admin or role.perm_site_admin)
    return caller.is_org_admin and user.org_id == caller.org_id and plain


def can_mail(caller: Caller, user: Target, role: Role | None, *, issues_password: bool) -> bool:
    """An admin's mail to a user: a message to anyone the caller may see; a mail that issues a
    temporary password (a password reset, a welcome) replaces the user's password and ends their
    sessions, so only to a user whose credentials the caller may manage."""
    if issues_password:
        return can_manage_credentials_of(caller, user, role)
    return can_see_user(caller, user, role)
