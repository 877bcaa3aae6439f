"""Fixtures of the mailer's tests (defined in support.py, shared with the e2e tests)."""

from .support import (  # noqa: F401  (fixtures)
    admin_key,
    client,
    deliverer,
    gnupg_home,
    mailer,
    mailer_db,
    mailer_engine,
    mailer_settings,
    org_admin_key,
    sink,
    user_keys,
)
