"""The setting stream's version on mailer's projection of server settings: a replayed older
change (a redelivery, `dlq replay`) never brings an old value back.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE mail_setting ADD COLUMN IF NOT EXISTS version INTEGER")


def downgrade() -> None:
    op.execute("ALTER TABLE mail_setting DROP COLUMN IF EXISTS version")
