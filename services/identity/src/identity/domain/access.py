"""Who may act on whom: identity's names for the shared rules (misp_contracts.access), which
the mailer applies too, so that the two cannot drift apart."""

from __future__ import annotations

from misp_contracts.access import (
    Caller,
    Rights,
    can_manage_credentials_of,
    can_manage_user,
    can_see_user,
)


def listing_scope(caller: Caller, user_id: int | None) -> tuple[int | None, int | None] | None:
    """`(user_id, org_id)` an index of per-user records (authkeys, user settings) is limited to:
    a site admin's as asked, an org admin's to their org, a user's to themself; None when a user
    asks for someone else's (an empty list)."""
    if caller.is_site_admin:
        return user_id, None
    if caller.is_org_admin:
        return user_id, caller.org_id
    if user_id is not None and user_id != caller.user_id:
        return None
    return caller.user_id, None


# Authkeys are credentials: the rule that also guards the passwords the mailer issues.
can_manage_keys_of = can_manage_credentials_of

__all__ = ["Caller", "Rights", "can_manage_credentials_of", "can_manage_keys_of",
           "can_manage_user", "can_see_user", "listing_scope"]
