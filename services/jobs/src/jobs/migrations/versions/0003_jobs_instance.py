"""The id of this jobs deployment (`jobs_instance`), carried by its dispatches and echoed by the
workers' claims, so that it answers only the claims of its own jobs.

Revision ID: 0003
Revises: 0002
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""CREATE TABLE IF NOT EXISTS jobs_instance (
        id VARCHAR(36) NOT NULL,
        created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (id))""")
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT id FROM jobs_instance")).first() is None:
        bind.execute(sa.text("INSERT INTO jobs_instance (id) VALUES (:id)"),
                     {"id": str(uuid.uuid4())})


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS jobs_instance")
