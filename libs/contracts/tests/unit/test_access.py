"""The shared rules of who may act on whom (misp_contracts.access), as identity and the mailer
apply them: an org admin never manages a site admin's or another org admin's credentials."""

from __future__ import annotations

from misp_contracts.access import (
    Rights,
    RoleFlags,
    TargetUser,
    can_mail,
    can_manage_credentials_of,
    can_see_user,
)

SITE_ADMIN = Rights(user_id=1, org_id=1, is_site_admin=True)
ORG_ADMIN = Rights(user_id=2, org_id=5, is_org_admin=True)
PLAIN = RoleFlags()
ADMIN_ROLE = RoleFlags(perm_admin=True)
SITE_ROLE = RoleFlags(perm_site_admin=True, perm_admin=True)


def test_rights_of_a_role_follow_the_auth_dependency() -> None:
    assert Rights.of(7, 3, SITE_ROLE) == Rights(7, 3, is_site_admin=True)
    assert Rights.of(7, 3, ADMIN_ROLE) == Rights(7, 3, is_org_admin=True)
    assert Rights.of(7, 3, PLAIN) == Rights.of(7, 3, None) == Rights(7, 3)


def test_a_site_admin_may_mail_and_reset_anyone() -> None:
    for role in (PLAIN, ADMIN_ROLE, SITE_ROLE, None):
        target = TargetUser(id=9, org_id=8)
        assert can_mail(SITE_ADMIN, target, role, issues_password=True)
        assert can_mail(SITE_ADMIN, target, role, issues_password=False)


def test_an_org_admin_resets_only_their_own_orgs_plain_users_and_themself() -> None:
    same_org = TargetUser(id=9, org_id=5)
    assert can_manage_credentials_of(ORG_ADMIN, same_org, PLAIN)
    assert not can_manage_credentials_of(ORG_ADMIN, same_org, ADMIN_ROLE)
    assert not can_manage_credentials_of(ORG_ADMIN, same_org, SITE_ROLE)
    assert not can_manage_credentials_of(ORG_ADMIN, same_org, None)  # role not known
    assert not can_manage_credentials_of(ORG_ADMIN, TargetUser(id=9, org_id=6), PLAIN)
    assert can_manage_credentials_of(ORG_ADMIN, TargetUser(id=2, org_id=5), ADMIN_ROLE)


def test_an_org_admin_may_message_but_not_reset_another_org_admin() -> None:
    other_admin = TargetUser(id=9, org_id=5)
    assert can_mail(ORG_ADMIN, other_admin, ADMIN_ROLE, issues_password=False)
    assert not can_mail(ORG_ADMIN, other_admin, ADMIN_ROLE, issues_password=True)
    assert not can_mail(ORG_ADMIN, other_admin, SITE_ROLE, issues_password=False)
    assert not can_see_user(Rights(user_id=3, org_id=5), other_admin, PLAIN)  # not an admin
