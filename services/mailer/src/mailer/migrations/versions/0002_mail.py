"""The mailer's tables: user and setting projections, requests and the mail queue.

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
    """CREATE TABLE IF NOT EXISTS mail (
        id UUID NOT NULL,
        request_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        action TEXT NOT NULL,
        recipient TEXT NOT NULL,
        user_id BIGINT,
        sender TEXT NOT NULL,
        actor JSONB,
        subject TEXT NOT NULL,
        encrypted BOOLEAN NOT NULL,
        signed BOOLEAN NOT NULL,
        raw BYTEA,
        status TEXT DEFAULT 'pending' NOT NULL,
        attempts INTEGER DEFAULT '0' NOT NULL,
        next_attempt_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        lease_until TIMESTAMP WITH TIME ZONE,
        last_error TEXT,
        created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        sent_at TIMESTAMP WITH TIME ZONE,
        PRIMARY KEY (id),
        UNIQUE (message_id))""",
    """CREATE TABLE IF NOT EXISTS mail_request (
        id TEXT NOT NULL,
        kind TEXT NOT NULL,
        actor_user_id BIGINT,
        mails INTEGER DEFAULT '0' NOT NULL,
        skipped JSONB DEFAULT '[]' NOT NULL,
        created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (id))""",
    """CREATE TABLE IF NOT EXISTS mail_setting (
        name TEXT NOT NULL,
        value JSONB,
        updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (name))""",
    """CREATE TABLE IF NOT EXISTS mail_user (
        id BIGINT NOT NULL,
        email TEXT NOT NULL,
        org_id BIGINT NOT NULL,
        role_id BIGINT DEFAULT '0' NOT NULL,
        disabled BOOLEAN DEFAULT 'false' NOT NULL,
        autoalert BOOLEAN DEFAULT 'false' NOT NULL,
        contactalert BOOLEAN DEFAULT 'false' NOT NULL,
        gpgkey TEXT,
        updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (id))""",
)
# The queue's and the projection's indexes.
INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_mail_pending ON mail (next_attempt_at) "
    "WHERE status = 'pending'",
    "CREATE INDEX IF NOT EXISTS ix_mail_request ON mail (request_id)",
    "CREATE INDEX IF NOT EXISTS ix_mail_user_org ON mail_user (org_id)",
)


def upgrade() -> None:
    for statement in DDL:
        op.execute(statement)
    for statement in INDEXES:
        op.execute(statement)


def downgrade() -> None:
    for name in ("mail", "mail_request", "mail_setting", "mail_user"):
        op.drop_table(name)
