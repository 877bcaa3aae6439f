"""The organisation stream's version on identity's projection of organisations: an older event
(a replay) never overwrites a newer row, and a deletion stays one.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE org ADD COLUMN IF NOT EXISTS version INTEGER")


def downgrade() -> None:
    op.execute("ALTER TABLE org DROP COLUMN IF EXISTS version")
