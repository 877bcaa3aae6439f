"""The user stream's version on the mailer's projection of users, and tombstones for deleted
users: a replayed creation never makes a deleted user a recipient again.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE mail_user ADD COLUMN IF NOT EXISTS version INTEGER")
    op.execute("ALTER TABLE mail_user ADD COLUMN IF NOT EXISTS deleted BOOLEAN NOT NULL "
               "DEFAULT false")


def downgrade() -> None:
    op.execute("DELETE FROM mail_user WHERE deleted")
    op.execute("ALTER TABLE mail_user DROP COLUMN IF EXISTS deleted")
    op.execute("ALTER TABLE mail_user DROP COLUMN IF EXISTS version")
