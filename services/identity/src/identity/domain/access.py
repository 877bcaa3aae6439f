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

# Authkeys are credentials: the rule that also guards the passwords the mailer issues.
can_manage_keys_of = can_manage_credentials_of

__all__ = ["Caller", "Rights", "can_manage_credentials_of", "can_manage_keys_of",
           "can_manage_user", "can_see_user"]
