"""Organisations (read model with logos), the user projection, merges, seen settings.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Spelled out as the step made them; later steps add to them (never edit a released step).
DDL = (
    "CREATE SEQUENCE IF NOT EXISTS organisation_id_seq START WITH 2",
    """CREATE TABLE IF NOT EXISTS org_member (
        user_id BIGINT NOT NULL,
        org_id BIGINT NOT NULL,
        email VARCHAR(255) DEFAULT '' NOT NULL,
        updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (user_id))""",
    "CREATE INDEX IF NOT EXISTS ix_org_member_org_id ON org_member (org_id)",
    """CREATE TABLE IF NOT EXISTS org_merge (
        merge_id UUID NOT NULL,
        source_id BIGINT NOT NULL,
        target_id BIGINT NOT NULL,
        status VARCHAR(16) NOT NULL,
        users_moved INTEGER DEFAULT '0' NOT NULL,
        requested_by BIGINT DEFAULT '0' NOT NULL,
        actor JSONB DEFAULT '{}'::jsonb NOT NULL,
        correlation_id VARCHAR(200),
        started_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        completed_at TIMESTAMP WITH TIME ZONE,
        PRIMARY KEY (merge_id))""",
    "CREATE UNIQUE INDEX IF NOT EXISTS ux_org_merge_running_source "
    "ON org_merge (source_id) WHERE status = 'running'",
    """CREATE TABLE IF NOT EXISTS organisation (
        id BIGINT NOT NULL,
        stream_id UUID NOT NULL,
        version INTEGER NOT NULL,
        uuid VARCHAR(36) NOT NULL,
        name VARCHAR(255) NOT NULL,
        description TEXT DEFAULT '' NOT NULL,
        type VARCHAR(255) DEFAULT '' NOT NULL,
        nationality VARCHAR(255) DEFAULT '' NOT NULL,
        sector VARCHAR(255) DEFAULT '' NOT NULL,
        contacts TEXT DEFAULT '' NOT NULL,
        local BOOLEAN DEFAULT 'true' NOT NULL,
        restricted_to_domain JSONB DEFAULT '[]'::jsonb NOT NULL,
        landingpage TEXT,
        created_by BIGINT DEFAULT '0' NOT NULL,
        date_created TIMESTAMP WITH TIME ZONE NOT NULL,
        date_modified TIMESTAMP WITH TIME ZONE NOT NULL,
        status VARCHAR(16) DEFAULT 'active' NOT NULL,
        merged_into BIGINT,
        logo BYTEA,
        logo_sha256 VARCHAR(64),
        PRIMARY KEY (id),
        UNIQUE (stream_id))""",
    "CREATE UNIQUE INDEX IF NOT EXISTS ux_organisation_name "
    "ON organisation (lower(name)) WHERE status <> 'deleted'",
    "CREATE UNIQUE INDEX IF NOT EXISTS ux_organisation_uuid "
    "ON organisation (uuid) WHERE status <> 'deleted'",
    """CREATE TABLE IF NOT EXISTS setting_value (
        name VARCHAR(255) NOT NULL,
        value JSONB,
        updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (name))""",
)


def upgrade() -> None:
    for statement in DDL:
        op.execute(statement)


def downgrade() -> None:
    for table in ("setting_value", "organisation", "org_merge", "org_member"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
