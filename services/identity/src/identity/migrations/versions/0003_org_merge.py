"""The organisation projection learns merges: a source that orgs is merging is closed to new
users (services/orgs/README.md, merge saga step 2).

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE org ADD COLUMN IF NOT EXISTS merging_into bigint")
    op.execute("ALTER TABLE org ADD COLUMN IF NOT EXISTS merge_id text")


def downgrade() -> None:
    raise NotImplementedError("identity's read models are rebuilt from its events, not downgraded")
