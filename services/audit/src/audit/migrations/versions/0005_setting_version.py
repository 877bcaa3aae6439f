"""The setting stream's version on audit's projection of server settings: a replayed older
change (a redelivery, `dlq replay`) never brings an old value back.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE audit_setting ADD COLUMN IF NOT EXISTS version INTEGER")


def downgrade() -> None:
    op.execute("ALTER TABLE audit_setting DROP COLUMN IF EXISTS version")
