"""The platform's tables (event store, outbox, processed marks, principals) for mailer.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The platform's first schema step, spelled out as it was made (never edited: a later change
# is a later revision, e.g. the consistency step).
DDL = (
    """CREATE TABLE IF NOT EXISTS event (
        stream_id UUID NOT NULL,
        version INTEGER NOT NULL,
        event_id UUID NOT NULL,
        stream_type VARCHAR(64) NOT NULL,
        type VARCHAR(200) NOT NULL,
        data JSONB NOT NULL,
        metadata JSONB NOT NULL,
        recorded_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        CONSTRAINT event_pkey PRIMARY KEY (stream_id, version),
        UNIQUE (event_id))""",
    """CREATE TABLE IF NOT EXISTS snapshot (
        stream_id UUID NOT NULL,
        version INTEGER NOT NULL,
        state JSONB NOT NULL,
        taken_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (stream_id))""",
    """CREATE TABLE IF NOT EXISTS outbox (
        position BIGINT GENERATED ALWAYS AS IDENTITY,
        topic VARCHAR(249) NOT NULL,
        message_key TEXT,
        headers JSONB NOT NULL,
        payload BYTEA NOT NULL,
        created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (position))""",
    """CREATE TABLE IF NOT EXISTS processed_message (
        consumer VARCHAR(120) NOT NULL,
        message_id VARCHAR(200) NOT NULL,
        outcome VARCHAR(20) NOT NULL,
        topic VARCHAR(249),
        processed_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        CONSTRAINT processed_message_pkey PRIMARY KEY (consumer, message_id))""",
    """CREATE TABLE IF NOT EXISTS principal_user (
        user_id BIGINT NOT NULL,
        uuid VARCHAR(36) NOT NULL,
        email VARCHAR(255) NOT NULL,
        org_id BIGINT NOT NULL,
        role_id BIGINT NOT NULL,
        disabled BOOLEAN DEFAULT 'false' NOT NULL,
        change_pw BOOLEAN DEFAULT 'false' NOT NULL,
        expiration TIMESTAMP WITH TIME ZONE,
        updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (user_id))""",
    """CREATE TABLE IF NOT EXISTS principal_role (
        role_id BIGINT NOT NULL,
        name VARCHAR(255) NOT NULL,
        perm_site_admin BOOLEAN DEFAULT 'false' NOT NULL,
        perm_admin BOOLEAN DEFAULT 'false' NOT NULL,
        perm_auth BOOLEAN DEFAULT 'false' NOT NULL,
        perm_audit BOOLEAN DEFAULT 'false' NOT NULL,
        perm_sync BOOLEAN DEFAULT 'false' NOT NULL,
        permission SMALLINT DEFAULT '0' NOT NULL,
        state JSONB NOT NULL,
        updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (role_id))""",
    """CREATE TABLE IF NOT EXISTS principal_authkey (
        authkey_id BIGINT NOT NULL,
        uuid VARCHAR(36) NOT NULL,
        user_id BIGINT NOT NULL,
        key_hmac VARCHAR(64) NOT NULL,
        authkey_start VARCHAR(4) NOT NULL,
        authkey_end VARCHAR(4) NOT NULL,
        expiration BIGINT DEFAULT '0' NOT NULL,
        allowed_ips JSONB,
        read_only BOOLEAN DEFAULT 'false' NOT NULL,
        updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (authkey_id))""",
    "CREATE UNIQUE INDEX IF NOT EXISTS ix_principal_authkey_key_hmac "
    "ON principal_authkey (key_hmac)",
    "CREATE INDEX IF NOT EXISTS ix_principal_authkey_user_id ON principal_authkey (user_id)",
    """CREATE TABLE IF NOT EXISTS principal_org (
        org_id BIGINT NOT NULL,
        uuid VARCHAR(36) NOT NULL,
        name VARCHAR(255) NOT NULL,
        local BOOLEAN DEFAULT 'true' NOT NULL,
        deleted BOOLEAN DEFAULT 'false' NOT NULL,
        updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (org_id))""",
    """CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger AS $$
    BEGIN PERFORM pg_notify('outbox', ''); RETURN NULL; END $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS outbox_notify ON outbox",
    """CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()""",
)


def upgrade() -> None:
    for statement in DDL:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("the first migration is not reversible")
