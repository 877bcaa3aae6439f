"""The user stream's version on orgs' projection of users, and tombstones for deleted users:
an older event (a replay) never brings a user back into an organisation or moves one back.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE org_member ADD COLUMN IF NOT EXISTS version INTEGER")
    op.execute("ALTER TABLE org_member ADD COLUMN IF NOT EXISTS deleted BOOLEAN NOT NULL "
               "DEFAULT false")


def downgrade() -> None:
    op.execute("DELETE FROM org_member WHERE deleted")
    op.execute("ALTER TABLE org_member DROP COLUMN IF EXISTS deleted")
    op.execute("ALTER TABLE org_member DROP COLUMN IF EXISTS version")
