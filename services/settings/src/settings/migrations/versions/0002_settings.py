"""Setting overrides, import blocklists, import regexps, the signature allowlist, first-run marks.

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
    "CREATE SEQUENCE IF NOT EXISTS event_blocklist_id_seq",
    "CREATE SEQUENCE IF NOT EXISTS org_blocklist_id_seq",
    "CREATE SEQUENCE IF NOT EXISTS regexp_id_seq",
    "CREATE SEQUENCE IF NOT EXISTS allowedlist_id_seq",
    """CREATE TABLE IF NOT EXISTS setting_override (
        name VARCHAR(255) NOT NULL,
        value JSONB,
        is_set BOOLEAN DEFAULT 'true' NOT NULL,
        version INTEGER NOT NULL,
        updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (name))""",
    """CREATE TABLE IF NOT EXISTS event_blocklist (
        id BIGINT NOT NULL,
        event_uuid VARCHAR(36) NOT NULL,
        created TIMESTAMP WITH TIME ZONE NOT NULL,
        event_info TEXT DEFAULT '' NOT NULL,
        comment TEXT DEFAULT '' NOT NULL,
        event_orgc VARCHAR(255) DEFAULT '' NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (id),
        UNIQUE (event_uuid))""",
    """CREATE TABLE IF NOT EXISTS org_blocklist (
        id BIGINT NOT NULL,
        org_uuid VARCHAR(36) NOT NULL,
        created TIMESTAMP WITH TIME ZONE NOT NULL,
        org_name VARCHAR(255) DEFAULT '' NOT NULL,
        comment TEXT DEFAULT '' NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (id),
        UNIQUE (org_uuid))""",
    """CREATE TABLE IF NOT EXISTS regexp (
        id BIGINT NOT NULL,
        regexp TEXT NOT NULL,
        replacement TEXT DEFAULT '' NOT NULL,
        type VARCHAR(100) DEFAULT 'ALL' NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (id))""",
    """CREATE TABLE IF NOT EXISTS allowedlist (
        id BIGINT NOT NULL,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (id),
        UNIQUE (name))""",
    """CREATE TABLE IF NOT EXISTS first_run (
        step VARCHAR(64) NOT NULL,
        done_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (step))""",
)


def upgrade() -> None:
    for statement in DDL:
        op.execute(statement)


def downgrade() -> None:
    for table in ("first_run", "allowedlist", "regexp", "org_blocklist", "event_blocklist",
                  "setting_override"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
