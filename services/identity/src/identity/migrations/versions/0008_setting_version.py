"""The setting stream's version on identity's projection of server settings: a replayed older
change (a redelivery, `dlq replay`) never brings an old value back.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE setting_value ADD COLUMN IF NOT EXISTS version INTEGER")


def downgrade() -> None:
    op.execute("ALTER TABLE setting_value DROP COLUMN IF EXISTS version")
