"""Identity's read models (created by migration 0002), updated in the transaction of each append."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Text,
    func,
    text,
)
from sqlalchemy import Table as _Table
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.sql.schema import SchemaItem

metadata = MetaData()


def Table(name: str, *columns: SchemaItem) -> _Table:
    return _Table(name, metadata, *columns)


org = Table(
    "org",
    Column("org_id", BigInteger, primary_key=True, autoincrement=False),
    Column("uuid", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("local", Boolean, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("state", JSONB, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Set from OrganisationMergeStarted: the organisation takes no new user (migration 0003).
    Column("merging_into", BigInteger, nullable=True),
    Column("merge_id", Text, nullable=True),
    # The organisation stream's version this row reflects (migration 0007): an older event
    # (a replay) never overwrites it, and a deletion stays a deletion.
    Column("version", Integer, nullable=True),
)

role = Table(
    "role",
    Column("role_id", BigInteger, primary_key=True, autoincrement=False),
    Column("stream_id", UUID(as_uuid=False), nullable=False, unique=True),
    Column("version", Integer, nullable=False),
    Column("name", Text, nullable=False),
    Column("state", JSONB, nullable=False),
    Index("ux_role_name", text("lower(name)"), unique=True),
)

user_account = Table(
    "user_account",
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    Column("stream_id", UUID(as_uuid=False), nullable=False, unique=True),
    Column("version", Integer, nullable=False),
    Column("email", Text, nullable=False),
    Column("org_id", BigInteger, nullable=False),
    Column("role_id", BigInteger, nullable=False),
    Column("disabled", Boolean, nullable=False),
    Column("state", JSONB, nullable=False),
    Index("ux_user_account_email", text("lower(email)"), unique=True),
    Index("ix_user_account_org_id", "org_id"),
    Index("ix_user_account_role_id", "role_id"),
)

user_credential = Table(
    "user_credential",
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    Column("password_hash", Text, nullable=True),
    Column("changed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

authkey = Table(
    "authkey",
    Column("authkey_id", BigInteger, primary_key=True, autoincrement=False),
    Column("stream_id", UUID(as_uuid=False), nullable=False, unique=True),
    Column("version", Integer, nullable=False),
    Column("user_id", BigInteger, nullable=False),
    Column("key_hmac", Text, nullable=False),
    Column("state", JSONB, nullable=False),
    Index("ux_authkey_key_hmac", "key_hmac", unique=True),
    Index("ix_authkey_user_id", "user_id"),
)

admin_setting = Table(
    "admin_setting",
    Column("name", Text, primary_key=True),
    Column("value", JSONB, nullable=True),
)

# Server settings: misp_platform.server_settings.setting_value (made by migration 0002).

user_setting = Table(
    "user_setting",
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("stream_id", UUID(as_uuid=False), nullable=False, unique=True),
    Column("version", Integer, nullable=False),
    Column("user_id", BigInteger, nullable=False),
    Column("setting", Text, nullable=False),
    Column("value", JSONB, nullable=True),
    Column("timestamp", DateTime(timezone=True), nullable=False),
    Index("ux_user_setting_user_setting", "user_id", "setting", unique=True),
)

registration = Table(
    "registration",
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("stream_id", UUID(as_uuid=False), nullable=False, unique=True),
    Column("version", Integer, nullable=False),
    Column("state", JSONB, nullable=False),
    Column("deleted", Boolean, nullable=False),
)

# A browser session: the peppered HMAC of its token (misp_platform.auth.sessions), the value
# identity publishes for every service's principals projection; never the token.
login_session = Table(
    "login_session",
    Column("session_hmac", Text, primary_key=True),
    Column("user_id", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("ip", Text, nullable=True),
    Column("user_agent", Text, nullable=True),
    Index("ix_login_session_user_id", "user_id"),
)

# The one live password reset link of a user (the mailer's PasswordResetLinkIssued): the sha256
# of its token, never the token; a newer link (issued_at) replaces the row, `used_at` ends it.
password_reset_link = Table(
    "password_reset_link",
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    Column("credential_id", Text, nullable=False),
    Column("token_hash", Text, nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True), nullable=True),
    Index("ux_password_reset_link_token_hash", "token_hash", unique=True),
)

login_attempt = Table(
    "login_attempt",
    Column("id", BigInteger, primary_key=True),
    Column("ip", Text, nullable=False),
    Column("username", Text, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_login_attempt_pair", "ip", "username", "expires_at"),
)

# TOTP (migration 0013): the active secret of a user, AES-GCM-encrypted under a key derived from
# the pepper (identity.adapters.totp_secrets), and the last time step a code was accepted at
# (a code is good once).
user_totp = Table(
    "user_totp",
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    Column("secret", Text, nullable=False),
    Column("last_step", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# The secret a user is enrolling (users/totp_new's GET), until a code proves it or it expires.
totp_enrolment = Table(
    "totp_enrolment",
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    Column("secret", Text, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

# A login whose password was right and that waits for its second step (`purpose`: "otp", a
# code; "totp_new", the enrolment OTP requires): the peppered HMAC of its token, single use.
login_challenge = Table(
    "login_challenge",
    Column("token_hmac", Text, primary_key=True),
    Column("user_id", BigInteger, nullable=False),
    Column("purpose", Text, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("attempts_left", Integer, nullable=False),
    Column("ip", Text, nullable=True),
    Column("user_agent", Text, nullable=True),
    Index("ix_login_challenge_user_id", "user_id"),
)
