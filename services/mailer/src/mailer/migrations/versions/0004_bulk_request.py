"""The bulk sends (`admin/users/email` to all users) waiting for or done by their `bulk_email`
job: `bulk_request`.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

DDL = (
    """CREATE TABLE IF NOT EXISTS bulk_request (
        id TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        body TEXT NOT NULL,
        custom_message BOOLEAN NOT NULL,
        scope_org_id BIGINT,
        actor JSONB NOT NULL,
        recipients INTEGER NOT NULL,
        status TEXT DEFAULT 'pending' NOT NULL,
        job_id BIGINT,
        mails INTEGER,
        skipped JSONB,
        error TEXT,
        created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        finished_at TIMESTAMP WITH TIME ZONE,
        PRIMARY KEY (id))""",
    "CREATE INDEX IF NOT EXISTS ix_bulk_request_job ON bulk_request (job_id)",
)


def upgrade() -> None:
    for statement in DDL:
        op.execute(statement)


def downgrade() -> None:
    op.drop_table("bulk_request")
