"""Server settings in the platform's one read model (misp_platform.server_settings): the same
`setting_value` in every service that reads them, its name a text column.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE setting_value ALTER COLUMN name TYPE TEXT")


def downgrade() -> None:
    op.execute("ALTER TABLE setting_value ALTER COLUMN name TYPE VARCHAR(255)")
