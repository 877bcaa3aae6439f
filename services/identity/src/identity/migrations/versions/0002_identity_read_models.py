"""Identity's own read models: users, credentials, roles, authkeys, organisations, settings,
registrations, sessions and brute-force attempts.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Ids 1..6 are MISP's seeded roles and id 1 the first site admin: sequences start after them.
DDL = """
CREATE SEQUENCE IF NOT EXISTS user_id_seq START 2;
CREATE SEQUENCE IF NOT EXISTS role_id_seq START 7;
CREATE SEQUENCE IF NOT EXISTS authkey_id_seq START 1;
CREATE SEQUENCE IF NOT EXISTS user_setting_id_seq START 1;
CREATE SEQUENCE IF NOT EXISTS registration_id_seq START 1;

CREATE TABLE IF NOT EXISTS org (
    org_id bigint PRIMARY KEY,
    uuid text NOT NULL,
    name text NOT NULL,
    local boolean NOT NULL DEFAULT true,
    deleted boolean NOT NULL DEFAULT false,
    state jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS role (
    role_id bigint PRIMARY KEY,
    stream_id uuid NOT NULL UNIQUE,
    version integer NOT NULL,
    name text NOT NULL,
    state jsonb NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS ux_role_name ON role (lower(name));

CREATE TABLE IF NOT EXISTS user_account (
    user_id bigint PRIMARY KEY,
    stream_id uuid NOT NULL UNIQUE,
    version integer NOT NULL,
    email text NOT NULL,
    org_id bigint NOT NULL,
    role_id bigint NOT NULL,
    disabled boolean NOT NULL DEFAULT false,
    state jsonb NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS ux_user_account_email ON user_account (lower(email));
CREATE INDEX IF NOT EXISTS ix_user_account_org_id ON user_account (org_id);
CREATE INDEX IF NOT EXISTS ix_user_account_role_id ON user_account (role_id);

-- Secrets are not events: the password hash lives only here, beside the user's row.
CREATE TABLE IF NOT EXISTS user_credential (
    user_id bigint PRIMARY KEY,
    password_hash text,
    changed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS authkey (
    authkey_id bigint PRIMARY KEY,
    stream_id uuid NOT NULL UNIQUE,
    version integer NOT NULL,
    user_id bigint NOT NULL,
    key_hmac text NOT NULL,
    state jsonb NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS ux_authkey_key_hmac ON authkey (key_hmac);
CREATE INDEX IF NOT EXISTS ix_authkey_user_id ON authkey (user_id);

CREATE TABLE IF NOT EXISTS admin_setting (
    name text PRIMARY KEY,
    value jsonb
);

CREATE TABLE IF NOT EXISTS setting_value (
    name text PRIMARY KEY,
    value jsonb,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS user_setting (
    id bigint PRIMARY KEY,
    stream_id uuid NOT NULL UNIQUE,
    version integer NOT NULL,
    user_id bigint NOT NULL,
    setting text NOT NULL,
    value jsonb,
    timestamp timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS ux_user_setting_user_setting ON user_setting (user_id, setting);

CREATE TABLE IF NOT EXISTS registration (
    id bigint PRIMARY KEY,
    stream_id uuid NOT NULL UNIQUE,
    version integer NOT NULL,
    state jsonb NOT NULL,
    deleted boolean NOT NULL DEFAULT false
);

CREATE TABLE IF NOT EXISTS login_session (
    token_hash text PRIMARY KEY,
    user_id bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    ip text,
    user_agent text
);
CREATE INDEX IF NOT EXISTS ix_login_session_user_id ON login_session (user_id);

-- One row per counted login attempt of (ip, username), kept for SecureAuth.expire seconds.
CREATE TABLE IF NOT EXISTS login_attempt (
    id bigserial PRIMARY KEY,
    ip text NOT NULL,
    username text NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_login_attempt_pair ON login_attempt (ip, username, expires_at);

-- Organisations the consumer saw before this projection existed (its group's offsets are past
-- them): start from the principals projection; the next organisation event fills the rest.
INSERT INTO org (org_id, uuid, name, local, deleted, state)
SELECT org_id, uuid, name, local, deleted,
       jsonb_build_object('id', org_id, 'uuid', uuid, 'name', name, 'local', local)
FROM principal_org
ON CONFLICT (org_id) DO NOTHING
"""


def upgrade() -> None:
    code = "\n".join(line for line in DDL.splitlines() if not line.lstrip().startswith("--"))
    for statement in filter(None, (s.strip() for s in code.split(";"))):
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("identity's read models are rebuilt from its events, not downgraded")
