"""Server settings in the platform's one read model (misp_platform.server_settings): the
audit's `audit_setting` becomes `setting_value`, as in every service that reads them.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE audit_setting RENAME TO setting_value")
    op.execute("ALTER INDEX IF EXISTS audit_setting_pkey RENAME TO setting_value_pkey")
    op.execute("ALTER TABLE setting_value ALTER COLUMN name TYPE TEXT")
    op.execute("DROP TABLE IF EXISTS audit_setting_rebuild")  # a rebuild makes it again


def downgrade() -> None:
    op.execute("ALTER TABLE setting_value ALTER COLUMN name TYPE VARCHAR(200)")
    op.execute("ALTER INDEX IF EXISTS setting_value_pkey RENAME TO audit_setting_pkey")
    op.execute("ALTER TABLE setting_value RENAME TO audit_setting")
